"""The benchmark command runs (quick mode) and writes every figure; no timing goal is checked here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_every_ratio(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick` finishes and records each ratio the README reports."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((tmp_path / "quick.json").read_text())
    # Differences of two timings can come out below zero in a run this short; they must exist.
    for key in ("processor_us_per_span", "sdk_batch_us_per_span"):
        assert math.isfinite(figures["tracker"][key]), key
    for section, key in [
        ("tracker", "tracker_ratio"),
        ("tracker", "fold_us_per_metric"),
        ("tracker", "tracker_read_once_ratio"),
        ("service", "metrics_only_over_disabled"),
        ("service", "instrumented_over_disabled"),
        ("service", "exporting_over_disabled"),
        ("service", "unreachable_over_reachable_p99"),
        ("shutdown", "elapsed_s"),
    ]:
        assert figures[section][key] > 0, (section, key)
    assert figures["shutdown"]["elapsed_s"] < figures["shutdown"]["bound_s"] + 1.0
    assert (tmp_path / "quick.md").read_text().count("\n| ") == 12  # the separator and 11 rows
