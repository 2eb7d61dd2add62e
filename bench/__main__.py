"""Run every benchmark and print one table: ``python -m bench [--quick] [NAME...]``."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.table import Row, render

MODULES = [
    "bench_log",
    "bench_hash",
    "bench_sync",
    "bench_match",
    "bench_witness",
    "bench_serve",
    "bench_static",
    "bench_page",
    "bench_flood",
    "bench_pytx",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {MODULES})")
    args = parser.parse_args()
    rows: list[Row] = []
    failed: list[str] = []
    for name in args.names or MODULES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:  # one module failing must not lose the rows the others measured
            module = importlib.import_module(f"bench.{name}")
            rows.extend(module.run(quick=args.quick))
        except (Exception, SystemExit) as exc:
            failed.append(name)
            print(f"{name} FAILED: {exc}", file=sys.stderr, flush=True)
    print(render(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)} (see above); the rows above are from the others")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
