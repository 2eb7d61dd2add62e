"""Debian's real nginx, run unprivileged-style for tests and benchmarks.

The Makefile unpacks Debian's nginx package into build/nginx (no service is
installed or started). :func:`run_nginx` writes a top-level configuration that
includes the checked-in docs/nginx/hashfed-http.conf and hashfed-locations.conf,
starts nginx with ``-p``/``-c``, ``daemon off`` on a free loopback port, waits
until it accepts connections, and stops it (SIGQUIT, then waits) afterwards.
When run as root, nginx's workers run as ``nobody``, so the tree must be
readable by that user, as in a real deployment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = ROOT / "docs" / "nginx"


def nginx_binary() -> str:
    """Returns the nginx to run: the one the Makefile unpacked, else the system's."""
    for candidate in (ROOT / "build" / "nginx" / "usr" / "sbin" / "nginx", Path("/usr/sbin/nginx")):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nginx")
    if found is None:
        raise RuntimeError("nginx is missing: run 'make test' (it unpacks Debian's nginx)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def shared_dir() -> Iterator[Path]:
    """Yields a fresh directory that nginx's worker user can traverse (0755 under /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="hashfed-nginx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(base: Path, tree: Path, port: int, node: str, writer: str, workers: int) -> str:
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes {workers};
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    include {SNIPPETS}/hashfed-http.conf;
    proxy_cache_path {base}/auth-cache levels=1:2 keys_zone=hashfed_auth:1m max_size=16m
                     inactive=60s;
    upstream hashfed_node {{ server {node}; keepalive 8; }}
    upstream hashfed_writer {{ server {writer}; }}
    server {{
        listen 127.0.0.1:{port};
        root {tree};
        include {SNIPPETS}/hashfed-locations.conf;
    }}
}}
"""


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def run_nginx(
    base: Path, tree: Path, node_url: str, writer_url: str | None = None, workers: int = 1
) -> Iterator[str]:
    """Runs nginx serving tree (the export directory), checking with node_url; yields its URL.

    base must be traversable by nginx's worker user (see shared_dir)."""
    node = node_url.removeprefix("http://").rstrip("/")
    writer = (writer_url or node_url).removeprefix("http://").rstrip("/")
    for _attempt in range(5):  # a free port can be taken between choosing and binding
        port = free_port()
        conf = base / "nginx.conf"
        conf.write_text(_config(base, tree, port, node, writer, workers))
        log = base / "error.log"
        with log.open("ab") as errors:
            process = subprocess.Popen(
                [nginx_binary(), "-p", str(base), "-c", str(conf), "-e", str(log)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        while process.poll() is None and not _accepts(port):
            time.sleep(0.02)  # waiting for readiness, not for a fixed time
        if process.poll() is None:
            break
        error = log.read_text(errors="replace")
        if "Address already in use" not in error:
            raise RuntimeError(f"nginx did not start: {error}")
    else:
        raise RuntimeError("nginx found no free port")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
