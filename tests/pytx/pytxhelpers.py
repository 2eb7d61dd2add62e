"""The platform side of the pytx tests: the real threatexchange CLI in a HOME of its own."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hashfed.hasher.batch import Result, hash_path

BIN = Path(sys.executable).parent
VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors" / "pdq" / "images"
PHOTO = VECTORS / "pen-and-coaster.png"
OTHER_PHOTO = VECTORS / "bridge-mods" / "aaa-orig.jpg"
THIRD_PHOTO = VECTORS / "misc-images" / "c.png"
ORIGIN = "p.test/hashfed"


@dataclass
class Platform:
    """A platform's python-threatexchange, configured for one hashfed collaboration."""

    home: Path
    env: dict[str, str] = field(repr=False)

    def tx(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "threatexchange"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def fetch(self) -> subprocess.CompletedProcess[str]:
        return self.tx("-v", "fetch")  # -v: the reasons, as pytx logs them

    def matches(self, photo: Path) -> list[str]:
        done = self.tx("match", "photo", str(photo))
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("pdq ")]

    @property
    def state_file(self) -> Path:
        return self.home / ".threatexchange" / "fetched" / "hashfed" / "stopncii.state.pickle"

    def records(self) -> list[str]:
        """Returns the hashes of the fetched records the CLI keeps (one per log entry)."""
        return sorted(
            entry.hash for entry in pickle.loads(self.state_file.read_bytes()).updates.values()
        )


def platform(
    tmp_path: Path, url: str, log_key: str, peer_key: str | None = None, *extra: str
) -> Platform:
    """Returns a platform whose pytx has the extension and the collab "stopncii" for url
    (extra: more 'config collab edit' flags)."""
    home = tmp_path / "platform"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = str(home)
    env.pop("TX_HASHFED_PEER_KEY", None)
    if peer_key is not None:
        env["TX_HASHFED_PEER_KEY"] = peer_key
    p = Platform(home, env)
    added = p.tx("config", "extensions", "add", "hashfed.sync.pytx")
    assert added.returncode == 0, added.stderr
    assert "hashfed" in added.stdout
    edit = p.tx(
        "config", "collab", "edit", "hashfed", "stopncii", "--create",
        "--urls", url, "--origin", ORIGIN, "--log-key", log_key, *extra,
    )  # fmt: skip
    assert edit.returncode == 0, edit.stderr
    return p


def pdq_of(photo: Path) -> str:
    """Returns the PDQ hash of photo, as the person's device computes it."""
    (result,) = hash_path(photo)
    assert isinstance(result, Result) and result.publishable and result.quality == 100
    return result.hash
