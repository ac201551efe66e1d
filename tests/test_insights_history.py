"""Where the time goes, over a time range of the report history: the API and the dashboard's panel.

The service runs on loopback (uvicorn) with a real SQLite history. Reports
written to that history here have shares worked out by hand; real chat
requests show that a restart loses nothing the panel needs. History off and an
unreadable history fall back to memory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from ha_agent_tracing import get_tracker
from ha_agent_tracing._internal import RateLimitedWarning
from ha_agent_tracing.analysis import _timeline
from ha_agent_tracing.reports import History

from .agent_harness import running_agent
from .browser import chromium, open_page, wait_until
from .test_dashboard import chat_some, open_dashboard, unlock

HOUR = 3600.0


def made_report(n: int, at: float, model_ms: float, tool_ms: float, total: float) -> dict[str, Any]:
    """A request of two metrics one after another (model, then tool), the rest of ``total`` untracked."""
    root = f"{n:016x}"

    def metric(name: str, start: float, duration: float, span: str) -> dict[str, Any]:
        return {
            "name": name,
            "duration": duration,
            "start_offset": start,
            "span_id": span,
            "parent_span_id": root,
            "parent": None,
            "metadata": {},
            "status": "ok",
        }

    return {
        "operation": "chat_request",
        "total_duration": total,
        "timestamp": at,
        "trace_id": f"{n:032x}",
        "span_id": root,
        "status": "ok",
        "metrics": [
            metric("openai_api_call", 0.0, model_ms, f"a{n:015x}"),
            metric("tool_execution", model_ms, tool_ms, f"b{n:015x}"),
        ],
    }


def write_history(path: Path, reports: list[dict[str, Any]]) -> None:
    """The reports in the history file, as an earlier run of the service left them."""
    history = History(path)
    for report in reports:
        history.record(report)
    assert history.flush()
    history.close()


def two_periods(path: Path, now: float) -> None:
    """10 requests 10 minutes ago: model 80 ms, tool 15 ms, 100 ms in all.

    10 requests 3 hours ago: model 20 ms, tool 170 ms, 200 ms in all.
    """
    recent = [made_report(n, now - 600 + n, 80.0, 15.0, 100.0) for n in range(10)]
    old = [made_report(100 + n, now - 3 * HOUR + n, 20.0, 170.0, 200.0) for n in range(10)]
    write_history(path, recent + old)


def shares(operation: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {s["name"]: (round(s["share_p50"], 4), round(s["share_p95"], 4)) for s in operation["shares"]}


def test_insights_follow_since_and_until_over_history(tmp_path: Path) -> None:
    """Only the reports in [since, until) count; the shares are those worked out by hand below."""
    path = tmp_path / "history.sqlite3"
    now = time.time()
    two_periods(path, now)
    with running_agent(tracing={"history_path": str(path)}) as agent:
        last_hour = agent.api(f"/insights?since={now - HOUR}&until={now}").json()
        six_hours = agent.api(f"/insights?since={now - 6 * HOUR}&until={now}").json()
        before = agent.api(f"/insights?since={now - 6 * HOUR}&until={now - HOUR}").json()
        later = agent.api(f"/insights?since={now + 60}").json()
        bad = agent.api("/insights?since=last tuesday")
        too_small = agent.api("/insights?sample=0")

    # The last hour: the 10 recent requests, all alike: 80 + 15 of 100 ms, 5 ms untracked.
    assert (last_hour["source"], last_hour["count"], last_hour["in_range"]) == ("history", 10, 10)
    assert last_hour["samples"] == {"chat_request": {"analysed": 10, "in_range": 10}}
    assert (last_hour["since"], last_hour["until"]) == (pytest.approx(now - HOUR), pytest.approx(now))
    recent = last_hour["operations"]["chat_request"]
    assert (recent["requests"], recent["p50_ms"], recent["p95_ms"]) == (10, 100.0, 100.0)
    assert recent["bottleneck"]["name"] == "openai_api_call"
    assert shares(recent) == {
        "openai_api_call": (0.8, 0.8),
        "tool_execution": (0.15, 0.15),
        "(untracked)": (0.05, 0.05),
    }
    # Six hours: 10 of 100 ms and 10 of 200 ms. p40 = 100 and p60 = 200 (inclusive percentiles of
    # 20 values), so every request is typical: model (10*80 + 10*20) / 3000, tool (10*15 + 10*170) / 3000,
    # untracked (10*5 + 10*10) / 3000. The slow tail (>= p90 = 200) is the old ten: 20, 170, 10 of 200.
    whole = six_hours["operations"]["chat_request"]
    assert (six_hours["count"], whole["requests"], whole["p50_ms"], whole["p95_ms"]) == (20, 20, 150.0, 200.0)
    assert whole["bottleneck"]["name"] == "tool_execution"
    assert shares(whole) == {
        "tool_execution": (round(1850 / 3000, 4), 0.85),
        "openai_api_call": (round(1000 / 3000, 4), 0.1),
        "(untracked)": (0.05, 0.05),
    }
    # From six hours to one hour ago: the old ten alone.
    assert before["count"] == 10
    assert shares(before["operations"]["chat_request"]) == {
        "tool_execution": (0.85, 0.85),
        "openai_api_call": (0.1, 0.1),
        "(untracked)": (0.05, 0.05),
    }
    assert later["count"] == 0 and later["operations"] == {} and later["samples"] == {}
    assert bad.status_code == 422 and "since" in bad.text
    assert too_small.status_code == 422


def test_a_large_range_is_sampled_evenly_in_time(tmp_path: Path) -> None:
    """30 reports, sample=10: every third by start time from the oldest, and the answer says 10 of 30."""
    path = tmp_path / "history.sqlite3"
    now = time.time()
    # Written newest first: the sample follows start times, not the order of writing.
    write_history(path, [made_report(n, now - 100 + n, 10.0, 5.0, 20.0 + n) for n in reversed(range(30))])
    with running_agent(tracing={"history_path": str(path)}) as agent:
        sampled = agent.api(f"/insights?since={now - HOUR}&sample=10&top=0").json()
        everything = agent.api(f"/insights?since={now - HOUR}&top=0").json()
    assert (sampled["sample_limit"], sampled["count"], sampled["in_range"]) == (10, 10, 30)
    assert sampled["samples"] == {"chat_request": {"analysed": 10, "in_range": 30}}
    paths = sampled["operations"]["chat_request"]["critical_paths"]
    assert sorted(int(p["trace_id"], 16) for p in paths) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert everything["sample_limit"] == 2000
    assert everything["samples"] == {"chat_request": {"analysed": 30, "in_range": 30}}


def test_memory_and_history_count_each_request_once(tmp_path: Path) -> None:
    """Real requests (in memory, then also written) join the history's without being counted twice."""
    path = tmp_path / "history.sqlite3"
    now = time.time()
    two_periods(path, now)
    with running_agent(tracing={"history_path": str(path)}, rate_limit=1000) as agent:
        live = chat_some(agent)
        fresh = agent.api(f"/insights?since={now - HOUR}&operation=chat_request").json()
        assert agent.runtime.history is not None and agent.runtime.history.flush()
        written = agent.api(f"/insights?since={now - HOUR}&operation=chat_request").json()
    for answer in (fresh, written):
        assert answer["source"] == "history"
        assert answer["samples"] == {"chat_request": {"analysed": 10 + len(live), "in_range": 10 + len(live)}}


