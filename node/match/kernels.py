"""The numba kernels of :mod:`hashfed.node.match.index`: building and probing the PDQ MIH table.

Importing this module imports numba and (on the first call of each kernel)
compiles it or loads it from numba's cache (``cache=True``; the cache folder is
``NUMBA_CACHE_DIR`` when set). :mod:`hashfed.node.match.index` imports it only when
an index is first built or searched, so that programs which never match pay
nothing for numba; ``python -m hashfed.node.match.kernels`` compiles every kernel
into the cache ahead of time (``make venv`` and ``hashfed serve`` run it in a
subprocess, so that no serving process compiles).

The kernels release the GIL (``nogil=True``) and hold no state of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

F = TypeVar("F", bound=Callable[..., Any])


def _jit(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


def _popcount_typer(typingctx: Any, x: Any) -> Any:
    """Count of set bits of a uint64 (LLVM ctpop: one POPCNT instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


_popcount: Any = intrinsic(_popcount_typer)


@_jit
def _mih_build(h16: Any, offsets: Any, rows: Any) -> None:  # pragma: no cover - jitted
    """Counting-sort the rows of ``h16`` by each of its 16 chunks into (offsets, rows)."""
    n = h16.shape[0]
    for i in range(n):
        for c in range(16):
            offsets[c, np.int64(h16[i, c]) + 1] += 1
    for c in range(16):
        for v in range(65536):
            offsets[c, v + 1] += offsets[c, v]
    cursor = offsets[:, :65536].copy()
    for i in range(n):
        for c in range(16):
            w = np.int64(h16[i, c])
            rows[c, cursor[c, w]] = i
            cursor[c, w] += 1


@_jit
def _distance(h: Any, r: Any, q: Any) -> Any:  # pragma: no cover - jitted
    return (
        _popcount(h[r, 0] ^ q[0])
        + _popcount(h[r, 1] ^ q[1])
        + _popcount(h[r, 2] ^ q[2])
        + _popcount(h[r, 3] ^ q[3])
    )


@_jit
def _sort_hits(out_ids: Any, out_d: Any, lo: Any, hi: Any) -> None:  # pragma: no cover
    """Sort out[lo:hi] by distance, then id."""
    if hi - lo < 2:
        return
    ids = out_ids[lo:hi].copy()
    d = out_d[lo:hi].copy()
    o = np.argsort(ids, kind="mergesort")
    ids = ids[o]
    d = d[o]
    o = np.argsort(d, kind="mergesort")
    out_ids[lo:hi] = ids[o]
    out_d[lo:hi] = d[o]


def _prefetch_typer(typingctx: Any, arr: Any, idx: Any) -> Any:
    """Hint the CPU to fetch element ``idx`` of the flat array ``arr`` into cache."""
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "llvm.prefetch.p0"
        )
        # read, high temporal locality, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


_prefetch: Any = intrinsic(_prefetch_typer)

_LOOKAHEAD = 16  # candidates prefetched ahead of the one being verified


@_jit
def _pdq_search(
    qs: Any,
    q16s: Any,
    ts: Any,
    b_words: Any,
    b_h16: Any,
    b_alive: Any,
    b_ids: Any,
    offsets: Any,
    rows: Any,
    d_hashes: Any,
    d_alive: Any,
    d_ids: Any,
    d_count: Any,
    out_ids: Any,
    out_d: Any,
    starts: Any,
    first: Any,
) -> Any:  # pragma: no cover - jitted
    """Search queries first.. into out[starts[i]:starts[i+1]]; return the first query
    whose hits did not fit (len(qs) when all did).

    Per query: (1) read the 16 x 17 bucket ranges and prefetch each bucket's first
    row; (2) gather the candidate rows; (3) verify them, prefetching ahead, since
    the hashes they point to are scattered over the whole bank.
    """
    cap = out_ids.shape[0]
    n_rows = rows.shape[1]
    flat_rows = rows.reshape(-1)
    flat_words = b_words.reshape(-1)
    lo_a = np.empty(16 * 17, dtype=np.int64)
    hi_a = np.empty(16 * 17, dtype=np.int64)
    c_a = np.empty(16 * 17, dtype=np.int64)
    cand = np.empty(8192, dtype=np.int64)
    cand_c = np.empty(8192, dtype=np.int64)
    k = starts[first]
    for i in range(first, qs.shape[0]):
        q = qs[i]
        q16 = q16s[i]
        t = ts[i]
        radius = 1 if t >= 16 else 0
        k0 = k
        n_probe = 0
        total = np.int64(0)
        for c in range(16):
            v0 = np.int64(q16[c])
            for p in range(1 + 16 * radius):
                v = v0 if p == 0 else v0 ^ (np.int64(1) << (p - 1))
                lo = np.int64(offsets[c, v])
                hi = np.int64(offsets[c, v + 1])
                if hi > lo:
                    lo_a[n_probe] = lo
                    hi_a[n_probe] = hi
                    c_a[n_probe] = c
                    n_probe += 1
                    total += hi - lo
        for p in range(n_probe):
            _prefetch(flat_rows, c_a[p] * n_rows + lo_a[p])
        if total > cand.shape[0]:
            cand = np.empty(2 * total, dtype=np.int64)
            cand_c = np.empty(2 * total, dtype=np.int64)
        n_cand = 0
        for p in range(n_probe):
            c = c_a[p]
            for j in range(lo_a[p], hi_a[p]):
                cand[n_cand] = rows[c, j]
                cand_c[n_cand] = c
                n_cand += 1
        for j in range(n_cand):
            if j + _LOOKAHEAD < n_cand:
                _prefetch(flat_words, cand[j + _LOOKAHEAD] * 4)
            r = cand[j]
            d = _distance(b_words, r, q)
            if d > t or b_alive[r] == 0:
                continue
            # Report r only from the first chunk where it is within reach.
            seen = False
            for c2 in range(cand_c[j]):
                if _popcount(np.uint64(q16[c2] ^ b_h16[r, c2])) <= radius:
                    seen = True
                    break
            if seen:
                continue
            if k < cap:
                out_ids[k] = b_ids[r]
                out_d[k] = d
            k += 1
        for r in range(d_count):
            if d_alive[r] == 0:
                continue
            d = _distance(d_hashes, r, q)
            if d <= t:
                if k < cap:
                    out_ids[k] = d_ids[r]
                    out_d[k] = d
                k += 1
        if k > cap:
            return i
        _sort_hits(out_ids, out_d, k0, k)
        starts[i + 1] = k
    return qs.shape[0]


def main() -> None:
    """Compiles every kernel (or checks that numba's cache holds it)."""
    from hashfed.node.match.index import warm_up

    warm_up()


if __name__ == "__main__":
    main()
