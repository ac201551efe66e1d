"""History in the running service.

Kept across restarts, read over HTTP and on the command line, and never the
cause of a failed request (corrupt file, read-only directory, full disk).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ha_agent_tracing.reports._history import History

from .agent_harness import TOKEN, Agent, running_agent, serve_command, serve_env
from .test_history import report


@contextmanager
def tmpfs(where: Path, size_kb: int, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (the test suite runs as root, as CI does)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"mounting a tmpfs needs root: {mounted.stderr}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def history_of(agent: Agent) -> History:
    assert agent.runtime.history is not None
    return agent.runtime.history


def test_reports_outlive_the_memory_store(tmp_path: Path) -> None:
    """Pushed out of memory (max_reports=2), a report is still served by trace id and in listings."""
    path = tmp_path / "history.sqlite3"
    with running_agent(tracing={"history_path": str(path), "max_reports": 2}) as agent:
        started = time.time()
        for n in range(4):
            assert agent.chat(f"Which lights are on? {n}", f"conv_{n}").status_code == 200
        reports = agent.reports(2)
        history_of(agent).flush()
        first = agent.api(f"/reports?since={started - 1}&operation=chat_request").json()
        oldest = first["reports"][0]["trace_id"]
        in_memory = {r["trace_id"] for r in reports}
        one = agent.api(f"/reports/{oldest}")
        none_before = agent.api(f"/reports?until={started - 1}").json()
        summary = agent.api(f"/summary?since={started - 1}").json()
        slowest = agent.api(f"/reports?since={started - 1}&order=slowest&limit=2").json()["reports"]
        bad_order = agent.api("/reports?order=fastest")
    assert first["count"] == 4
    assert oldest not in in_memory
    assert one.status_code == 200 and one.json()["trace_id"] == oldest
    assert none_before == {"count": 0, "reports": []}
    assert summary["chat_request"]["count"] == 4
    totals = sorted((r["total_duration"] for r in first["reports"]), reverse=True)
    assert [r["total_duration"] for r in slowest] == totals[:2], "the two slowest, from memory and history"
    assert bad_order.status_code == 422
    assert summary["chat_request"]["metrics"]["openai_api_call"]["count"] >= 4


def test_time_bounds_and_buckets_are_checked(tmp_path: Path) -> None:
    """Bad since/until/bucket values get 422 naming the problem; ISO 8601 and epoch seconds both work."""
    with running_agent(tracing={"history_path": str(tmp_path / "h.sqlite3")}) as agent:
        agent.chat("Hello")
        agent.reports(1)
        iso = agent.api("/reports?since=2020-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B02:00").json()
        epoch = agent.api("/reports?since=0").json()
        bad_since = agent.api("/reports?since=yesterday")
        bad_bucket = agent.api("/summary?bucket=5 parsecs")
        too_many = agent.api("/summary?bucket=1s&since=0")
        backwards = agent.api("/summary?bucket=5m&since=2000&until=1000")
    assert iso["count"] == epoch["count"] == 1
    assert bad_since.status_code == 422 and "since" in bad_since.json()["detail"]
    assert bad_bucket.status_code == 422 and "bucket" in bad_bucket.json()["detail"]
    assert too_many.status_code == 422 and "buckets" in too_many.json()["detail"]
    assert backwards.status_code == 422


def test_the_timeline_summary_counts_every_request(tmp_path: Path) -> None:
    """Per 5-minute bucket: requests, p50 <= p95 <= p99, and each metric's count, from real requests."""
    with running_agent(tracing={"history_path": str(tmp_path / "h.sqlite3")}, rate_limit=100) as agent:
        for n in range(6):
            agent.chat("Turn off the kitchen light and tell me the temperature", f"t_{n}")
        reports = agent.reports(6)
        timeline = agent.api("/summary?bucket=5m&operation=chat_request").json()
    overall = timeline["overall"]
    assert overall["requests"] == 6
    assert overall["total"]["count"] == 6
    assert overall["total"]["p50"] <= overall["total"]["p95"] <= overall["total"]["p99"]
    calls = sum(1 for r in reports for m in r["metrics"] if m["name"] == "openai_api_call")
    assert overall["metrics"]["openai_api_call"]["count"] == calls
    assert sum(b["requests"] for b in timeline["buckets"]) == 6
    assert all(b["start"] % 300 == 0 for b in timeline["buckets"])
    assert overall["input_tokens"] > 0