def test_history_off_answers_from_memory(tmp_path: Path) -> None:
    """No history: the requests in memory in the range, and the panel says where they come from."""
    started = time.time()
    with running_agent(tracing={"history_path": "off"}, rate_limit=1000) as agent:
        live = chat_some(agent)
        answer = agent.api(f"/insights?since={started - 1}").json()
        none = agent.api(f"/insights?until={started - 1}").json()
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            sample = wait_until(page, "document.querySelector('#insights-sample').textContent")
            summary = page.text_content("#insights-summary") or ""
        errors = console.errors()
    assert answer["source"] == "memory"
    assert answer["samples"] == {"chat_request": {"analysed": len(live), "in_range": len(live)}}
    slowest = sorted(live, key=lambda r: r["total_duration"], reverse=True)[:5]
    paths = answer["operations"]["chat_request"]["critical_paths"]
    assert [p["trace_id"] for p in paths] == [r["trace_id"] for r in slowest]
    assert none["count"] == 0 and none["source"] == "memory"
    assert sample == f"Sample: all {len(live)} requests of the range, from memory (history is off)."
    assert summary.startswith(f"Of the {len(live)} chat_request requests in this range")
    assert errors == []


def test_an_unreadable_history_falls_back_to_memory_with_one_warning_and_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt history file: 200 from memory every time, one warning, each failed read counted."""
    monkeypatch.setattr(_timeline, "_unreadable", RateLimitedWarning(interval_s=300.0))
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"not a database, " * 4096)
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    started = time.time()
    with running_agent(tracing={"history_path": str(path)}, rate_limit=1000) as agent:
        live = chat_some(agent)
        failed_before = agent.api("/stats").json()["history"]["read_failures"]
        answers = [agent.api(f"/insights?since={started - 1}") for _ in range(3)]
        failed_after = agent.api("/stats").json()["history"]["read_failures"]
    assert [a.status_code for a in answers] == [200, 200, 200]
    for answer in (a.json() for a in answers):
        assert answer["source"] == "memory"
        assert answer["samples"] == {"chat_request": {"analysed": len(live), "in_range": len(live)}}
    assert failed_after - failed_before == 3
    warned = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warned) == 1 and "answering from memory only" in warned[0], warned


# --- The panel, in real Chromium ----------------------------------------------------------------


def panel(page: Page) -> tuple[str, str, list[list[str]]]:
    """The panel's summary, its sample line and its table of shares."""
    return (
        page.text_content("#insights-summary") or "",
        page.text_content("#insights-sample") or "",
        page.eval_on_selector_all(
            "#shares-body tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        ),
    )


def test_the_panel_shows_the_history_after_a_restart(tmp_path: Path) -> None:
    """Stopped and started again on the same history file, the service's panel shows the first run's requests.

    What it shows equals what the first run answered from memory before the restart.
    """
    path = tmp_path / "history.sqlite3"
    started = time.time()
    with running_agent(tracing={"history_path": str(path)}, rate_limit=1000) as agent:
        live = chat_some(agent)
        query = f"/insights?since={started - 1}&until={time.time() + 1}&operation=chat_request&top=3"
        before = agent.api(query).json()
    with running_agent(tracing={"history_path": str(path)}) as agent:
        in_memory = get_tracker().get_reports_for_operation("chat_request")
        after = agent.api(query).json()
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            wait_until(page, "document.querySelector('#insights-sample').textContent")
            summary, sample, rows = panel(page)
        errors = console.errors()
    assert in_memory == [], "a restart empties memory: what follows comes from history"
    assert after["source"] == "history"
    assert after["operations"] == before["operations"]
    insights = after["operations"]["chat_request"]
    bottleneck = insights["bottleneck"]
    assert summary.startswith(f"Of the {len(live)} chat_request requests in this range")
    assert f"the bottleneck is {bottleneck['name']}: {round(bottleneck['share_p50'] * 100)} %" in summary
    assert sample == f"Sample: all {len(live)} requests of the range, from history."
    assert [row[0] for row in rows] == [s["name"] for s in insights["shares"][:6]]
    assert errors == []


def test_the_range_picker_changes_what_the_panel_shows(tmp_path: Path) -> None:
    """Last hour: the recent ten (model 80 %); last 6 hours: all twenty (tool 62 %, 85 % of the slow)."""
    path = tmp_path / "history.sqlite3"
    two_periods(path, time.time())
    with running_agent(tracing={"history_path": str(path)}) as agent, chromium() as browser:
        page, console = open_page(browser, f"{agent.url}/performance", viewport=(1300, 1000))
        unlock(page)
        wait_until(page, "document.querySelector('#insights-sample').textContent")
        hour = panel(page)
        page.select_option("#range", "6h")
        wait_until(page, "document.querySelector('#insights-sample').textContent.includes('all 20')")
        six = panel(page)
        errors = console.errors()
    assert hour == (
        "Of the 10 chat_request requests in this range (p50 100 ms, p95 100 ms), the bottleneck is "
        "openai_api_call: 80 % of a typical request's critical path, 80 % of a slow one's.",
        "Sample: all 10 requests of the range, from history.",
        [
            ["openai_api_call", "80 % (80.0 ms)", "80 % (80.0 ms)"],
            ["tool_execution", "15 % (15.0 ms)", "15 % (15.0 ms)"],
            ["(untracked)", "5 % (5.0 ms)", "5 % (5.0 ms)"],
        ],
    )
    # Every request typical: mean per request model 50, tool 92.5, untracked 7.5 ms; the slow: the old ten.
    assert six == (
        "Of the 20 chat_request requests in this range (p50 150 ms, p95 200 ms), the bottleneck is "
        "tool_execution: 62 % of a typical request's critical path, 85 % of a slow one's.",
        "Sample: all 20 requests of the range, from history.",
        [
            ["tool_execution", "62 % (92.5 ms)", "85 % (170 ms)"],
            ["openai_api_call", "33 % (50.0 ms)", "10 % (20.0 ms)"],
            ["(untracked)", "5 % (7.5 ms)", "5 % (10.0 ms)"],
        ],
    )
    assert errors == []


def test_the_panel_says_when_it_rests_on_a_sample(tmp_path: Path) -> None:
    """2010 requests in the range, more than the 2000 analysed per operation: the panel says 2000 of 2010."""
    path = tmp_path / "history.sqlite3"
    now = time.time()
    write_history(path, [made_report(n, now - 600 + n * 0.1, 80.0, 15.0, 100.0) for n in range(2010)])
    with running_agent(tracing={"history_path": str(path)}) as agent, chromium() as browser:
        page, console = open_page(browser, f"{agent.url}/performance", viewport=(1300, 1000))
        unlock(page)
        wait_until(page, "document.querySelector('#insights-sample').textContent")
        summary, sample, _ = panel(page)
        errors = console.errors()
    assert summary.startswith("Of 2000 sampled chat_request requests in this range (p50 100 ms, p95 100 ms)")
    assert sample == (
        "Sample: 2000 of the range's 2010 requests, evenly spaced in time (at most 2000 per operation), "
        "from history."
    )
    assert errors == []
