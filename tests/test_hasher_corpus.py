"""`hashfed hash` over a real third-party corpus, as a new user would run it.

The corpus is pinned and fetched by `make corpus` (part of `make test`): the test
images of Pillow 12.0.0's source distribution (1,058 files: every format Pillow
reads, plus fuzzer finds, decompression bombs and truncated files) and the 86
DICOM files pydicom 3.0.1's wheel ships. The real CLI hashes it all on 2 processes
under a generous hang guard; the test then checks, per file type, how many files
were hashed and how many refused, that every refusal names its reason in one line,
and that stderr holds those lines and nothing else (no traceback, no decoder
chatter). Per-file times are in the benchmark (`make bench`), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".corpus"
HANG_GUARD_SECONDS = 600
REASONS = {
    "UnsupportedFormat", "CorruptImage", "TooManyPixels", "MissingDecoder", "EmptyFile",
    "UnreadableFile",
}  # fmt: skip

# (corpus, extension) -> (hashed, refused), files counted once whatever their variants.
EXPECTED: dict[tuple[str, str], tuple[int, int]] = {
    ('pillow', ''): (0, 16),
    ('pillow', 'apng'): (1, 0),
    ('pillow', 'ara'): (0, 1),
    ('pillow', 'avif'): (15, 0),
    ('pillow', 'avifs'): (1, 0),
    ('pillow', 'bdf'): (0, 1),
    ('pillow', 'bin'): (0, 11),
    ('pillow', 'blp'): (0, 12),
    ('pillow', 'bmp'): (55, 17),
    ('pillow', 'bw'): (0, 1),
    ('pillow', 'container'): (0, 1),
    ('pillow', 'cur'): (0, 2),
    ('pillow', 'dcx'): (0, 1),
    ('pillow', 'dds'): (0, 32),
    ('pillow', 'dib'): (0, 1),
    ('pillow', 'doc'): (0, 1),
    ('pillow', 'emf'): (0, 1),
    ('pillow', 'eps'): (0, 16),
    ('pillow', 'fits'): (0, 4),
    ('pillow', 'flc'): (0, 1),
    ('pillow', 'fli'): (0, 44),
    ('pillow', 'fpx'): (0, 2),
    ('pillow', 'ftc'): (0, 1),
    ('pillow', 'ftu'): (0, 1),
    ('pillow', 'gbr'): (0, 1),
    ('pillow', 'gd'): (0, 1),
    ('pillow', 'ggr'): (0, 2),
    ('pillow', 'gif'): (37, 2),
    ('pillow', 'gnuplot'): (0, 1),
    ('pillow', 'gpl'): (0, 5),
    ('pillow', 'grb'): (0, 1),
    ('pillow', 'h5'): (0, 1),
    ('pillow', 'heif'): (1, 0),
    ('pillow', 'html'): (0, 1),
    ('pillow', 'icns'): (0, 4),
    ('pillow', 'ico'): (8, 1),
    ('pillow', 'im'): (0, 2),
    ('pillow', 'im1'): (0, 1),
    ('pillow', 'imt'): (0, 1),
    ('pillow', 'j2k'): (0, 10),
    ('pillow', 'jp2'): (0, 13),
    ('pillow', 'jpf'): (0, 1),
    ('pillow', 'jpg'): (54, 2),
    ('pillow', 'lut'): (0, 6),
    ('pillow', 'mic'): (0, 1),
    ('pillow', 'mpo'): (7, 0),
    ('pillow', 'msp'): (0, 2),
    ('pillow', 'p7'): (0, 2),
    ('pillow', 'pbm'): (1, 2),
    ('pillow', 'pcd'): (0, 1),
    ('pillow', 'pcx'): (3, 2),
    ('pillow', 'pdf'): (0, 1),
    ('pillow', 'pfm'): (0, 2),
    ('pillow', 'pgm'): (0, 5),
    ('pillow', 'pil'): (0, 1),
    ('pillow', 'pkl'): (0, 1),
    ('pillow', 'png'): (424, 8),
    ('pillow', 'pnm'): (0, 1),
    ('pillow', 'ppm'): (0, 6),
    ('pillow', 'psd'): (6, 5),
    ('pillow', 'pxr'): (0, 1),
    ('pillow', 'qoi'): (0, 3),
    ('pillow', 'ras'): (0, 1),
    ('pillow', 'rgb'): (0, 3),
    ('pillow', 'sgi'): (0, 12),
    ('pillow', 'spider'): (0, 2),
    ('pillow', 'tar'): (0, 1),
    ('pillow', 'tga'): (33, 2),
    ('pillow', 'tif'): (68, 6),
    ('pillow', 'tiff'): (27, 0),
    ('pillow', 'txt'): (0, 2),
    ('pillow', 'wal'): (0, 1),
    ('pillow', 'webp'): (14, 0),
    ('pillow', 'wmf'): (0, 1),
    ('pillow', 'xbm'): (0, 2),
    ('pillow', 'xpm'): (3, 0),
    ('pydicom', ''): (31, 58),
    ('pydicom', 'dcm'): (50, 29),
    ('pydicom', 'dump'): (0, 2),
    ('pydicom', 'gz'): (0, 1),
    ('pydicom', 'icc'): (0, 1),
    ('pydicom', 'json'): (0, 2),
    ('pydicom', 'txt'): (0, 2),
}  # fmt: skip


def _hash_corpus() -> tuple[list[dict[str, object]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "hashfed.node", "hash", "--json", "-s", "--workers", "2",
         str(CORPUS / "pillow"), str(CORPUS / "pydicom")],
        capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return json.loads(proc.stdout), proc.stderr


def _key(path: str) -> tuple[str, str]:
    rel = Path(path).relative_to(CORPUS)
    suffix = rel.suffix.lower().lstrip(".")
    return rel.parts[0], suffix if suffix.isalnum() else ""


@pytest.mark.skipif(not (CORPUS / "pillow").is_dir(), reason="run 'make corpus' first")
def test_real_corpus_per_format_counts() -> None:
    outcomes, stderr = _hash_corpus()
    hashed: set[str] = set()
    refused: dict[str, dict[str, object]] = {}
    for o in outcomes:
        if o.get("error") is None:
            hashed.add(str(o["path"]))
        else:
            refused[str(o["path"])] = o
    assert not hashed & set(refused)
    for path, o in refused.items():
        message = str(o["error"])
        assert o["reason"] in REASONS, (path, o)
        assert message and "\n" not in message and "Traceback" not in message, (path, o)
    for line in stderr.splitlines():
        assert line.startswith(("error: ", "note: ")) or "could not be hashed" in line, line
    assert stderr.count("error: ") == len(refused)

    counts: Counter[tuple[tuple[str, str], str]] = Counter()
    for path in hashed:
        counts[_key(path), "hashed"] += 1
    for path in refused:
        counts[_key(path), "refused"] += 1
    got = {
        key: (counts[key, "hashed"], counts[key, "refused"])
        for key in sorted({k for k, _ in counts})
    }
    table = "\n".join(f"    {k!r}: {v!r}," for k, v in got.items())
    assert got == EXPECTED, f"per-format (hashed, refused) counts:\n{table}"
