"""The pytx exchange: python-threatexchange fetches a hashfed log, beside ``hashfed sync``.

A publisher node publishes N records and serves them with a real ``hashfed
serve`` subprocess. In the same run and on the same log:

* ``hashfed sync``: a partner node catches up (bench_sync's sync phase: verify
  everything, apply it to its SQLite bank);
* the exchange: ``HashfedSignalExchangeAPI.fetch_iter`` in .venv-pytx (the
  venv with the ``pytx`` extra), authenticated with the partner's peer key,
  verifies the same log bundle by bundle and the deltas are merged the way
  pytx's own state store merges them (``naive_fetch_merge``), then converted
  for indexing once (``naive_convert_to_signal_type``), as the CLI does before
  building its index.

Both report records/s and peak RSS; the table gives the exchange's rate over
the node's as a ratio. ``python -m bench.bench_pytx PHASE ...`` runs one phase
and prints JSON; module-level imports are stdlib only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_sync import PUBLISHER, _free_port, _start, _stop
from bench.table import Row, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
PYTX_PYTHON = ROOT / ".venv-pytx" / "bin" / "python"


def phase_pytx(part_home: Path, url: str, log_key: str) -> dict[str, float]:
    """Fetches the whole log through the exchange, merging deltas as pytx's store does."""
    from hashfed.signing.keys import read_key_file
    from hashfed.sync.pytx import HashfedSignalExchangeAPI
    from hashfed.sync.pytx.config import HashfedCollabConfig, HashfedCredentials
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    peer_key = read_key_file(part_home / "keys" / "peer.key")  # the partner node's
    collab = HashfedCollabConfig(urls=[url], origin=PUBLISHER, log_key=log_key, name="bench")
    api = HashfedSignalExchangeAPI.for_collab(collab, HashfedCredentials(peer_key.strip()))
    types = [PdqSignal, VideoMD5Signal]
    state: dict[int, object] = {}
    t0 = time.perf_counter()
    deltas = 0
    for delta in api.fetch_iter(types, None):
        HashfedSignalExchangeAPI.naive_fetch_merge(state, delta.updates)
        deltas += 1
    fetched = time.perf_counter() - t0
    converted = HashfedSignalExchangeAPI.naive_convert_to_signal_type(types, collab, state)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "fetch_seconds": fetched,
        "records": len(state),
        "signals": sum(len(v) for v in converted.values()),
        "deltas": deltas,
        "rss_mb": peak_rss_mb(),
    }


def phase_logkey(pub_home: Path) -> dict[str, str]:
    from hashfed.node.home import open_node

    with open_node(pub_home) as node:
        return {"vkey": node.signer.vkey(), "peer_vkey": node.peer_signer.vkey()}


def _child(*args: str, python: str = sys.executable, module: str = "bench.bench_pytx") -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [python, "-m", module, *args], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run(quick: bool) -> list[Row]:
    count = 50_000 if quick else 1_000_000
    if not PYTX_PYTHON.exists():
        raise SystemExit(f"{PYTX_PYTHON} is missing: 'make bench' builds it")
    hashfed = Path(sys.executable).with_name("hashfed")
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-pytx-") as tmp:
        pub, part = Path(tmp) / "publisher", Path(tmp) / "partner"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        _child("setup", str(pub), str(part), url, str(count), module="bench.bench_sync")
        keys = _child("logkey", str(pub))
        vkey = keys["vkey"]
        server = _start(
            [str(hashfed), "--dir", str(pub), "serve", "--port", str(port), "--no-sync"],
            f"{url}/healthz",
            Path(tmp) / "serve.log",
        )
        try:
            # VKEY@URL: the exchange signs in only where the node proves its peer key.
            node_url = f"{keys['peer_vkey']}@{url}"
            exchange = _child("pytx", str(part), node_url, vkey, python=str(PYTX_PYTHON))
            node = _child("sync", str(part), module="bench.bench_sync")
        finally:
            _stop(server)
    if exchange["records"] != count or node["new_size"] != count:
        raise SystemExit(f"wrong sizes: exchange {exchange}, node {node}")
    name = f"pytx exchange ({count:,} records)"
    theirs = count / node["seconds"]
    return [
        Row(
            name,
            "fetch records/s (verified, merged, converted)",
            count / exchange["seconds"],
            "rec/s",
            peer=theirs,
            peer_name="hashfed sync, same log",
            note=f"{exchange['deltas']:,} deltas, one per bundle",
        ),
        Row(
            name,
            "peak RSS (fetching side)",
            exchange["rss_mb"],
            "MB",
            peer=node["rss_mb"],
            peer_name="hashfed sync, same log",
            higher_is_better=False,
            note="pytx keeps every record in memory, as its CLI state does",
        ),
    ]


if __name__ == "__main__":
    phase, *rest = sys.argv[1:]
    if phase == "pytx":
        result: dict[str, object] = dict(phase_pytx(Path(rest[0]), rest[1], rest[2]))
    elif phase == "logkey":
        result = dict(phase_logkey(Path(rest[0])))
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    os._exit(0)
