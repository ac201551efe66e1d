"""compare and analyze read the report history: a selection by time, version and variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ha_agent_tracing._cli import main
from ha_agent_tracing.reports._history import History

from .test_analysis_compare import make_reports


def test_history_selections_by_variant_time_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.sqlite3"
    history = History(path)
    for report in make_reports(30, 1.0, seed=1, variant="parallel") + make_reports(
        30, 1.4, seed=2, variant="sequential"
    ):
        report["service_version"] = "1.4.0"
        history.record(report)
    assert history.flush()
    history.close()
    a, b = f"history#path={path}&variant=parallel", f"history#path={path}&variant=sequential&version=1.4.0"
    assert main(["compare", a, b, "--json", "--resamples", "200"]) == 0
    total = json.loads(capsys.readouterr().out)["operations"]["chat_request"]["measures"][0]
    assert (total["n_a"], total["n_b"], total["verdict"]) == (30, 30, "slower")
    assert main(["analyze", f"history#path={path}&since=1800000010&until=1800000020"]) == 0
    assert "chat_request: 20 requests" in capsys.readouterr().out  # 10 of each variant in that window
    assert main(["compare", a, f"history#path={path}&version=9.9"]) == 2
    assert "no reports match" in capsys.readouterr().err


def test_a_missing_or_broken_history_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"not a database" * 100)
    assert main(["analyze", f"history#path={broken}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"analyze: history#path={broken}: ") and "Traceback" not in err
