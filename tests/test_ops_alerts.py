"""The example alert rules in docs/alerts.yml: valid, and each alert fires on synthetic
series ('promtool test rules docs/alerts_test.yml'). tests/test_ops_metrics.py checks
that every metric they use is one a running node exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def promtool() -> str:
    """Returns promtool's path: unpacked by 'make tools' into build/, or on PATH."""
    unpacked = ROOT / "build" / "tools" / "usr" / "bin" / "promtool"
    found = str(unpacked) if unpacked.exists() else shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not available: 'make tools' unpacks it from Debian's prometheus "
            "package (apt-get download prometheus), which could not be fetched here"
        )
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=DOCS, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alert_rules_are_valid_and_each_alert_fires_on_synthetic_series() -> None:
    checked = run("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {
        line.split(":", 1)[1].strip()
        for line in (DOCS / "alerts.yml").read_text().splitlines()
        if line.strip().startswith("- alert:")
    }
    covered = {
        line.split(":", 1)[1].strip()
        for line in (DOCS / "alerts_test.yml").read_text().splitlines()
        if line.strip().startswith("alertname:")
    }
    assert names == covered, names ^ covered


def test_a_rule_that_does_not_fire_as_expected_fails(tmp_path: Path) -> None:
    """The harness can fail: expecting a silent alert to fire is reported."""
    test = (
        (DOCS / "alerts_test.yml")
        .read_text()
        .replace("rule_files:\n  - alerts.yml", f"rule_files:\n  - {DOCS / 'alerts.yml'}")
    )
    broken = test.replace(
        "      - eval_time: 20m\n        alertname: HashfedSyncFailing\n        exp_alerts: []",
        "      - eval_time: 20m\n        alertname: HashfedSyncFailing\n        exp_alerts:\n"
        "          - exp_labels: {severity: critical}",
    )
    assert broken != test
    path = tmp_path / "broken_test.yml"
    path.write_text(broken)
    result = run("test", "rules", str(path))
    assert result.returncode != 0 and "HashfedSyncFailing" in result.stdout + result.stderr
