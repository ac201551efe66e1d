"""Comparing report sets: sources, filters, measures, the table, JSON, the CI gate and bad input."""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ha_agent_tracing._cli import main
from ha_agent_tracing._cli_analysis import add_compare, run_compare
from ha_agent_tracing.analysis import (
    ReportSetError,
    compare_reports,
    load_report_set,
    parse_source,
    parse_time,
    slower_than,
)


def make_reports(
    n: int, scale: float, *, seed: int, variant: str | None = None, tools: int = 2
) -> list[dict[str, Any]]:
    """Chat reports: a model call taking most of the time and ``tools`` concurrent tool calls."""
    rng = random.Random(seed)
    reports = []
    for i in range(n):
        model = 80.0 * scale * rng.lognormvariate(0, 0.25)
        tool_calls = [
            {
                "name": "tool_execution",
                "duration": 10.0 * rng.uniform(0.9, 1.1),
                "metadata": {"tool_name": "t"},
            }
            for _ in range(tools)
        ]
        report: dict[str, Any] = {
            "operation": "chat_request",
            "total_duration": model + 12.0,
            "timestamp": 1_800_000_000.0 + i,
            "metrics": [
                {
                    "name": "conversation_management",
                    "duration": 0.01,
                    "metadata": {"conversation_id": f"c{i // 4}"},
                },
                {"name": "openai_api_call", "duration": model, "metadata": {}},
                *tool_calls,
            ],
            "trace_id": f"{seed:08x}{i:024x}",
            "span_id": f"{i:016x}",
        }
        if variant is not None:
            report["variant"] = variant
        reports.append(report)
    return reports


def write(path: Path, reports: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(reports))
    return str(path)


