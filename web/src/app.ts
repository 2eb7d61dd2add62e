/**
 * The person's page: choose photos and videos, hash them in a Web Worker on this device,
 * send only the hashes to the case desk (POST /v1/cases), and check or withdraw a case
 * with its number and PIN. Nothing is stored in the browser: no cookie, no storage; the
 * PIN lives only in the page's inputs while it is open.
 */
import en from "./i18n/en.json";
import nl from "./i18n/nl.json";
import { PDQ_QUALITY_THRESHOLD } from "./pdq.js";

/** The most hashes one case holds (specs/case-api.md). */
export const MAX_CASE_HASHES = 20;

/** Where the quick-exit button goes: a neutral page, replacing this one in the history. */
const QUICK_EXIT_URL = "https://www.google.com/search?q=weather";

type Catalog = Record<string, string>;
const CATALOGS: Record<string, Catalog> = { en, nl };
const lang = CATALOGS[document.documentElement.lang] ? document.documentElement.lang : "en";
const catalog: Catalog = CATALOGS[lang];

/** t returns the catalog's sentence for key, with {name} placeholders filled in. */
function t(key: string, params: Record<string, string | number> = {}): string {
  const text = catalog[key];
  if (text === undefined) throw new Error(`missing translation: ${lang}/${key}`);
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(params[name] ?? `{${name}}`));
}

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`page element #${id} is missing`);
  return element;
}

function input(id: string): HTMLInputElement {
  return $(id) as HTMLInputElement;
}

function applyCatalog(): void {
  for (const element of document.querySelectorAll<HTMLElement>("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n ?? "");
  }
  for (const element of document.querySelectorAll<HTMLElement>("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel ?? ""));
  }
  $(`lang-${lang}`).setAttribute("aria-current", "true");
}

const SECTIONS = ["intro", "open", "result", "check"];

function show(section: string): void {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  const heading = document.querySelector<HTMLElement>(`#${section} h1`);
  heading?.focus();
  window.scrollTo(0, 0);
}

function say(id: string, message: string | null): void {
  const element = $(id);
  element.textContent = message ?? "";
  element.hidden = message === null;
}

// ---------------------------------------------------------------- eligibility

function setupEligibility(): void {
  const minor = input("age-minor");
  const help = $("minor-help");
  const start = $("start-open") as HTMLButtonElement;
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="age"]')) {
    radio.addEventListener("change", () => {
      help.hidden = !minor.checked;
      start.disabled = minor.checked;
    });
  }
  $("eligibility").addEventListener("submit", (event) => {
    event.preventDefault();
    const ok = input("is-me").checked && input("is-intimate").checked && input("age-adult").checked;
    say("eligibility-error", ok ? null : t("err-eligibility"));
    if (ok) show("open");
  });
  $("start-check").addEventListener("click", () => show("check"));
}

// ---------------------------------------------------------------- choosing and hashing

interface SentHash {
  kind: "pdq" | "md5";
  hash: string;
  quality?: number;
}

interface Entry {
  id: number;
  file: File;
  item: HTMLLIElement;
  state: HTMLElement;
  progress: HTMLProgressElement;
  status: "hashing" | "ready" | "refused";
  hashes: SentHash[];
  preview: string | null;
}

interface WorkerHash {
  hash: string;
  quality: number | null;
  variant: string;
}

type WorkerMessage =
  | { id: number; type: "progress"; done: number; total: number }
  | { id: number; type: "hashed"; format: string; kind: "pdq" | "md5"; hashes: WorkerHash[] }
  | { id: number; type: "failed"; code: string; detail: string };

const entries = new Map<number, Entry>();
let nextId = 1;
let worker: Worker | null = null;

function hashingWorker(): Worker {
  if (worker === null) {
    worker = new Worker(new URL("worker.js", document.baseURI), { type: "module" });
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => onWorkerMessage(event.data);
  }
  return worker;
}

function knownHashes(except: number): Set<string> {
  const known = new Set<string>();
  for (const entry of entries.values()) {
    if (entry.id !== except && entry.status === "ready") {
      for (const h of entry.hashes) known.add(h.hash);
    }
  }
  return known;
}

function setStatus(entry: Entry, status: Entry["status"]): void {
  entry.status = status;
  entry.item.dataset.status = status;
}

function refuse(entry: Entry, message: string): void {
  setStatus(entry, "refused");
  entry.hashes = [];
  entry.state.textContent = message;
  entry.state.classList.add("refused");
}

function onHashed(entry: Entry, message: Extract<WorkerMessage, { type: "hashed" }>): void {
  if (message.kind === "md5") {
    entry.hashes = message.hashes.map((h) => ({ kind: "md5" as const, hash: h.hash }));
  } else {
    const usable = message.hashes.filter((h) => (h.quality ?? 0) >= PDQ_QUALITY_THRESHOLD);
    if (usable.length === 0) {
      refuse(entry, t("file-low-quality", { q: message.hashes[0]?.quality ?? 0 }));
      return;
    }
    const unique = [...new Map(usable.map((h) => [h.hash, h])).values()];
    entry.hashes = unique.map((h) => ({ kind: "pdq" as const, hash: h.hash, quality: h.quality ?? 0 }));
  }
  const known = knownHashes(entry.id);
  if (entry.hashes.every((h) => known.has(h.hash))) {
    refuse(entry, t("file-duplicate"));
    return;
  }
  setStatus(entry, "ready");
  entry.state.textContent =
    entry.hashes.length === 1 ? t("file-ready-1") : t("file-ready-n", { n: entry.hashes.length });
}