@pytest.mark.parametrize("fault", ["corrupt file", "read-only directory", "full disk"])
def test_a_broken_history_never_fails_a_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    """Every chat answers 200 and every report stays readable from memory; one warning says why."""
    caplog.set_level(logging.INFO, logger="ha_agent_tracing")
    where = tmp_path / "state"
    with (
        broken_history(fault, where) as path,
        running_agent(tracing={"history_path": str(path)}, rate_limit=1000) as agent,
    ):
        statuses = [agent.chat(f"Turn on the porch light {n}", f"f_{n}").status_code for n in range(25)]
        history_of(agent).flush()
        listing = agent.api("/reports?operation=chat_request").json()
        summary = agent.api("/summary?bucket=1m").json()
        stats = agent.api("/stats").json()["history"]
    assert statuses == [200] * 25
    assert listing["count"] == 25
    assert summary["overall"]["requests"] == 25
    assert stats["state"] == "unavailable"
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "report history" in r.getMessage()
        and "unavailable" in r.getMessage()
    ]
    assert len(warned) == 1, warned
    expected = {"corrupt file": "corrupt", "read-only directory": "read-only", "full disk": "full"}[fault]
    assert expected in warned[0]


@contextmanager
def broken_history(fault: str, where: Path) -> Iterator[Path]:
    """A history path that breaks in the way ``fault`` says."""
    if fault == "corrupt file":
        where.mkdir()
        path = where / "history.sqlite3"
        path.write_bytes(os.urandom(64 * 1024))
        yield path
    elif fault == "read-only directory":
        with tmpfs(where, 256, read_only=True):
            yield where / "history.sqlite3"
    else:
        with tmpfs(where, 96):
            # Room for the schema and a few reports, not for 25 of them.
            yield where / "history.sqlite3"


def test_serve_restarted_keeps_its_history_and_the_cli_reads_it(tmp_path: Path) -> None:
    """`serve` stopped by SIGTERM right after answering still has the first run's traces when restarted.

    The history file is then read by `ha-agent-tracing history` too.
    """
    path = tmp_path / "history.sqlite3"
    env = serve_env(HA_AGENT_TRACING_HISTORY_PATH=str(path))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with serve_command(env, tmp_path / "first.log", "--log-level", "warning") as base:
        for message in ("Which lights are on?", "Turn on the garage light"):
            assert httpx.post(f"{base}/api/v1/chat", json={"message": message}, timeout=30).status_code == 200
        before = httpx.get(f"{base}/api/v1/performance/reports", headers=headers, timeout=10).json()
        # Stopped (SIGTERM) at once: the writer's batch has not gone out; the shutdown flushes it.
    trace_ids = [r["trace_id"] for r in before["reports"]]
    assert len(trace_ids) == 2
    with serve_command(env, tmp_path / "second.log", "--log-level", "warning") as base:
        after = httpx.get(f"{base}/api/v1/performance/reports", headers=headers, timeout=10).json()
        one = httpx.get(f"{base}/api/v1/performance/reports/{trace_ids[0]}", headers=headers, timeout=10)
    assert [r["trace_id"] for r in after["reports"]] == trace_ids
    assert one.status_code == 200 and one.json()["metrics"] == before["reports"][0]["metrics"]

    command = shutil.which("ha-agent-tracing", path=str(Path(sys.executable).parent))
    assert command is not None

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, "history", *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    table = cli()
    slowest_first = cli("--slowest", "--json")
    as_json = cli("--json")
    summary = cli("--summary", "--operation", "chat_request")
    buckets = cli("--bucket", "1h", "--json")
    trace = cli("--trace", trace_ids[1])
    missing = cli("--path", str(tmp_path / "nothing.sqlite3"))
    bad = cli("--since", "last tuesday")
    assert table.returncode == 0, table.stderr
    assert all(t in table.stdout for t in trace_ids) and "chat_request" in table.stdout
    assert [r["trace_id"] for r in json.loads(as_json.stdout)["reports"]] == trace_ids
    by_total = sorted(before["reports"], key=lambda r: r["total_duration"], reverse=True)
    assert [r["trace_id"] for r in json.loads(slowest_first.stdout)["reports"]] == [
        r["trace_id"] for r in by_total
    ]
    assert "openai_api_call" in summary.stdout and "chat_request (total)" in summary.stdout
    assert json.loads(buckets.stdout)["overall"]["requests"] == 2
    assert json.loads(trace.stdout)["trace_id"] == trace_ids[1]
    assert missing.returncode == 1 and "no history" in missing.stderr
    assert bad.returncode == 2 and "not a time" in bad.stderr


