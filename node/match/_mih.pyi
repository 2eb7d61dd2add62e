"""Type stub for the C extension node/match/_mih.c: the PDQ multi-index-hashing table."""

from typing import Any

def build(h16: Any, offsets: Any, rows: Any) -> None:
    """build counting-sorts the rows of ``h16`` ((n, 16) uint16) by each of their 16
    chunks into ``offsets`` ((16, 65537) uint32, overwritten) and ``rows`` ((16, n) uint32)."""

def search(
    qs: Any,
    q16s: Any,
    ts: Any,
    b_words: Any,
    b_h16: Any,
    b_alive: Any,
    b_ids: Any,
    offsets: Any,
    rows: Any,
    d_words: Any,
    d_alive: Any,
    d_ids: Any,
    d_count: int,
    out_ids: Any,
    out_d: Any,
    starts: Any,
    first: int,
) -> int:
    """search searches queries ``first..`` into ``out[starts[i]:starts[i+1]]`` (by
    distance, then id) and returns the first query whose hits did not fit
    (``len(ts)`` when all did)."""
