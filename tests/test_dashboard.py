"""The performance dashboard at /performance and the endpoints it needs, against a real service.

The service runs on loopback with its history on; real chat requests against
the embedded model make the reports, and real Chromium (Playwright) reads them
through the page with the token a person types once. Expected values come from
the reports and the API, never from the page's own code.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from playwright.sync_api import Browser, Page

from ha_agent_tracing.agent import load_agent_settings

from .agent_harness import TOKEN, Agent, clean_env, demo_serving, running_agent
from .browser import Console, chromium, open_page, wait_until

PAGE_BUDGET_GZIP = 100 * 1024

MESSAGES = [
    "Which lights are on?",
    "Turn off the kitchen light and tell me the temperature",
    "Turn on the garage light",
    "Hello there",
    "Switch on the coffee maker and turn on the office fan",
]


def busy_agent(tmp_path: Path, **overrides: Any) -> Any:
    """The service with history in ``tmp_path`` and the Jaeger link set."""
    options: dict[str, Any] = {
        "tracing": {"history_path": str(tmp_path / "history.sqlite3")},
        "jaeger_url": "http://localhost:16686",
        "rate_limit": 1000,
    }
    options.update(overrides)
    return running_agent(**options)


def chat_some(agent: Agent) -> list[dict[str, Any]]:
    """Real chat requests; their reports as the tracker holds them."""
    for n, message in enumerate(MESSAGES):
        assert agent.chat(message, f"dash_{n}").status_code == 200
    return agent.reports(len(MESSAGES))


def test_access_answers_anyone_and_reveals_only_whether_a_token_is_needed(tmp_path: Path) -> None:
    """GET /access needs no token (the page asks it before showing its form); every other endpoint does."""
    with busy_agent(tmp_path) as agent:
        without = agent.api("/access", token=None)
        wrong = agent.api("/access", token="not-the-token")
        refused = {
            path: agent.api(path, token=None).status_code for path in ("/config", "/reports", "/alerts")
        }
    with busy_agent(tmp_path, api_token=None, api_allow_loopback=True) as agent:
        open_access = agent.api("/access", token=None).json()
    assert without.status_code == 200 and without.json() == {"token_required": True}
    assert wrong.status_code == 200 and wrong.json() == {"token_required": True}
    assert refused == {"/config": 401, "/reports": 401, "/alerts": 401}
    assert open_access == {"token_required": False}


def test_config_names_the_jaeger_ui_and_the_history_state(tmp_path: Path) -> None:
    """/config: HA_AGENT_TRACING_JAEGER_URL as set (or null) and history's state (or off)."""
    with busy_agent(tmp_path) as agent:
        chat_some(agent)
        deadline = time.monotonic() + 10
        while (config := agent.api("/config").json())["history"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
    with busy_agent(tmp_path, jaeger_url=None, tracing={"history_path": "off"}) as agent:
        bare = agent.api("/config").json()
    assert config == {"jaeger_url": "http://localhost:16686", "history": "ok"}
    assert bare == {"jaeger_url": None, "history": "off"}


def test_a_bad_jaeger_url_warns_and_leaves_no_link(caplog: pytest.LogCaptureFixture) -> None:
    """Not an http(s) URL (a javascript: link would run in the page): one warning, no link."""
    with caplog.at_level("WARNING"):
        settings = load_agent_settings({"HA_AGENT_TRACING_JAEGER_URL": "javascript:alert(1)"})
    assert settings.jaeger_url is None
    warned = [r.getMessage() for r in caplog.records if "HA_AGENT_TRACING_JAEGER_URL" in r.getMessage()]
    assert len(warned) == 1 and "javascript:alert(1)" in warned[0]


# --- The page, in real Chromium -----------------------------------------------------------------


def unlock(page: Page, token: str = TOKEN) -> None:
    """Type the token into the page's form, as a person does."""
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Open").click()


def open_dashboard(browser: Browser, agent: Agent) -> tuple[Page, Console]:
    page, console = open_page(browser, f"{agent.url}/performance", viewport=(1300, 1000))
    unlock(page)
    wait_until(page, "document.querySelectorAll('#slowest-body button').length > 0")
    return page, console


def depth_of(metric: dict[str, Any], by_span: dict[str, dict[str, Any]]) -> int:
    """1 for a metric directly under the request, one more for each enclosing metric (from the raw report)."""
    parent = by_span.get(metric["parent_span_id"] or "")
    return 1 if parent is None else 1 + depth_of(parent, by_span)


def in_waterfall_order(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's metrics by start time, a parent before a child that starts in the same clock tick."""
    by_span = {m["span_id"]: m for m in report["metrics"]}
    return sorted(report["metrics"], key=lambda m: (m["start_offset"], depth_of(m, by_span)))


def waterfall_rows(page: Page) -> list[dict[str, Any]]:
    """The drawn rows: their data and where their bar sits in its track (fractions of the track's width)."""
    return page.eval_on_selector_all(
        "#waterfall .wf-row",
        """rows => rows.map(r => {
            const track = r.querySelector('.wf-track').getBoundingClientRect();
            const bar = r.querySelector('.wf-bar').getBoundingClientRect();
            return {name: r.dataset.name, start: Number(r.dataset.start), duration: Number(r.dataset.duration),
                    depth: Number(r.dataset.depth), source: r.dataset.source,
                    concurrent: r.dataset.concurrent === 'true', label: r.getAttribute('aria-label'),
                    left: (bar.left - track.left) / track.width, right: (bar.right - track.left) / track.width};
        })""",
    )


def test_the_page_weighs_at_most_100_kb_gzipped_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    """Everything the page loads (html, script, style: not the API's data), gzipped, within 100 KB; same origin."""
    with busy_agent(tmp_path) as agent, chromium() as browser:
        loaded: list[tuple[str, str, bytes]] = []
        page, console = open_page(browser, "about:blank")
        page.on("response", lambda r: loaded.append((r.request.resource_type, r.url, r.body())))
        page.goto(f"{agent.url}/performance")
        unlock(page)
        wait_until(page, "document.querySelector('#latency-chart')?.dataset.points !== undefined")
        errors = console.errors()
    assets = [(kind, url, body) for kind, url, body in loaded if "/api/v1/performance/" not in url]
    assert {kind for kind, _, _ in assets} == {"document", "script", "stylesheet"}, assets
    assert all(url.startswith(agent.url) for _, url, _ in loaded), [url for _, url, _ in loaded]
    weight = sum(len(gzip.compress(body, 9)) for _, _, body in assets)
    assert weight <= PAGE_BUDGET_GZIP, f"{weight} bytes gzipped"
    assert errors == []


def test_charts_draw_from_real_requests_with_no_console_error(tmp_path: Path) -> None:
    """Token once, then every chart draws the service's timeline; the console stays clean."""
    with busy_agent(tmp_path) as agent:
        reports = chat_some(agent)
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            wait_until(page, "Number(document.querySelector('#latency-chart').dataset.points) > 0")
            points = {
                chart: int(page.get_attribute(f"#{chart}", "data-points") or 0)
                for chart in ("latency-chart", "volume-chart", "tokens-chart")
            }
            canvases = page.eval_on_selector_all(".chart canvas", "cs => cs.map(c => c.width * c.height)")
            status = page.text_content("#status") or ""
            metric_options = page.eval_on_selector_all("#metric option", "os => os.map(o => o.value)")
            drawn = int(page.get_attribute("#latency-chart", "data-drawn") or 0)
            page.select_option("#metric", "openai_api_call")
            wait_until(page, f"Number(document.querySelector('#latency-chart').dataset.drawn) > {drawn}")
            usual = page.eval_on_selector_all(
                "#usual-body tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
            )
            stored = page.evaluate("Object.values(sessionStorage)")
            url = page.url
            timeline = agent.api("/summary?bucket=1m&since=1h&operation=chat_request").json()
        errors = console.errors()
    assert errors == []
    buckets = len(timeline["buckets"])
    assert buckets >= 1
    # One point per bucket that has requests: p50, p95, p99; requests and error rate; input and output tokens.
    assert points == {"latency-chart": 3 * buckets, "volume-chart": 2 * buckets, "tokens-chart": 2 * buckets}
    assert len(canvases) == 3 and all(area > 0 for area in canvases)
    assert f"{len(reports)} requests, 0 failed" in status
    names = {m["name"] for r in reports for m in r["metrics"]}
    assert set(metric_options) == {"", *names}
    overall = timeline["overall"]
    expected_p95 = {"total": overall["total"]["p95"], **{n: c["p95"] for n, c in overall["metrics"].items()}}
    # Every request of the range is also in its baseline (the range and the week before): all at 1.00x,
    # so the total comes first, then the metrics by name.
    assert [name for name, _ in usual] == ["total", *sorted(names)]
    for name, shown in usual:
        assert shown == ms_text(expected_p95[name]), name
    assert stored == [TOKEN] and TOKEN not in url


def ms_text(value: float) -> str:
    """How the page writes a duration (whole ms from 100, one decimal from 1, else two)."""
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def test_the_waterfall_of_the_slowest_request_matches_its_report(tmp_path: Path) -> None:
    """Choosing a row draws every metric of that report at its offset and duration, nested, linked to Jaeger."""
    with busy_agent(tmp_path) as agent:
        reports = chat_some(agent)
        slowest = max(reports, key=lambda r: r["total_duration"])
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            order = page.eval_on_selector_all("#slowest-body button", "bs => bs.map(b => b.dataset.trace)")
            page.click(f"#slowest-body button[data-trace='{slowest['trace_id']}']")
            wait_until(page, "document.querySelectorAll('#waterfall .wf-row').length > 1")
            rows = waterfall_rows(page)
            jaeger = page.get_attribute("#jaeger-link", "href")
            turns = page.eval_on_selector_all(
                "#turns-body tr", "rows => rows.map(r => [r.cells[1].textContent, r.cells[2].textContent])"
            )
            page.hover("#waterfall .wf-row:nth-child(2)")
            hovered = page.text_content("#waterfall-details") or ""
        errors = console.errors()
    assert errors == []
    by_time = sorted(reports, key=lambda r: r["total_duration"], reverse=True)
    assert order == [r["trace_id"] for r in by_time], "the slowest request first"
    total, *metric_rows = rows
    assert total["name"] == "chat_request (total)" and total["start"] == 0
    assert total["duration"] == pytest.approx(slowest["total_duration"])
    metrics = in_waterfall_order(slowest)
    by_span = {m["span_id"]: m for m in metrics}
    assert [r["name"] for r in metric_rows] == [m["name"] for m in metrics]
    axis = max(slowest["total_duration"], *(m["start_offset"] + m["duration"] for m in metrics))
    for row, metric in zip(metric_rows, metrics, strict=True):
        assert row["start"] == pytest.approx(metric["start_offset"]), row["name"]
        assert row["duration"] == pytest.approx(metric["duration"]), row["name"]
        assert row["depth"] == depth_of(metric, by_span), row["name"]
        assert row["left"] == pytest.approx(metric["start_offset"] / axis, abs=0.005), row["name"]
        end = (metric["start_offset"] + metric["duration"]) / axis
        assert row["right"] == pytest.approx(end, abs=0.005) or metric["duration"] / axis < 0.005, row["name"]
        assert row["label"].startswith(f"{metric['name']}: ")
    nested = [m for m in metrics if m["parent"] is not None]
    assert nested, "the report has nested metrics (context_refresh inside message_assembly)"
    assert total["right"] == pytest.approx(slowest["total_duration"] / axis, abs=0.005)
    assert jaeger == f"http://localhost:16686/trace/{slowest['trace_id']}"
    calls = [m["metadata"] for m in metrics if m["name"] == "openai_api_call"]
    assert turns == [
        [str(m["gen_ai.usage.input_tokens"]), str(m["gen_ai.usage.output_tokens"])] for m in calls
    ]
    first = metrics[0]
    assert f"metric{first['name']}" in hovered and "statusok" in hovered
    for key, value in first["metadata"].items():
        assert f"{key}{value if isinstance(value, str) else json.dumps(value)}" in hovered


def test_concurrent_tool_calls_sit_side_by_side(tmp_path: Path) -> None:
    """Tool calls of one model turn that overlap in time are drawn overlapping and marked concurrent."""
    with busy_agent(tmp_path) as agent:
        reports = chat_some(agent)
        overlapping = None
        for report in reports:
            tools = [m for m in report["metrics"] if m["name"] == "tool_execution"]
            pairs = [
                (a, b)
                for i, a in enumerate(tools)
                for b in tools[i + 1 :]
                if a["parent_span_id"] == b["parent_span_id"]
                and a["start_offset"] < b["start_offset"] + b["duration"]
                and b["start_offset"] < a["start_offset"] + a["duration"]
            ]
            if pairs:
                overlapping = report, {m["span_id"] for pair in pairs for m in pair}
                break
        assert overlapping is not None, "a message asking for two actions runs its tool calls concurrently"
        report, concurrent_spans = overlapping
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            page.click(f"#slowest-body button[data-trace='{report['trace_id']}']")
            wait_until(page, "document.querySelectorAll('#waterfall .wf-row').length > 1")
            rows = waterfall_rows(page)[1:]
        errors = console.errors()
    assert errors == []
    tool_rows = [
        (row, metric)
        for row, metric in zip(rows, in_waterfall_order(report), strict=True)
        if metric["name"] == "tool_execution"
    ]
    marked = {metric["span_id"] for row, metric in tool_rows if row["concurrent"]}
    assert marked == concurrent_spans
    drawn = [row for row, metric in tool_rows if metric["span_id"] in concurrent_spans]
    assert len(drawn) >= 2
    assert max(r["left"] for r in drawn) < min(r["right"] for r in drawn), "their bars overlap on the axis"


def test_browser_and_server_metrics_share_one_axis(tmp_path: Path) -> None:
    """A message sent from the chat page, opened by its trace id: its browser metrics and the server's on one axis."""
    with busy_agent(tmp_path) as agent, chromium() as browser:
        chat, _ = open_page(browser, f"{agent.url}/")
        chat.get_by_label("Message").fill("Turn off the kitchen light")
        chat.get_by_role("button", name="Send").click()
        wait_until(chat, "window.performanceTracker.getReports().length >= 1")
        trace_id = chat.evaluate("window.performanceTracker.getReports()[0].traceId")
        chat.evaluate("window.performanceTracker.forceFlush()")
        from_page = 1 + len(chat.evaluate("window.performanceTracker.getReports()[0].metrics"))
        deadline = time.monotonic() + 15
        while True:  # every span of the send relayed and joined (they may come in more than one batch)
            report = agent.api(f"/reports/{trace_id}").json()
            if len([m for m in report.get("metrics", []) if m["source"] == "browser"]) == from_page:
                break
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
        page, console = open_dashboard(browser, agent)
        unknown = "0123456789abcdef" * 2
        page.get_by_label("Or open a trace by its id").fill(unknown)
        page.get_by_role("button", name="Open trace").click()
        wait_until(page, f"document.querySelector('#status').textContent.includes('{unknown}')")
        refused = page.text_content("#status") or ""
        page.get_by_label("Or open a trace by its id").fill(trace_id.upper())
        page.get_by_label("Or open a trace by its id").press("Enter")
        wait_until(page, "document.querySelectorAll('#waterfall .wf-row').length > 1")
        rows = waterfall_rows(page)
        errors = [e for e in console.errors() if "404" not in e]
    assert errors == []
    assert refused == f"No report of trace {unknown} is kept, in memory or in history."
    metrics = in_waterfall_order(report)
    total, *metric_rows = rows
    assert [(r["name"], r["source"]) for r in metric_rows] == [(m["name"], m["source"]) for m in metrics]
    start = min(0.0, *(m["start_offset"] for m in metrics))
    end = max(report["total_duration"], *(m["start_offset"] + m["duration"] for m in metrics))
    [send] = [r for r in metric_rows if r["name"] == "send_message"]
    send_metric = next(m for m in metrics if m["name"] == "send_message")
    assert send_metric["start_offset"] < 0, "the click starts before the server's request"
    assert send["left"] == pytest.approx(0, abs=0.005)
    assert total["left"] == pytest.approx(-start / (end - start), abs=0.005)
    for row, metric in zip(metric_rows, metrics, strict=True):
        assert row["left"] == pytest.approx((metric["start_offset"] - start) / (end - start), abs=0.005)


def test_the_token_gate(tmp_path: Path) -> None:
    """No token: the form; a wrong one: refused; the right one: the board, kept for the session, never in a URL."""
    with busy_agent(tmp_path) as agent:
        chat_some(agent)
        requested: list[str] = []
        with chromium() as browser:
            page, console = open_page(browser, "about:blank")
            page.on("request", lambda r: requested.append(r.url))
            page.goto(f"{agent.url}/performance")
            page.wait_for_selector("#gate:not([hidden])")
            board_hidden = page.is_hidden("#board")
            unlock(page, "not-the-token")
            wait_until(page, "document.querySelector('#gate-error').textContent.includes('not accepted')")
            still_gated = page.is_visible("#gate") and page.is_hidden("#board")
            stored_wrong = page.evaluate("sessionStorage.length")
            unlock(page)
            page.wait_for_selector("#board:not([hidden])")
            wait_until(page, "document.querySelectorAll('#slowest-body button').length > 0")
            page.reload()
            page.wait_for_selector("#board:not([hidden])")  # the session keeps the token
            wait_until(page, "document.querySelectorAll('#slowest-body button').length > 0")
            reloaded_gate_hidden = page.is_hidden("#gate")
            other, _ = open_page(browser, f"{agent.url}/performance")  # another browser session
            other.wait_for_selector("#gate:not([hidden])")
            page.click("#forget-token")
            page.wait_for_selector("#gate:not([hidden])")
            stored = page.evaluate("sessionStorage.length")
        errors = [e for e in console.errors() if "401" not in e]
    assert board_hidden and still_gated and stored_wrong == 0
    assert reloaded_gate_hidden
    assert stored == 0
    assert requested and not [url for url in requested if TOKEN in url or "not-the-token" in url]
    assert errors == []


def test_loopback_opt_out_asks_for_no_token(tmp_path: Path) -> None:
    """With HA_AGENT_TRACING_API_ALLOW_LOOPBACK=true and no token set, the board opens at once."""
    with busy_agent(tmp_path, api_token=None, api_allow_loopback=True) as agent:
        chat_some(agent)
        with chromium() as browser:
            page, console = open_page(browser, f"{agent.url}/performance")
            page.wait_for_selector("#board:not([hidden])")
            wait_until(page, "Number(document.querySelector('#latency-chart')?.dataset.points) > 0")
            gate_hidden = page.is_hidden("#gate")
        errors = console.errors()
    assert gate_hidden and errors == []


def test_keyboard_alone_opens_a_request_and_walks_its_waterfall(tmp_path: Path) -> None:
    """Tab to a slow request, Enter, arrow down the metrics: each focused row shows its metadata."""
    with busy_agent(tmp_path) as agent:
        reports = chat_some(agent)
        with chromium() as browser:
            page, console = open_page(browser, f"{agent.url}/performance", viewport=(1300, 1000))
            page.get_by_label("Token", exact=True).focus()
            page.keyboard.type(TOKEN)
            page.keyboard.press("Enter")
            wait_until(page, "document.querySelectorAll('#slowest-body button').length > 0")
            for _ in range(60):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement?.closest('#slowest-body') !== null"):
                    break
            trace = page.evaluate("document.activeElement?.dataset.trace")
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            page.keyboard.press("Enter")
            wait_until(page, "document.activeElement?.classList.contains('wf-row')")
            names = [page.evaluate("document.activeElement.dataset.name")]
            details = [page.text_content("#waterfall-details") or ""]
            for _ in range(len(reports[0]["metrics"]) + 5):
                page.keyboard.press("ArrowDown")
                names.append(page.evaluate("document.activeElement.dataset.name"))
                details.append(page.text_content("#waterfall-details") or "")
        errors = console.errors()
    report = next(r for r in reports if r["trace_id"] == trace)
    expected = [f"{report['operation']} (total)", *(m["name"] for m in in_waterfall_order(report))]
    assert names[: len(expected)] == expected
    assert set(names[len(expected) :]) <= {expected[-1]}, "ArrowDown stops at the last row"
    turn = expected.index("openai_api_call")
    assert "gen_ai.usage.input_tokens" in details[turn] and "duration" in details[turn]
    assert outline != "none", "the focused row is visibly outlined"
    assert errors == []


def test_the_page_is_not_served_when_the_reports_api_is_off_and_is_never_traced(tmp_path: Path) -> None:
    """Like the API it reads: off unless HA_AGENT_TRACING_REPORTS_API=on; loading it makes no spans."""
    with running_agent(reports_api="off") as agent, suppress_http_instrumentation():
        off = httpx.get(f"{agent.url}/performance", timeout=10).status_code
    with busy_agent(tmp_path) as agent, suppress_http_instrumentation():
        page = httpx.get(f"{agent.url}/performance", timeout=10)
        assets = [
            httpx.get(f"{agent.url}/static/dashboard/{name}", timeout=10) for name in ("main.js", "main.css")
        ]
        time.sleep(0.3)
        spans = agent.spans()
    assert off == 404
    assert page.status_code == 200 and "<title>Performance" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert [a.status_code for a in assets] == [200, 200]
    assert spans == [], "loading the dashboard makes no spans"


def demo_dashboard(env: dict[str, str], out_path: Path, browser: Browser) -> tuple[str, str, list[str]]:
    """`demo --keep-serving`; the dashboard it prints, opened with its token: the URL, status and operations."""
    with demo_serving(env, out_path, latency_ms=1) as output:
        found = re.search(r"dashboard (http://127\.0\.0\.1:\d+/performance) +\(token: (\S+)\)", output)
        assert found, output
        page, console = open_page(browser, found.group(1))
        unlock(page, found.group(2))
        wait_until(page, "document.querySelectorAll('#slowest-body button').length > 0")
        status = page.text_content("#status") or ""
        operations = page.eval_on_selector_all("#operation option", "os => os.map(o => o.textContent)")
        assert console.errors() == []
        page.context.close()
        return found.group(1), status, operations


def test_demo_keep_serving_leaves_a_dashboard_and_a_restart_keeps_its_history(tmp_path: Path) -> None:
    """The demo prints the dashboard's URL and token; a second run's dashboard still shows the first's requests."""
    env = clean_env(HA_AGENT_TRACING_HISTORY_PATH=str(tmp_path / "history.sqlite3"))
    with chromium() as browser:
        first = demo_dashboard(env, tmp_path / "first.out", browser)
        second = demo_dashboard(env, tmp_path / "second.out", browser)
    # 16 answered and 1 refused by the rate limit, per run.
    assert first[1].startswith("17 requests, "), first
    assert "chat_request (17)" in first[2]
    assert second[1].startswith("34 requests, "), second
    assert "chat_request (34)" in second[2]


def test_the_alerts_panel_shows_the_alerts_the_service_raised(tmp_path: Path) -> None:
    """Real slow model calls fire a rule of the service's own engine; the panel lists it as GET /alerts does."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "model_slow"\nexpr = "p95(openai_api_call) > 1 ms"\nmin_count = 3\n'
        'summary = "The model answers slowly"\n'
        '[[rules]]\nname = "never"\nexpr = "p95(rate_limit_check) > 60 s"\n'
    )
    tracing = {
        "history_path": str(tmp_path / "history.sqlite3"),
        "alert_rules": str(rules),
        "alert_interval_s": 3600,
    }
    with busy_agent(tmp_path, model_latency_ms=10, tracing=tracing) as agent:
        with chromium() as browser:
            page, console = open_page(browser, f"{agent.url}/performance", viewport=(1300, 1000))
            unlock(page)
            page.wait_for_selector("#board:not([hidden])")
            wait_until(page, "document.querySelector('#status').textContent.includes('requests')")
            before = (page.is_visible("#alerts-none"), page.is_hidden("#alerts"))
            chat_some(agent)
            engine = agent.runtime.alerts
            assert engine is not None
            fired = engine.evaluate()
            listed = agent.api("/alerts").json()["alerts"]
            page.get_by_role("button", name="Refresh").click()
            wait_until(page, "document.querySelectorAll('#alerts-body tr').length > 0")
            rows = page.eval_on_selector_all(
                "#alerts-body tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
            )
            none_hidden = page.is_hidden("#alerts-none")
        errors = console.errors()
    assert before == (True, True), "no alert yet: the panel says so"
    assert [a.rule for a in fired] == ["model_slow"]
    assert [a["rule"] for a in listed] == ["model_slow"] and listed[0]["state"] == "firing"
    [(state, rule, summary, value, threshold, _since)] = rows
    assert (state, rule, summary) == ("Firing", "model_slow", listed[0]["summary"])
    assert listed[0]["unit"] == "ms"
    assert value.endswith(" ms") and threshold.endswith(" ms"), (value, threshold)
    assert float(value.removesuffix(" ms")) == pytest.approx(listed[0]["value"], abs=0.005)
    assert float(threshold.removesuffix(" ms")) == pytest.approx(listed[0]["threshold"])
    assert none_hidden and errors == []


def test_the_insights_panel_shows_where_the_time_goes(tmp_path: Path) -> None:
    """The bottleneck and the shares of the critical path, as GET /insights answers for the operation."""
    with busy_agent(tmp_path) as agent:
        chat_some(agent)
        insights = agent.api("/insights?operation=chat_request&top=3").json()["operations"]["chat_request"]
        with chromium() as browser:
            page, console = open_dashboard(browser, agent)
            summary = page.text_content("#insights-summary") or ""
            shares = page.eval_on_selector_all(
                "#shares-body tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
            )
            notes = page.eval_on_selector_all("#insights-notes li", "items => items.map(i => i.textContent)")
            turn_trace = page.get_attribute("#insights-notes li button[data-trace]", "data-trace")
            page.click("#insights-notes li button[data-trace]")
            wait_until(page, "document.querySelectorAll('#waterfall .wf-row').length > 1")
            opened = page.text_content("#waterfall-details") or ""
        errors = console.errors()
    assert errors == []
    bottleneck = insights["bottleneck"]
    assert f"Of the {insights['requests']} chat_request requests in this range" in summary
    assert f"the bottleneck is {bottleneck['name']}: {round(bottleneck['share_p50'] * 100)} %" in summary
    expected = [
        [
            s["name"],
            f"{round(s['share_p50'] * 100)} % ({ms_text(s['ms_p50'])})",
            f"{round(s['share_p95'] * 100)} %",
        ]
        for s in insights["shares"][:6]
    ]
    assert [[name, typical, slow.split(" (")[0]] for name, typical, slow in shares] == expected
    top_turn = insights["top_token_turns"][0]
    assert any(f"Largest model turn: {top_turn['tokens']} tokens" in n for n in notes), notes
    assert turn_trace == top_turn["trace_id"] or turn_trace in {
        r["trace_id"] for r in insights["repeated_tool_calls"]
    }
    assert turn_trace is not None and turn_trace in opened, "the trace named in a finding opens its waterfall"
