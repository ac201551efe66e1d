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
    for section, key in [
        ("tracker", "tracker_ratio"),
        ("tracker", "processor_us_per_span"),
        ("tracker", "no_processor_ratio"),
        ("tracker", "keep_only_ratio"),
        ("tracker", "group_only_ratio"),
        ("reads", "repeated_read_ms"),
        ("service", "metrics_only_over_disabled_p50"),
        ("service", "metrics_only_over_disabled_cpu"),
        ("service", "instrumented_over_disabled_p50"),
        ("service", "instrumented_over_disabled_cpu"),
        ("service", "exporting_over_instrumented_p99"),
        ("service", "exporting_512_over_instrumented_p99"),
        ("service", "unreachable_over_exporting_p99"),
    ]:
        figure = figures[section][key]
        # Per-round figures with their spread, never one pooled number.
        assert figure["p25"] <= figure["median"] <= figure["p75"], (section, key)
        assert math.isfinite(figure["median"]), (section, key)
    for name in ("bare", "tracker", "tracker_no_processor", "tracker_keep_only", "tracker_group_only"):
        assert figures["tracker"]["us_per_span"][name]["median"] > 0, name
    assert figures["tracker"]["tracker_ratio"]["n"] == 3
    assert 0 < figures["memory"]["bytes_per_span_unread"] < figures["memory"]["bytes_per_span_read"]
    assert figures["reads"]["first_read_ms"] > 0
    assert figures["shutdown"]["elapsed_s"] < figures["shutdown"]["bound_s"] + 1.0
    assert (tmp_path / "quick.md").read_text().count("\n| ") == 20  # the separator and 19 rows