def test_history_written_directly_is_merged_with_memory_once(tmp_path: Path) -> None:
    """A report both in memory and in history is listed once (memory's version, the freshest)."""
    path = tmp_path / "h.sqlite3"
    with running_agent(tracing={"history_path": str(path)}) as agent:
        agent.chat("Hello")
        (live,) = agent.reports(1)
        history = history_of(agent)
        history.flush()
        history.record(report(99, at=live["timestamp"] - 10))
        history.flush()
        listing = agent.api("/reports?since=0").json()
    assert [r["trace_id"] for r in listing["reports"]] == [f"{99:032x}", live["trace_id"]]


def test_the_pages_spans_reach_the_history(tmp_path: Path) -> None:
    """Spans the browser sends through the relay are kept in history like the server's.

    Both kinds: the page's metrics joining the server's report of the same trace
    (amended after the report was first written), and a browser-only report of a
    trace the service never saw. Read back from the file with a reader of its
    own, after the service has stopped.
    """
    from ha_agent_tracing.reports._history import HistoryReader

    from .test_relay import browser_payload, post

    path = tmp_path / "history.sqlite3"
    joined_payload = browser_payload(spans=3)
    spans = joined_payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    joined_trace, api_call = spans[0]["traceId"], spans[1]["spanId"]
    alone_payload = browser_payload(spans=2)
    alone_trace = alone_payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    with running_agent(tracing={"history_path": str(path)}) as agent:
        traceparent = f"00-{joined_trace}-{api_call}-01"
        assert agent.chat("Which lights are on?", headers={"traceparent": traceparent}).status_code == 200
        agent.reports(1)
        history_of(agent).flush()
        assert post(agent, joined_payload).status_code == 200
        assert post(agent, alone_payload).status_code == 200
    reader = HistoryReader(path)
    joined = reader.get(joined_trace)
    alone = reader.get(alone_trace)
    assert joined is not None, "the chat request's report is in the file"
    by_source = sorted((m["source"], m["name"]) for m in joined["metrics"])
    assert [n for s, n in by_source if s == "browser"] == ["send_message", "ui_update", "ui_update"]
    assert ("server", "openai_api_call") in by_source
    assert alone is not None, "the browser-only report is in the file"
    assert alone["operation"] == "send_message"
    assert [(m["name"], m["source"]) for m in alone["metrics"]] == [("ui_update", "browser")]


def test_a_late_span_after_its_report_was_written_is_written_too(tmp_path: Path) -> None:
    """The service's history folds nothing again later: the report processor records a report again when a span joins it."""
    from opentelemetry import trace

    with running_agent(tracing={"history_path": str(tmp_path / "h.sqlite3")}) as agent:
        history = history_of(agent)
        tracer = agent.runtime.tracker.tracer
        root = tracer.start_span("POST /api/v1/jobs", kind=trace.SpanKind.SERVER)
        background = tracer.start_span("background", context=trace.set_span_in_context(root))
        root.end()
        history.flush()
        trace_id = f"{root.get_span_context().trace_id:032x}"
        written = history.get(trace_id)
        assert written is not None and written["metrics"] == []
        background.end()  # late: after the report was written
        history.flush()
        rewritten = history.get(trace_id)
        assert rewritten is not None
        assert [m["name"] for m in rewritten["metrics"]] == ["background"]