function failureMessage(code: string, detail: string, format: string): string {
  switch (code) {
    case "needs-cli":
      return t("file-needs-cli", { format, origin: location.origin });
    case "corrupt":
      return t("file-corrupt");
    case "refused-not-accepted":
    case "refused-mislabelled":
    case "refused-empty":
    case "refused-unrecognised":
      return t(`file-${code}`, { ext: detail });
    case "refused-audio-only":
    case "refused-no-video-track":
    case "refused-no-movie-header":
      return t(`file-${code}`, { format: detail });
    default:
      return t("file-unreadable");
  }
}

function onWorkerMessage(message: WorkerMessage): void {
  const entry = entries.get(message.id);
  if (entry === undefined) return; // removed while it was being hashed
  if (message.type === "progress") {
    entry.progress.max = message.total;
    entry.progress.value = message.done;
    return;
  }
  entry.progress.hidden = true;
  if (message.type === "hashed") {
    onHashed(entry, message);
  } else {
    const format = entry.file.name.split(".").pop()?.toUpperCase() ?? "";
    refuse(entry, failureMessage(message.code, message.detail, format));
  }
  updateCount();
}

function addFile(file: File): void {
  const id = nextId++;
  const item = document.createElement("li");
  let preview: string | null = null;
  if (file.type.startsWith("image/")) {
    preview = URL.createObjectURL(file);
    const img = document.createElement("img");
    img.src = preview;
    img.alt = "";
    item.append(img);
  } else {
    const box = document.createElement("span");
    box.className = "video";
    box.textContent = file.type.startsWith("video/") ? t("video") : "";
    box.setAttribute("aria-hidden", "true");
    item.append(box);
  }
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const progress = document.createElement("progress");
  progress.setAttribute("aria-label", file.name);
  const state = document.createElement("span");
  state.className = "state";
  state.setAttribute("aria-live", "polite");
  state.textContent = t("file-hashing");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "small secondary";
  remove.textContent = t("remove");
  remove.setAttribute("aria-label", t("remove-name", { name: file.name }));
  remove.addEventListener("click", () => removeEntry(id));
  item.append(name, progress, state, remove);
  $("file-list").append(item);
  const entry: Entry = { id, file, item, state, progress, status: "hashing", hashes: [], preview };
  entries.set(id, entry);
  setStatus(entry, "hashing");
  hashingWorker().postMessage({ id, file });
  updateCount();
}

function removeEntry(id: number): void {
  const entry = entries.get(id);
  if (entry === undefined) return;
  if (entry.preview !== null) URL.revokeObjectURL(entry.preview);
  entry.item.remove();
  entries.delete(id);
  updateCount();
  input("files").focus();
}

/** caseHashes returns the distinct hashes of every file that is ready, in list order. */
function caseHashes(): SentHash[] {
  const seen = new Map<string, SentHash>();
  for (const entry of entries.values()) {
    if (entry.status !== "ready") continue;
    for (const h of entry.hashes) if (!seen.has(h.hash)) seen.set(h.hash, h);
  }
  return [...seen.values()];
}

function updateCount(): boolean {
  const n = caseHashes().length;
  $("count").textContent = t("count", { n });
  const over = n > MAX_CASE_HASHES;
  say("open-error", over ? t("count-over", { n }) : null);
  return !over;
}

function setupOpen(): void {
  const files = input("files");
  files.addEventListener("change", () => {
    for (const file of files.files ?? []) addFile(file);
    files.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    for (const file of event.dataTransfer?.files ?? []) addFile(file);
  });
  $("open-back").addEventListener("click", () => show("intro"));
  $("send").addEventListener("click", () => void send());
}

// ---------------------------------------------------------------- the case desk

interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
  retryAfter: number;
}

async function api(path: string, body: unknown): Promise<ApiAnswer> {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  let parsed: Record<string, unknown> = {};
  try {
    parsed = (await response.json()) as Record<string, unknown>;
  } catch {
    parsed = {};
  }
  const retryAfter = Number(response.headers.get("Retry-After") ?? "60");
  return { status: response.status, body: parsed, retryAfter };
}

function apiError(answer: ApiAnswer, onNumber: boolean): string {
  if (answer.status === 429) {
    return t("err-too-many", { minutes: Math.max(1, Math.ceil(answer.retryAfter / 60)) });
  }
  if (onNumber && answer.status === 404) return t("err-not-found");
  if (onNumber && answer.status === 400) return t("err-bad-number");
  if (onNumber && answer.status === 409) return t("err-rejected");
  return t("err-server", { detail: String(answer.body.error ?? answer.status) });
}

let lastCase: { number: string; pin: string } | null = null;