def run(*argv: str) -> tuple[int, str, str]:
    """``compare`` with its arguments parsed as the command line would; exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    parser = argparse.ArgumentParser()
    add_compare(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", *argv])
    code = run_compare(args, out, err)
    return code, out.getvalue(), err.getvalue()


# --- the comparison -------------------------------------------------------------------


def test_a_slower_build_is_called_slower_metric_by_metric() -> None:
    result = compare_reports(make_reports(60, 1.0, seed=1), make_reports(60, 1.3, seed=2), resamples=500)
    measures = {m["name"]: m for m in result["operations"]["chat_request"]["measures"]}
    assert next(iter(measures)) == "chat_request", "the total comes first"
    assert measures["chat_request"]["verdict"] == "slower"
    assert measures["openai_api_call"]["verdict"] == "slower"
    assert measures["tool_execution"]["verdict"] == "no evidence"
    low, high = (
        measures["openai_api_call"]["median_ratio"]["low"],
        measures["openai_api_call"]["median_ratio"]["high"],
    )
    assert low is not None and high is not None and low < 1.3 < high
    # Two tool calls per request: values are counted, requests are resampled.
    assert (measures["tool_execution"]["n_a"], measures["tool_execution"]["units_a"]) == (120, 60)


def test_conversations_as_units() -> None:
    result = compare_reports(
        make_reports(40, 1.0, seed=1), make_reports(40, 1.0, seed=2), unit="conversation", resamples=200
    )
    total = result["operations"]["chat_request"]["measures"][0]
    assert (total["n_a"], total["units_a"]) == (40, 10)
    assert any("small sample (10 vs 10)" in note for note in total["notes"])


def test_operations_and_metrics_on_one_side_only_are_listed() -> None:
    a = make_reports(10, 1.0, seed=1)
    b = make_reports(10, 1.0, seed=2, tools=0)
    b.append({**b[0], "operation": "nightly_sync"})
    result = compare_reports(a, b, resamples=50)
    assert result["only_in"] == {"a": [], "b": ["nightly_sync"]}
    assert result["operations"]["chat_request"]["only_in"] == {"a": ["tool_execution"], "b": []}
    with pytest.raises(ValueError, match="nightly_sync"):
        compare_reports(a, b, operations=["nightly_sync"])


def test_gate_fails_only_for_a_significant_slowdown_past_the_threshold() -> None:
    slower = compare_reports(make_reports(60, 1.0, seed=1), make_reports(60, 1.3, seed=2), resamples=300)
    assert [op for op, _ in slower_than(slower, 0.10)] == ["chat_request"]
    assert slower_than(slower, 0.50) == []
    same = compare_reports(make_reports(60, 1.0, seed=1), make_reports(60, 1.0, seed=2), resamples=300)
    assert slower_than(same, 0.0) == []


# --- sources --------------------------------------------------------------------------


def test_source_specs_parse_into_kind_location_and_filters() -> None:
    assert parse_source("out/a.json").kind == "file"
    spec = parse_source("history#variant=sequential&since=24h")
    assert (spec.kind, dict(spec.filters)) == ("history", {"variant": "sequential", "since": "24h"})
    spec = parse_source("jaeger:http://localhost:16686/#service=svc&limit=50")
    assert (spec.kind, spec.location, spec.filters["limit"]) == ("jaeger", "http://localhost:16686", "50")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a.json#colour=red", "unknown filter 'colour'"),
        ("a.json#variant", "is not key=value"),
        ("history#since=yesterday", "since: 'yesterday' is not a time"),
        ("history#since=2026-11-27T10:00:00", "no time zone"),
        ("jaeger:localhost:16686", "needs the query service's URL"),
        ("a.json#limit=ten", "limit must be a whole number"),
    ],
)
def test_bad_source_specs_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ReportSetError, match=problem):
        parse_source(text)


def test_times_in_every_accepted_form() -> None:
    assert parse_time("2026-11-27T10:00:00Z") == 1795773600.0
    assert parse_time("1795773600") == 1795773600.0
    assert parse_time("90m", now=lambda: 10_000.0) == 4_600.0


def test_files_are_filtered_by_variant_version_time_and_limit(tmp_path: Path) -> None:
    reports = make_reports(5, 1.0, seed=1, variant="parallel") + make_reports(
        5, 1.0, seed=2, variant="sequential"
    )
    reports[0]["service_version"] = "1.4.0"
    path = write(tmp_path / "both.json", reports)
    assert len(load_report_set(path + "#variant=sequential").reports) == 5
    assert len(load_report_set(path + "#version=1.4.0").reports) == 1
    assert len(load_report_set(path + "#since=1800000003&until=1800000004").reports) == 2
    assert [r["variant"] for r in load_report_set(path + "#limit=2").reports] == ["sequential"] * 2


def test_the_reports_endpoints_answer_is_accepted_too(tmp_path: Path) -> None:
    reports = make_reports(3, 1.0, seed=1)
    path = tmp_path / "answer.json"
    path.write_text(json.dumps({"count": 3, "reports": reports}))
    assert load_report_set(str(path)).reports == reports


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", r"not JSON \(line 1, column 2"),
        ('{"a": 1}', "expected a JSON array of reports"),
        ("[1]", "report 0 is not an object"),
        ('[{"total_duration": 1, "metrics": []}]', "report 0 has no 'operation' name"),
        ('[{"operation": "x", "total_duration": -1, "metrics": []}]', "'total_duration' number of 0 or more"),
        ('[{"operation": "x", "total_duration": 1}]', "no 'metrics' list"),
        ('[{"operation": "x", "total_duration": 1, "metrics": [{"duration": 1}]}]', "metric 0 has no 'name'"),
        (
            '[{"operation": "x", "total_duration": 1, "metrics": [{"name": "m", "duration": "1"}]}]',
            r"metric 0 \(m\) has no 'duration'",
        ),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ReportSetError, match=problem) as caught:
        load_report_set(str(path))
    assert str(caught.value).startswith(str(path) + ": ")


def test_missing_files_and_unavailable_sources(tmp_path: Path) -> None:
    with pytest.raises(ReportSetError, match="no such file"):
        load_report_set(str(tmp_path / "none.json"))
    with pytest.raises(ReportSetError, match="is a directory"):
        load_report_set(str(tmp_path))


# --- the command ----------------------------------------------------------------------


def test_compare_prints_a_table_with_intervals_and_verdicts(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_reports(50, 1.0, seed=1))
    b = write(tmp_path / "b.json", make_reports(50, 0.7, seed=2))
    code, out, err = run(a, b, "--resamples", "300")
    assert (code, err) == (0, "")
    line = next(row for row in out.splitlines() if row.startswith("chat_request (total)"))
    assert "faster (could detect" in line
    assert "[" in line and "]" in line, "the ratios come with intervals"
    assert next(row for row in out.splitlines() if row.startswith("tool_execution")).split()[1:3] == [
        "100",
        "100",
    ]


def test_compare_json_is_the_comparison(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_reports(20, 1.0, seed=1))
    b = write(tmp_path / "b.json", make_reports(20, 1.0, seed=2))
    code, out, _ = run(a, b, "--json", "--resamples", "100", "--seed", "7")
    document = json.loads(out)
    assert code == 0
    assert (document["a"], document["b"], document["seed"]) == (a, b, 7)
    assert document == {
        "a": a,
        "b": b,
        **compare_reports(
            json.loads(Path(a).read_text()), json.loads(Path(b).read_text()), resamples=100, seed=7
        ),
    }


def test_fail_if_slower_exits_1_for_a_regression_and_0_otherwise(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_reports(60, 1.0, seed=1))
    slower = write(tmp_path / "slower.json", make_reports(60, 1.3, seed=2))
    same = write(tmp_path / "same.json", make_reports(60, 1.0, seed=3))
    code, _, err = run(a, slower, "--fail-if-slower", "10%", "--resamples", "300")
    assert code == 1
    assert "chat_request is slower in B: median x1.3" in err
    code, out, _ = run(a, same, "--fail-if-slower", "10%", "--resamples", "300")
    assert code == 0 and "gate passed" in out
    code, _, _ = run(a, slower, "--fail-if-slower", "50%", "--resamples", "300")
    assert code == 0


def test_malformed_input_on_the_command_line_exits_2_naming_the_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_reports(5, 1.0, seed=1))
    (tmp_path / "b.json").write_text('[{"operation": "chat_request"}]')
    command = [sys.executable, "-m", "ha_agent_tracing._cli", "compare", a, str(tmp_path / "b.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"compare: {tmp_path / 'b.json'}: report 0 has no 'total_duration' number of 0 or more (got None)"
    )
    assert "Traceback" not in result.stderr


def test_a_bad_gate_value_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["compare", "a.json", "b.json", "--fail-if-slower", "ten"])
    assert caught.value.code == 2
    assert "expected a percentage such as 10%" in capsys.readouterr().err


def test_no_matching_reports_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_reports(5, 1.0, seed=1))
    code, _, err = run(a, a + "#variant=none")
    assert code == 2 and "no reports match (side B)" in err
