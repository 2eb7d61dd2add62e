"""The person's page in a real headless Chromium, against the real `hashfed serve`.

A person opens a case with reference photos and a video, by keyboard only, on a
phone-sized screen: the node receives exactly the hashes `hashfed hash` gives, the
case number and PIN shown work, the status goes from pending to active after
`hashfed cases publish`, a wrong PIN is answered as the API answers it, and after a
withdrawal the retraction is in the log and a partner that syncs stops matching.
Every request the page makes is recorded: all go to the node, and nothing but the
hashes is ever sent. Also: more than 20 hashes are refused before sending, formats the
page cannot decode exactly point to `hashfed hash`, the Dutch page is complete, the
quick exit leaves, and axe-core finds no serious or critical violation.

Screenshots of each step go to web/build/screenshots/ (for people; not compared).
Chromium is Debian's (`apt-get install chromium`), driven by playwright's Python
package with its executable path: no browser is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
from hashfed.hasher.batch import Result, hash_path
from hashfed.node.home import Node, open_node
from media import movie
from PIL import Image
from playwright.async_api import Browser, Page, Request, async_playwright, expect
from synchelpers import active_hashes, allow, make_node, sync, trust, use
from webhelpers import PDQ_IMAGES, ROOT, VECTORS, smooth_image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]
SCREENSHOTS = ROOT / "web" / "build" / "screenshots"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
CATALOGS = ROOT / "web" / "src" / "i18n"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

PHOTOS = [
    PDQ_IMAGES / "bridge-mods" / "aaa-orig.jpg",
    PDQ_IMAGES / "pen-and-coaster.png",
    PDQ_IMAGES / "exif-rotn" / "exif-rotn-6.jpg",  # stored pixels and the rotated view
]
VIDEO = VECTORS / "video" / "chair-19-sd-bar.mp4"
LOW_QUALITY = PDQ_IMAGES / "misc-images" / "small.jpg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Publisher:
    node: Node
    url: str

    def hashfed(self, *args: str) -> str:
        command = [sys.executable, "-m", "hashfed.node", "--dir", str(self.node.config.home), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def case_hashes(self) -> list[tuple[str, str, int | None]]:
        with sqlite3.connect(f"file:{self.node.config.database}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT kind, hash, quality FROM case_hashes").fetchall()
        return sorted((kind, bytes(h).hex(), q) for kind, h, q in rows if h is not None)


@contextmanager
def serve_publisher(tmp_path: Path, partner: Node | None = None) -> Iterator[Publisher]:
    """Runs the real `hashfed serve` for a publisher on a loopback port."""
    node = make_node(tmp_path, "p", "publisher")
    if partner is not None:
        allow(node, partner)
    home = node.config.home
    node.close()
    port = _free_port()
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(home)]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--no-sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    opened: list[Node] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "hashfed serve did not come up"
                time.sleep(0.05)
        opened.append(open_node(home))
        yield Publisher(opened[0], url)
    finally:
        for node in opened:
            node.close()
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()


@dataclass
class Recorder:
    """Every request a page (and its worker) makes."""

    requests: list[Request] = field(default_factory=list)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def open_page(browser: Browser, recorder: Recorder, **options: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(**options)
    context.on("request", lambda request: recorder.requests.append(request))
    # The quick exit leaves for a neutral site; the network is closed, so answer here.
    await context.route(
        re.compile(r"^https://www\.google\.com/.*"),
        lambda route: route.fulfill(status=200, body="<title>weather</title>"),
    )
    page = await context.new_page()
    # Intercept file choosers from the start: enabling it on the first expect_file_chooser
    # races with a key press that opens the chooser on a busy machine.
    page.on("filechooser", lambda chooser: None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
        assert errors == [], errors
        assert await context.cookies() == []
    finally:
        await context.close()


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def check_axe(page: Page) -> None:
    """check_axe fails on any serious or critical axe-core violation on the page."""
    if not await page.evaluate("() => typeof axe !== 'undefined'"):
        await page.evaluate(AXE.read_text("utf-8"))  # over DevTools: the page's CSP still holds
    violations = await page.evaluate(
        """() => axe.run(document).then(r => r.violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))"""
    )
    assert violations == []


async def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """tab_to presses Tab until the element is focused: it is reachable by keyboard."""
    target = page.locator(selector)
    for _ in range(limit):
        if await target.evaluate("e => e === document.activeElement"):
            return
        await page.keyboard.press("Tab")
    pytest.fail(f"{selector} cannot be reached with the Tab key")


async def wait_hashed(page: Page) -> None:
    await expect(page.locator("#file-list li[data-status=hashing]")).to_have_count(
        0, timeout=90_000
    )


def expected_hashes(paths: list[Path]) -> list[tuple[str, str, int | None]]:
    """expected_hashes returns what `hashfed case open` sends for paths."""
    out = []
    for path in paths:
        for r in hash_path(path):
            assert isinstance(r, Result)
            if r.publishable:
                out.append((r.kind, r.hash, r.quality))
    return sorted(out)


async def test_open_check_publish_withdraw_by_keyboard_on_a_phone(tmp_path: Path) -> None:
    partner = make_node(tmp_path, "a")
    recorder = Recorder()
    with serve_publisher(tmp_path, partner) as p:
        use(partner, p.node, p.url)
        trust(partner, p.node, "publisher")
        origin = p.node.config.origin
        async with chromium() as browser, open_page(browser, recorder, **PHONE) as page:
            await page.goto(p.url + "/case/")
            await check_axe(page)
            await shot(page, "01-intro")
            await tab_to(page, "#is-me")
            await page.keyboard.press("Space")
            await tab_to(page, "#is-intimate")
            await page.keyboard.press("Space")
            await tab_to(page, "#age-adult")
            await page.keyboard.press("Space")
            await tab_to(page, "#start-open")
            await page.keyboard.press("Enter")
            await expect(page.locator("#open")).to_be_visible()

            await tab_to(page, "#files")
            async with page.expect_file_chooser() as chooser:
                await page.keyboard.press("Space")
            await (await chooser.value).set_files([*PHOTOS, VIDEO, LOW_QUALITY])
            await wait_hashed(page)
            refused = page.locator("#file-list li[data-status=refused]")
            await expect(refused).to_have_count(1)
            await expect(refused).to_contain_text("small.jpg")
            await expect(refused).to_contain_text("not a screenshot")
            await check_axe(page)
            await shot(page, "02-files-hashed")
            assert recorder.posts() == []  # nothing is sent before the person confirms

            await tab_to(page, "#confirm-list")
            await page.keyboard.press("Space")
            await tab_to(page, "#send")
            await page.keyboard.press("Enter")
            await expect(page.locator("#result")).to_be_visible(timeout=30_000)
            number = await page.locator("#result-number").inner_text()
            pin = await page.locator("#result-pin").inner_text()
            assert re.fullmatch(r"HF(-[0-9A-Z]{4}){6}-[0-9A-Z]{2}", number) and pin.isdigit()
            await check_axe(page)
            await shot(page, "03-case-opened")

            want = expected_hashes([*PHOTOS, VIDEO, LOW_QUALITY])
            assert len(want) == 5  # two photos, the EXIF-rotated photo twice, the video
            assert p.case_hashes() == want

            await tab_to(page, "#result-check")
            await page.keyboard.press("Enter")
            assert await page.locator("#check-number").input_value() == number
            await tab_to(page, "#check-pin")
            await page.keyboard.type(pin)
            await page.keyboard.press("Enter")
            await expect(page.locator("#status-state")).to_have_text("Pending")
            await shot(page, "04-status-pending")

            p.hashfed("cases", "publish")
            await tab_to(page, "#check-submit")
            await page.keyboard.press("Enter")
            await expect(page.locator("#status-state")).to_have_text("Active")
            await expect(page.locator("#status-count")).to_contain_text("5 hashes")
            await shot(page, "05-status-active")
            assert (await sync(partner)).ok
            matched = sorted(bytes(h).hex() for _, h in active_hashes(partner, origin))
            assert matched == sorted(h for _, h, _ in want)

            # A wrong PIN: the page says what the API says (404, no such case and PIN).
            await page.locator("#check-pin").fill(pin[::-1] + "0")
            await tab_to(page, "#check-submit")
            await page.keyboard.press("Enter")
            await expect(page.locator("#check-error")).to_have_text(
                "No case has this case number and PIN."
            )
            async with aiohttp.ClientSession() as session:
                api = f"{p.url}/v1/cases/{number}/status"
                async with session.post(api, json={"pin": pin[::-1] + "0"}) as answer:
                    assert answer.status == 404
                    assert (await answer.json())["error"] == "no case has this case number and PIN"
            await shot(page, "06-wrong-pin")

            await page.locator("#check-pin").fill(pin)
            await page.keyboard.press("Enter")
            await expect(page.locator("#status-state")).to_have_text("Active")
            await tab_to(page, "#withdraw")
            await page.keyboard.press("Enter")
            await expect(page.locator("#withdraw-confirm")).to_contain_text("may keep acting")
            await check_axe(page)
            await shot(page, "07-withdraw-confirm")
            await tab_to(page, "#withdraw-yes")
            await page.keyboard.press("Enter")
            await expect(page.locator("#status-state")).to_have_text("Withdrawn")
            await shot(page, "08-withdrawn")

            storage = await page.evaluate(
                """async () => [localStorage.length, sessionStorage.length,
                    (await indexedDB.databases()).length, document.cookie]"""
            )
            assert storage == [0, 0, 0, ""]

        assert (await sync(partner)).ok
        assert active_hashes(partner, origin) == []
        assert "withdrawn" in p.hashfed("cases", "list", "--json")

    _assert_private(recorder, p.url, [*PHOTOS, VIDEO, LOW_QUALITY], want)


def _assert_private(recorder: Recorder, url: str, files: list[Path], sent: list[Any]) -> None:
    """Every request went to the node; the only bodies were the hashes and the PIN."""
    node = urlsplit(url)
    for request in recorder.requests:
        parts = urlsplit(request.url)
        if parts.scheme == "blob":
            assert request.url.startswith(f"blob:{url}/")
            continue
        if parts.hostname == "www.google.com":
            pytest.fail("the quick exit was not pressed in this test")
        assert (parts.scheme, parts.netloc) == (node.scheme, node.netloc), request.url
    posts = recorder.posts()
    assert posts and urlsplit(posts[0].url).path == "/v1/cases"
    opened = json.loads(posts[0].post_data or "")
    assert set(opened) == {"hashes"}
    assert sorted((h["kind"], h["hash"], h.get("quality")) for h in opened["hashes"]) == sent
    assert all(set(h) <= {"kind", "hash", "quality"} for h in opened["hashes"])
    assert len(posts[0].post_data_buffer or b"") < 120 * len(sent)
    names = [f.name for f in files] + [f.stem for f in files]
    for request in posts:
        body = request.post_data_buffer or b""
        assert len(body) < 2048
        assert not any(name.encode() in body for name in names)
        assert b"Exif" not in body and b"\xff\xd8" not in body
        for f in files:
            head = f.read_bytes()[:16]
            assert head not in body
        assert set(json.loads(body)) <= {"hashes", "pin", "email"}
    assert all(
        re.fullmatch(r"/v1/cases/HF[-0-9A-Z]+/(status|withdraw)", urlsplit(r.url).path)
        for r in posts[1:]
    )


def _photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(21)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.png"
        Image.fromarray(smooth_image(rng, 96, 128)).save(path)
        paths.append(path)
    return paths


async def test_too_many_hashes_and_other_formats_are_refused_before_sending(
    tmp_path: Path,
) -> None:
    photos = _photos(tmp_path, 21)
    gif = tmp_path / "photo.gif"
    Image.open(photos[0]).save(gif)
    webp = tmp_path / "photo.webp"
    Image.open(photos[0]).save(webp, "WEBP", lossless=True)
    song = tmp_path / "song.m4a"
    song.write_bytes(movie(b"M4A ", handlers=(b"soun",)))
    recorder = Recorder()
    with serve_publisher(tmp_path) as p:
        async with chromium() as browser, open_page(browser, recorder) as page:
            await page.goto(p.url + "/case/")
            for box in ("#is-me", "#is-intimate", "#age-adult"):
                await page.locator(box).check()
            await page.locator("#start-open").click()
            # Drag and drop: a copy of photo-00 arrives first; the chosen photo-00 is then
            # a duplicate, and the 21 distinct photos still give 21 hashes.
            await page.evaluate(
                """([name, bytes]) => {
                    const files = new DataTransfer();
                    files.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
                    document.getElementById("drop").dispatchEvent(new DragEvent("drop",
                        {dataTransfer: files, bubbles: true, cancelable: true}));
                }""",
                ["dropped.png", list(photos[0].read_bytes())],
            )
            await wait_hashed(page)
            await page.locator("#files").set_input_files([*photos, gif, webp, song])
            await wait_hashed(page)
            await expect(page.locator("#file-list li[data-status=ready]")).to_have_count(21)
            duplicate = page.locator("#file-list li", has_text="photo-00.png")
            await expect(duplicate).to_contain_text("Already in the list")
            await expect(page.locator("#open-error")).to_contain_text("at most 20")
            gif_item = page.locator("#file-list li", has_text="photo.gif")
            await expect(gif_item).to_contain_text("hashfed case open FILE --publisher")
            webp_item = page.locator("#file-list li", has_text="photo.webp")
            await expect(webp_item).to_contain_text("hashfed case open FILE --publisher")
            song_item = page.locator("#file-list li", has_text="song.m4a")
            await expect(song_item).to_contain_text("holds only sound")
            await page.locator("#confirm-list").check()
            await page.locator("#send").click()
            await expect(page.locator("#open-error")).to_contain_text("at most 20")
            await shot(page, "09-over-twenty")
            assert recorder.posts() == []

            await page.get_by_role("button", name="Remove photo-20.png").click()
            await expect(page.locator("#count")).to_have_text("20 of 20 hashes")
            await page.locator("#send").click()
            await expect(page.locator("#result")).to_be_visible(timeout=30_000)
            assert len(p.case_hashes()) == 20


async def test_dutch_page_is_complete_and_quick_exit_leaves(tmp_path: Path) -> None:
    nl = json.loads((CATALOGS / "nl.json").read_text("utf-8"))
    en = json.loads((CATALOGS / "en.json").read_text("utf-8"))
    recorder = Recorder()
    with serve_publisher(tmp_path) as p:
        async with (
            chromium() as browser,
            open_page(
                browser,
                recorder,
                locale="nl-NL",
                extra_http_headers={"Accept-Language": "nl-NL,nl"},
            ) as page,
        ):
            await page.goto(p.url + "/case/")
            assert await page.locator("html").get_attribute("lang") == "nl"
            await expect(page.locator("#intro-title")).to_have_text(nl["intro-title"])
            texts = await page.locator("[data-i18n]").evaluate_all(
                "els => els.map(e => [e.dataset.i18n, e.textContent])"
            )
            assert texts and all(text == nl[key] for key, text in texts)
            await page.locator("#age-minor").check()
            await expect(page.locator("#minor-help")).to_contain_text("Take It Down")
            await expect(page.locator("#start-open")).to_be_disabled()
            await check_axe(page)
            await shot(page, "10-nl-under-18")
            await page.locator("#age-adult").check()
            for box in ("#is-me", "#is-intimate"):
                await page.locator(box).check()
            await page.locator("#start-open").click()
            await expect(page.locator("#open-title")).to_have_text("Een zaak openen")
            await shot(page, "11-nl-open")
            shown = await page.locator("body").inner_text()
            english = [v for k, v in en.items() if v != nl[k] and len(v) > 12 and v in shown]
            assert english == []

            await page.locator("#lang-en").click()
            await expect(page.locator("#intro-title")).to_have_text(en["intro-title"])

            async with page.expect_navigation():
                await page.locator("#quick-exit").click()
            assert page.url.startswith("https://www.google.com/")
            assert await page.evaluate("() => history.length") <= 3
        assert recorder.posts() == []