async function send(): Promise<void> {
  const busy = [...entries.values()].some((e) => e.status === "hashing");
  const hashes = caseHashes();
  let problem: string | null = null;
  if (busy) problem = t("err-busy");
  else if (hashes.length === 0) problem = t("err-no-hashes");
  else if (!updateCount()) problem = t("count-over", { n: hashes.length });
  else if (!input("confirm-list").checked) problem = t("err-confirm");
  say("open-error", problem);
  if (problem !== null) return;
  const button = $("send") as HTMLButtonElement;
  button.disabled = true;
  say("count", t("sending"));
  try {
    const body: Record<string, unknown> = { hashes };
    const email = input("email").value.trim();
    if (email) body.email = email;
    let answer: ApiAnswer;
    try {
      answer = await api("/v1/cases", body);
    } catch {
      say("open-error", t("err-network"));
      return;
    }
    if (answer.status !== 201) {
      say("open-error", apiError(answer, false));
      return;
    }
    showResult(answer.body, hashes.length, email !== "");
  } finally {
    button.disabled = false;
    updateCount();
  }
}

function showResult(body: Record<string, unknown>, count: number, emailed: boolean): void {
  const number = String(body.case ?? "");
  const pin = String(body.pin ?? "");
  lastCase = { number, pin };
  $("result-number").textContent = number;
  $("result-pin").textContent = pin;
  $("result-summary").textContent = t("result-summary", { n: count });
  if (emailed) {
    say("result-email", body.email === "queued" ? t("result-email-sent") : t("result-email-failed"));
  }
  for (const entry of [...entries.keys()]) removeEntry(entry);
  input("email").value = "";
  input("confirm-list").checked = false;
  show("result");
}

async function copy(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    $("copied").textContent = t("copied");
  } catch {
    $("copied").textContent = t("copy-failed");
  }
}

function setupResult(): void {
  $("copy-number").addEventListener("click", () => void copy(lastCase?.number ?? ""));
  $("copy-pin").addEventListener("click", () => void copy(lastCase?.pin ?? ""));
  $("download").addEventListener("click", () => {
    if (lastCase === null) return;
    const text = t("download-file", { ...lastCase, origin: location.origin });
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `${lastCase.number}.txt`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  });
  $("result-check").addEventListener("click", () => {
    input("check-number").value = lastCase?.number ?? "";
    show("check");
  });
}

// ---------------------------------------------------------------- check and withdraw

function showStatus(body: Record<string, unknown>): void {
  const state = String(body.state ?? "");
  $("status-state").textContent = t(`state-${state}`);
  $("status-explain").textContent = t(`explain-${state}`);
  $("status-count").textContent = t("status-count", {
    n: Number(body.hashes ?? 0),
    p: Number(body.published ?? 0),
  });
  ($("withdraw") as HTMLButtonElement).hidden = state === "withdrawn" || state === "rejected";
  $("status").hidden = false;
}

function caseRequest(action: "status" | "withdraw"): Promise<ApiAnswer> | null {
  const number = input("check-number").value.trim();
  const pin = input("check-pin").value;
  if (!number || !pin) {
    say("check-error", t("err-need-number-pin"));
    return null;
  }
  return api(`/v1/cases/${encodeURIComponent(number)}/${action}`, { pin });
}

async function runCaseRequest(action: "status" | "withdraw"): Promise<boolean> {
  const pending = caseRequest(action);
  if (pending === null) return false;
  let answer: ApiAnswer;
  try {
    answer = await pending;
  } catch {
    say("check-error", t("err-network"));
    return false;
  }
  if (answer.status !== 200) {
    say("check-error", apiError(answer, true));
    $("status").hidden = true;
    return false;
  }
  say("check-error", null);
  showStatus(answer.body);
  return true;
}

function setupCheck(): void {
  $("check-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("withdraw-confirm").hidden = true;
    void runCaseRequest("status");
  });
  $("check-back").addEventListener("click", () => {
    input("check-pin").value = "";
    $("status").hidden = true;
    $("withdraw-confirm").hidden = true;
    show("intro");
  });
  $("withdraw").addEventListener("click", () => {
    $("withdraw-confirm").hidden = false;
    $("withdraw-title").focus();
  });
  $("withdraw-no").addEventListener("click", () => {
    $("withdraw-confirm").hidden = true;
    $("withdraw").focus();
  });
  $("withdraw-yes").addEventListener("click", () => {
    void runCaseRequest("withdraw").then((ok) => {
      $("withdraw-confirm").hidden = true;
      if (ok) $("status-explain").textContent = `${t("withdrawn-done")} ${t("explain-withdrawn")}`;
      $("status-state").focus();
    });
  });
}

function quickExit(): void {
  for (const entry of [...entries.keys()]) removeEntry(entry);
  document.body.hidden = true;
  location.replace(QUICK_EXIT_URL);
}

function main(): void {
  applyCatalog();
  document.documentElement.lang = lang;
  $("quick-exit").addEventListener("click", quickExit);
  $("status-state").tabIndex = -1;
  setupEligibility();
  setupOpen();
  setupResult();
  setupCheck();
}

main();
