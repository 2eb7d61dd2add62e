"""Benchmark the person's page: hashing in headless Chromium beside the node's hasher.

- A generated 12-megapixel JPEG hashed by the page's worker (WebAssembly MozJPEG and
  the TypeScript PDQ, one worker), beside ``hashfed hash``'s decoding and hashing of
  the same file in one process (hashfed.hasher.batch.hash_path). Both must give the
  same hash. Goal: the page at most 3x slower.
- MD5 of a generated 1 GB video (128 MiB with ``--quick``) by the page's worker, read
  in chunks from the File, beside ``md5sum`` on the same file.

Each figure is the median of several runs after one warm-up run. The page is served by
the real ``hashfed serve`` of a temporary publisher, on loopback; Chromium is Debian's.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hashfed.hasher.batch import Result, hash_path
from hashfed.node.home import init_node
from PIL import Image

from bench.table import Row

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]

# Runs in the page: hashes the file in #bench-file `runs` times with the page's own
# worker (after one warm-up that compiles the WebAssembly), returns the last result
# and the milliseconds of each run.
IN_PAGE = """async (runs) => {
  const file = document.getElementById("bench-file").files[0];
  const worker = new Worker("worker.js", { type: "module" });
  const once = () => new Promise((resolve) => {
    const start = performance.now();
    worker.onmessage = (e) => {
      if (e.data.type === "hashed" || e.data.type === "failed") {
        resolve([performance.now() - start, e.data]);
      }
    };
    worker.postMessage({ id: 1, file });
  });
  await once();
  const times = [];
  let last = null;
  for (let i = 0; i < runs; i++) {
    const [ms, data] = await once();
    times.push(ms);
    last = data;
  }
  worker.terminate();
  return { times, last };
}"""


@contextmanager
def _publisher(tmp: Path) -> Iterator[str]:
    init_node(tmp / "p", "p.bench/hashfed", "publisher").close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(tmp / "p"), "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--no-sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError("hashfed serve exited early")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _in_page(url: str, path: Path, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/case/")
            page.evaluate(
                """() => document.body.append(Object.assign(
                    document.createElement("input"), { type: "file", id: "bench-file" }))"""
            )
            page.set_input_files("#bench-file", str(path))
            result: dict[str, Any] = page.evaluate(IN_PAGE, runs)
            return result
        finally:
            browser.close()


def _photo(tmp: Path) -> Path:
    rng = np.random.default_rng(2024)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp / "photo-12mp.jpg"
    Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC).save(
        path, "JPEG", quality=90
    )
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _video(tmp: Path, size: int) -> Path:
    """An MP4 of size bytes with a video track (only those are videos) and random media."""
    block = np.random.default_rng(5).bytes(1 << 20)
    track = _box(b"trak", _box(b"mdia", _box(b"hdlr", bytes(8) + b"vide" + bytes(13))))
    head = _box(b"ftyp", b"isom\x00\x00\x02\x00isommp41")
    head += _box(b"moov", _box(b"mvhd", bytes(100)) + track)
    blocks = size // len(block)
    path = tmp / "video.mp4"
    with open(path, "wb") as f:
        f.write(head + struct.pack(">I4s", 8 + blocks * len(block), b"mdat"))
        for _ in range(blocks):
            f.write(block)
    return path


def _median_seconds(fn: Any, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool) -> list[Row]:
    """run returns the page's photo and video rows beside the node's figures."""
    runs = 3 if quick else 5
    size = (128 if quick else 1024) << 20
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-page-") as name:
        tmp = Path(name)
        photo, video = _photo(tmp), _video(tmp, size)
        with _publisher(tmp) as url:
            page_photo = _in_page(url, photo, runs)
            page_video = _in_page(url, video, runs)
        ours_photo = statistics.median(page_photo["times"]) / 1000
        ours_video = statistics.median(page_video["times"]) / 1000
        expected = hash_path(photo)
        assert isinstance(expected[0], Result)
        if page_photo["last"]["hashes"][0]["hash"] != expected[0].hash:
            raise AssertionError("the page's hash of the 12-megapixel JPEG differs")
        node_photo = _median_seconds(lambda: hash_path(photo), runs)
        md5sum = _median_seconds(
            lambda: subprocess.run(["md5sum", str(video)], check=True, capture_output=True), runs
        )
        digest = subprocess.run(["md5sum", str(video)], capture_output=True, text=True).stdout
        if page_video["last"]["hashes"][0]["hash"] != digest.split()[0]:
            raise AssertionError("the page's MD5 of the video differs from md5sum")
    mb = size / 1e6
    return [
        Row("page", "12 MP JPEG: decode + PDQ in Chromium", ours_photo, "s", node_photo,
            "hashfed hash (same file, in-process)", target=3.0, higher_is_better=False,
            target_is_ratio=True, note=f"median of {runs} runs after a warm-up; one worker"),
        Row("page", f"video MD5 in Chromium ({size >> 20} MiB)", mb / ours_video, "MB/s",
            mb / md5sum, "md5sum", note="File.slice chunks of 8 MiB, hash-wasm MD5"),
    ]  # fmt: skip
