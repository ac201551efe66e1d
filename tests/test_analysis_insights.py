"""Insights: critical paths worked out by hand, shares, concurrency, cache, repeats, tokens, the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ha_agent_tracing._cli import main
from ha_agent_tracing.analysis import UNTRACKED, analyze_reports, critical_path

from .agent_harness import running_agent


def metric(
    name: str, start: float, end: float, span_id: str, parent: str | None = None, **metadata: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "duration": end - start,
        "start_offset": start,
        "span_id": span_id,
        "parent_span_id": parent,
        "metadata": metadata,
    }


def chat_report(
    trace: str, *, sequential: bool = False, model_ms: float = 30.0, cache_hit: bool = False
) -> dict[str, Any]:
    """A request worked out by hand (ms): two model turns around two tool calls.

    rate_limit 0-1; message_assembly 1-11 holding context_refresh 2-10; model 11-41; tools A 41-51 and
    B 41-61 (or 51-71 one after another); model again; token count; 8 ms after the last metric.
    """
    t = 11 + model_ms
    tool_b = (t + 10, t + 30) if sequential else (t, t + 20)
    second = tool_b[1]
    end = second + model_ms
    return {
        "operation": "chat_request",
        "total_duration": end + 1 + 8,
        "timestamp": 1_800_000_000.0,
        "trace_id": trace,
        "span_id": "f" * 16,
        "metrics": [
            metric("rate_limit_check", 0, 1, "01"),
            metric("message_assembly", 1, 11, "02"),
            metric("context_refresh", 2, 10, "03", "02", cache_hit=cache_hit),
            metric("openai_api_call", 11, t, "04", iteration=1, prompt_tokens=900, completion_tokens=20),
            metric("tool_execution", t, t + 10, "05", tool_name="get_entity_states", arguments_length=2),
            metric("tool_execution", *tool_b, "06", tool_name="call_service", arguments_length=40),
            metric(
                "openai_api_call", second, end, "07", iteration=2, prompt_tokens=1200, completion_tokens=35
            ),
            metric("token_count_retrieval", end, end + 1, "08"),
        ],
    }


def test_critical_path_follows_the_longer_of_concurrent_tool_calls() -> None:
    path = critical_path(chat_report("a" * 32))
    assert path == [
        ("rate_limit_check", 1.0),
        ("message_assembly", 1.0),
        ("context_refresh", 8.0),
        ("message_assembly", 1.0),
        ("openai_api_call", 30.0),
        ("tool_execution", 20.0),
        ("openai_api_call", 30.0),
        ("token_count_retrieval", 1.0),
        (UNTRACKED, 8.0),
    ]
    assert sum(ms for _, ms in path) == pytest.approx(100.0)


def test_critical_path_of_sequential_tool_calls_holds_both() -> None:
    path = critical_path(chat_report("a" * 32, sequential=True))
    assert [step for step in path if step[0] == "tool_execution"] == [("tool_execution", 30.0)]
    assert sum(ms for _, ms in path) == pytest.approx(110.0)


def test_gaps_between_metrics_and_metrics_without_ids_are_untracked_or_flat() -> None:
    """A gap is the parent's own time; an old export without span ids is read as one level."""
    report = {
        "operation": "op",
        "total_duration": 50.0,
        "metrics": [
            {"name": "a", "duration": 10.0, "start_offset": 5.0},
            {"name": "b", "duration": 20.0, "start_offset": 20.0},
        ],
    }
    assert critical_path(report) == [
        (UNTRACKED, 5.0),
        ("a", 10.0),
        (UNTRACKED, 5.0),
        ("b", 20.0),
        (UNTRACKED, 10.0),
    ]


def test_a_metric_running_past_the_request_end_is_not_on_the_path() -> None:
    report = {
        "operation": "op",
        "total_duration": 20.0,
        "metrics": [metric("work", 0, 15, "01"), metric("background", 10, 40, "02")],
    }
    assert critical_path(report) == [("work", 15.0), (UNTRACKED, 5.0)]


