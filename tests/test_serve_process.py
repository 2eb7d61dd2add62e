"""The real 'hashfed serve' process: TLS from hashfed.toml, a flag overriding the
configured port, and a graceful exit on SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import ssl
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hashfed.node.config import write_config
from hashfed.node.home import init_node
from servehelpers import free_port, start_serve, stop, wait_for_status


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Writes a certificate for 127.0.0.1 and its key; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def get(url: str, context: ssl.SSLContext | None) -> int:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:
        return int(response.status)


def test_serve_tls_flag_override_and_graceful_shutdown(tmp_path: Path) -> None:
    home = tmp_path / "n"
    node = init_node(home, "n.test/hashfed")
    cert, key = self_signed(home)
    configured, flagged = free_port(), free_port()
    server_config = replace(
        node.config.server, tls_cert=str(cert), tls_key=str(key), port=configured
    )
    write_config(replace(node.config, server=server_config))
    node.close()
    served = start_serve(home, "--port", str(flagged), "--no-sync")
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        wait_for_status(served, f"https://127.0.0.1:{flagged}/healthz", context=trusted)
        with pytest.raises((urllib.error.URLError, OSError)):  # the flag won over the file
            get(f"https://127.0.0.1:{configured}/healthz", trusted)
        with pytest.raises((urllib.error.URLError, OSError)):  # TLS only, no plain HTTP
            get(f"http://127.0.0.1:{flagged}/healthz", None)
        served.proc.send_signal(signal.SIGTERM)
    finally:
        code = stop(served)
    assert code == 0, served.output()
