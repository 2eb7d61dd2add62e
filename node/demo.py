"""``make run``: a short, self-checking tour of a hashfed node on this machine.

It creates a publisher node in ``demo-work/`` (removed and recreated each run),
publishes sample hash records, retracts one, verifies the whole log offline, and
prints each command with what it answered. It stops by itself and exits non-zero
if any step does not do what it should.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

WORK = Path("demo-work")

# Sample bank records: PDQ hashes of the reference images in shared/vectors
# (python-threatexchange's hashes of them) and the MD5 of a sample video.
SAMPLE_CSV = """kind,hash,quality,labels
pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,100,ncii
pdq,1f811b9d267fbc6693c0c7f30e041f9df49b836303e10f067fcdfc12c02d01f9,100,ncii
pdq,f8f8f0cee0f4a84f06370a2a038f63f0b36e26d596621e1d33e6b39c4e9c9b22,100,ncii;test
md5,0a21c8f85a55a9e276ffc2c53f6887c4,,ncii
"""


def _hashfed() -> list[str]:
    script = Path(sys.executable).with_name("hashfed")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hashfed.node"]


def step(title: str, *args: str, stdin: str | None = None, expect_fail: bool = False) -> str:
    """Runs one hashfed command, prints it and its output, and returns stdout."""
    command = [*_hashfed(), "--dir", str(WORK / "publisher"), *args]
    print(f"\n== {title}\n$ hashfed --dir {WORK / 'publisher'} {shlex.join(args)}", flush=True)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print("  " + output.replace("\n", "\n  "))
    if (done.returncode != 0) != expect_fail:
        raise SystemExit(f"demo failed at '{title}' (exit code {done.returncode})")
    return done.stdout


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    step(
        "Create a publisher node: a key and an empty signed log",
        "init",
        "--origin",
        "stopncii.demo/bank",
        "--role",
        "publisher",
    )
    step("Its verifier key, which partners will trust", "keys", "show")
    step(
        "Publish four hash records (three PDQ photos, one MD5 video)",
        "publish",
        "-",
        stdin=SAMPLE_CSV,
    )
    step(
        "A bad record changes nothing: the MD5 of an empty file is refused",
        "publish",
        "-",
        stdin="kind,hash\nmd5,d41d8cd98f00b204e9800998ecf8427e\n",
        expect_fail=True,
    )
    step("The person behind entry 1 withdraws: retract it", "retract", "1")
    step("The log: the retracted hash is erased, its commitment stays", "log", "show")
    step("The signed checkpoint (C2SP tlog-checkpoint)", "log", "checkpoint")
    step("An offline proof that entry 0 is in the log (C2SP tlog-proof)", "log", "proof", "0")
    report = json.loads(step("Verify everything from the entries alone", "log", "verify", "--json"))
    if not report["ok"] or report["entries"] != 5:
        raise SystemExit("demo failed: the log did not verify as expected")
    print(f"\nDone: {report['entries']} entries verified; the node is in {WORK}/publisher.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
