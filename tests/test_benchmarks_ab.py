"""The A/B benchmark runs (quick mode): two real services, their exports, the comparison table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_ab_run_compares_two_real_services(tmp_path: Path) -> None:
    """`benchmarks/ab.py parallel-tools --quick` exports both services' reports and prints the comparison."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "ab.py"),
            "parallel-tools",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for side in ("a", "b"):
        reports = json.loads((tmp_path / f"parallel-tools-{side}.json").read_text())
        assert len([r for r in reports if r["operation"] == "chat_request"]) == 6
    assert "chat_request (total)" in result.stdout
    assert "\ntool_execution " in result.stdout
    table = (tmp_path / "parallel-tools.md").read_text()
    assert table.startswith("`ha-agent-tracing compare ") and "chat_request (total)" in table