def test_shares_bottleneck_and_concurrency() -> None:
    reports = [chat_report(f"{i:032x}", model_ms=30 + i) for i in range(10)]
    found = analyze_reports(reports)["chat_request"]
    bottleneck = found["bottleneck"]
    assert bottleneck is not None and bottleneck["name"] == "openai_api_call"
    shares = {s["name"]: s for s in found["shares"]}
    # Typical requests (p40..p60 of totals) are i = 4 and 5: model 34 and 35 ms per turn.
    assert shares["openai_api_call"]["ms_p50"] == pytest.approx(69.0)
    assert shares["openai_api_call"]["share_p50"] == pytest.approx(138 / (108 + 110))
    assert shares["tool_execution"]["ms_p50"] == pytest.approx(20.0)
    # The tail (>= p90) is the slowest request alone: model 39 ms per turn.
    assert shares["openai_api_call"]["ms_p95"] == pytest.approx(78.0)
    assert sum(s["share_p50"] for s in found["shares"]) == pytest.approx(1.0)
    concurrency = found["concurrency"]
    assert concurrency["saved_ms_per_request"] == pytest.approx(10.0)
    assert concurrency["metrics"] == ["tool_execution"]
    assert concurrency["trace_ids"][0] in {r["trace_id"] for r in reports}
    assert found["critical_paths"][0]["trace_id"] == f"{9:032x}", "the slowest request first"
    assert "only 10 requests" in found["notes"][0]


def test_sequential_requests_saved_nothing() -> None:
    found = analyze_reports([chat_report("b" * 32, sequential=True)] * 3)["chat_request"]
    assert found["concurrency"]["requests_with_concurrency"] == 0


def test_cache_hit_rate_with_the_cost_of_a_miss() -> None:
    reports = [chat_report(f"{i:032x}", cache_hit=i % 4 != 0) for i in range(8)]
    reports[0]["metrics"][2]["duration"] = 30.0
    (cache,) = analyze_reports(reports)["chat_request"]["cache"]
    assert (cache["name"], cache["hits"], cache["misses"], cache["hit_rate"]) == (
        "context_refresh",
        6,
        2,
        0.75,
    )
    assert cache["miss_ms_p50"] == pytest.approx(19.0)
    assert cache["trace_ids"] == [f"{0:032x}", f"{4:032x}"]


def test_repeated_identical_tool_calls_within_one_request() -> None:
    report = chat_report("c" * 32)
    report["metrics"][5]["metadata"] = {"tool_name": "get_entity_states", "arguments_length": 2}
    other = chat_report("d" * 32)
    (repeat,) = analyze_reports([report, other])["chat_request"]["repeated_tool_calls"]
    assert repeat == {
        "trace_id": "c" * 32,
        "tool": "get_entity_states",
        "calls": 2,
        "repeat_ms": 10.0,
        "same": "argument length (arguments not captured)",
    }
    # With captured arguments, the arguments decide.
    for m, args in zip(report["metrics"][4:6], ['{"a": 1}', '{"a": 2}'], strict=True):
        m["metadata"]["gen_ai.tool.call.arguments"] = args
    assert analyze_reports([report])["chat_request"]["repeated_tool_calls"] == []


def test_turns_with_the_most_tokens() -> None:
    reports = [chat_report("e" * 32), chat_report("f" * 32)]
    reports[1]["metrics"][6]["metadata"]["prompt_tokens"] = 5000
    turns = analyze_reports(reports, top=2)["chat_request"]["top_token_turns"]
    assert [(t["trace_id"], t["iteration"], t["tokens"]) for t in turns] == [
        ("f" * 32, 2, 5035),
        ("e" * 32, 2, 1235),
    ]


def test_unknown_operation_is_an_error() -> None:
    with pytest.raises(ValueError, match="no reports of operation"):
        analyze_reports([chat_report("a" * 32)], operations=["nightly"])


def test_analyze_command_names_the_bottleneck_with_trace_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reports.json"
    path.write_text(json.dumps([chat_report(f"{i:032x}", model_ms=30 + i) for i in range(10)]))
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "bottleneck: openai_api_call" in out
    assert f"{9:032x}  " in out, "the slowest request's path is listed with its trace id"
    assert "concurrency saved 10.0 ms per request" in out
    assert "cache: context_refresh hit 0 of 10" in out
    assert main(["analyze", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["operations"]["chat_request"]["requests"] == 10
    assert main(["analyze", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_analyze_real_requests_of_the_reference_service() -> None:
    """Against the running service: the model decides the latency, the tools ran side by side."""
    with running_agent(model_latency_ms=60, home_latency_ms=15) as agent:
        for message in [
            "Switch on the coffee maker and turn on the office fan",
            "Which lights are on?",
            "Hello",
        ]:
            assert agent.chat(message).status_code == 200
        reports = agent.reports(3)
    found = analyze_reports(reports)["chat_request"]
    assert found["bottleneck"] is not None and found["bottleneck"]["name"] == "openai_api_call"
    for row in found["critical_paths"]:
        report = next(r for r in reports if r["trace_id"] == row["trace_id"])
        assert sum(step["ms"] for step in row["path"]) == pytest.approx(report["total_duration"], abs=1e-6)
    assert found["concurrency"]["metrics"] == ["tool_execution"]
    assert found["concurrency"]["saved_ms_per_request"] > 0
