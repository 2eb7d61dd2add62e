"""Run every benchmark and print one table: ``python -m bench [--quick] [NAME...]``."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.table import Row, render

MODULES = ["bench_log", "bench_hash", "bench_sync", "bench_match", "bench_witness", "bench_pytx"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {MODULES})")
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.names or MODULES:
        module = importlib.import_module(f"bench.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(quick=args.quick))
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
