/**
 * The page's hashing worker: photos are decoded with WebAssembly and hashed with PDQ,
 * videos are hashed with MD5 in chunks (so a 4 GB file never sits in memory). It runs
 * off the main thread so the page stays responsive; nothing leaves the device here.
 *
 * Messages in:  { id, file }                       (a File chosen by the person)
 * Messages out: { id, type: "progress", done, total }
 *               { id, type: "hashed", format, kind, hashes: [{hash, quality, variant}] }
 *               { id, type: "failed", code, detail }
 * Failure codes: refused-<RefusalCode>, needs-cli, corrupt, unreadable.
 */
import decodeJpeg, { init as initJpeg } from "@jsquash/jpeg/decode.js";
import { decode as decodePng, init as initPng } from "@jsquash/png/decode.js";
import { createMD5 } from "hash-wasm";
import { type Codecs, CorruptPhoto, NeedsCommandLine } from "./decode.js";
import { PAGE_DECODED, Refused, recognise } from "./formats.js";
import { hashPhoto } from "./hashing.js";
import { fileSourceOf } from "./isobmff.js";

/** Bytes read per MD5 step: progress is reported after each. */
const MD5_CHUNK = 8 * 1024 * 1024;

interface Job {
  id: number;
  file: File;
}

let codecsPromise: Promise<Codecs> | null = null;

async function compile(name: string): Promise<WebAssembly.Module> {
  const response = await fetch(new URL(name, self.location.href));
  if (!response.ok) throw new Error(`cannot load ${name}: HTTP ${response.status}`);
  return WebAssembly.compile(await response.arrayBuffer());
}

async function loadCodecs(): Promise<Codecs> {
  const [jpeg, png] = await Promise.all([compile("mozjpeg_dec.wasm"), compile("squoosh_png_bg.wasm")]);
  await initJpeg(jpeg);
  await initPng(png);
  return {
    jpeg: (data) => decodeJpeg(data, { preserveOrientation: false }),
    png8: (data) => decodePng(data),
    png16: (data) => decodePng(data, { bitDepth: 16 }),
  };
}

function post(message: Record<string, unknown>): void {
  (self as unknown as Worker).postMessage(message);
}

async function md5(job: Job): Promise<string> {
  const hasher = await createMD5();
  hasher.init();
  const total = job.file.size;
  for (let offset = 0; offset < total; offset += MD5_CHUNK) {
    const chunk = await job.file.slice(offset, offset + MD5_CHUNK).arrayBuffer();
    hasher.update(new Uint8Array(chunk));
    post({ id: job.id, type: "progress", done: Math.min(offset + MD5_CHUNK, total), total });
  }
  return hasher.digest("hex");
}

async function handle(job: Job): Promise<void> {
  // The first bytes, and for a movie its track headers: never the whole file.
  const format = await recognise(fileSourceOf(job.file), job.file.name);
  if (format.kind === "md5") {
    const hash = await md5(job);
    post({ id: job.id, type: "hashed", format: format.name, kind: "md5", hashes: [{ hash, quality: null, variant: "stored" }] });
    return;
  }
  if (!PAGE_DECODED.has(format.name)) throw new NeedsCommandLine(`${format.name.toUpperCase()} files`);
  codecsPromise ??= loadCodecs();
  const codecs = await codecsPromise;
  const bytes = new Uint8Array(await job.file.arrayBuffer());
  post({ id: job.id, type: "progress", done: 1, total: 2 });
  const hashes = await hashPhoto(bytes, format.name, codecs);
  post({ id: job.id, type: "hashed", format: format.name, kind: "pdq", hashes });
}

function failure(e: unknown): { code: string; detail: string } {
  if (e instanceof Refused) return { code: `refused-${e.code}`, detail: e.detail };
  if (e instanceof NeedsCommandLine) return { code: "needs-cli", detail: e.detail };
  if (e instanceof CorruptPhoto) return { code: "corrupt", detail: e.detail };
  return { code: "unreadable", detail: String(e) };
}

// Jobs run one at a time, in the order they arrive.
let queue: Promise<void> = Promise.resolve();
self.onmessage = (event: MessageEvent<Job>) => {
  const job = event.data;
  queue = queue.then(() =>
    handle(job).catch((e: unknown) => post({ id: job.id, type: "failed", ...failure(e) })),
  );
};
