"""The page's PDQ (web/src/pdq.ts) gives exactly pdqhash 0.2.8's hash and quality.

Run under Node on the decoded pixels of every reference image and on over a thousand
generated images of varied sizes and content: 0 bits different, same quality.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hashfed.hasher.decode import rgb_array
from hashfed.hasher.pdq import pdq_from_rgb
from PIL import Image
from webhelpers import PDQ_IMAGES, pdq_in_node, smooth_image


def _vector_images() -> list[npt.NDArray[np.uint8]]:
    paths = sorted(p for p in PDQ_IMAGES.rglob("*") if p.is_file())
    assert len(paths) >= 40
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(rgb_array(img))
    return images


def _generated(count: int) -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(15)
    images: list[npt.NDArray[np.uint8]] = []
    special = [(1, 1), (4, 9), (5, 5), (64, 64), (63, 64), (64, 65), (127, 129), (1, 600)]
    for h, w in special:
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    images.append(np.zeros((64, 64, 3), dtype=np.uint8))  # flat: every DCT value ties
    images.append(np.full((200, 300, 3), 77, dtype=np.uint8))
    for _ in range(20):  # wider box-filter windows (up to 13 pixels per pass)
        h, w = (int(v) for v in rng.integers(300, 1700, 2))
        images.append(smooth_image(rng, h, w))
    while len(images) < count:
        h, w = (int(v) for v in rng.integers(5, 260, 2))
        style = len(images) % 4
        if style == 0:
            images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        elif style == 1:
            images.append(smooth_image(rng, h, w))
        elif style == 2:  # blocks: few distinct values, many ties in the DCT
            small = rng.integers(0, 256, (max(1, h // 40), max(1, w // 40), 3), dtype=np.uint8)
            images.append(np.ascontiguousarray(np.kron(small, np.ones((40, 40, 1)))[:h, :w]))
        else:  # low contrast: quality near the threshold
            base = smooth_image(rng, h, w).astype(np.int16) // int(rng.integers(4, 40))
            images.append((base + 100).astype(np.uint8))
    return [np.ascontiguousarray(a, dtype=np.uint8) for a in images]


@pytest.mark.parametrize("source", ["vectors", "generated"])
def test_pdq_port_is_bit_exact(source: str) -> None:
    images = _vector_images() if source == "vectors" else _generated(1100)
    expected = [pdq_from_rgb(a) for a in images]
    got = pdq_in_node(images)
    mismatches = [
        (i, a.shape, (int(e[0], 16) ^ int(g[0], 16)).bit_count(), e[1], g[1])
        for i, (a, e, g) in enumerate(zip(images, expected, got, strict=True))
        if e != g
    ]
    assert mismatches == [], f"{len(mismatches)} of {len(images)} differ: {mismatches[:5]}"
    qualities = {q for _, q in expected}
    if source == "generated":  # the corpus exercises the quality floor from both sides
        assert min(qualities) < 50 < max(qualities)
