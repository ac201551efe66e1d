"""The chat page in real Chromium against a real ``ha-agent-tracing serve``.

The page's own tracker (``window.performanceTracker``) is read back from the
browser; the service runs as a subprocess, as a user would start it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ha_agent_tracing.agent._background import BackgroundServer, free_port

from .agent_harness import clean_env, demo_serving, serve_command
from .browser import chromium, open_page, wait_until
from .receivers import ReceivedSpan, Rotel

TOKEN = "page-test-token-0123456789"
UI_OPERATIONS = ["add_user_message", "show_loading", "render_response"]


def serve_env(**extra: str) -> dict[str, str]:
    """A clean environment for `serve` on a free port, the reports API on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "HA_"))}
    env.update(
        {
            "HA_AGENT_PORT": str(free_port()),
            "HA_AGENT_MODEL_LATENCY_MS": "5",
            "HA_AGENT_HOME_LATENCY_MS": "5",
            "HA_AGENT_TRACING_REPORTS_API": "on",
            "HA_AGENT_TRACING_API_TOKEN": TOKEN,
            **extra,
        }
    )
    return env


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("page") / "serve.log"
    with serve_command(serve_env(), log, "--log-level", "warning") as base:
        yield base


@contextmanager
def exporting_service(tmp_path: Path) -> Iterator[tuple[str, Rotel]]:
    """`serve` exporting its spans (and the relayed browser spans) to rotel; its URL and the receiver."""
    with Rotel(tmp_path) as rotel:
        env = serve_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rotel.http_endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
        with serve_command(env, tmp_path / "serve.log", "--log-level", "warning") as base:
            yield base, rotel


def received(rotel: Rotel, trace_id: str, names: set[str], timeout_s: float = 20) -> list[ReceivedSpan]:
    """The spans of a trace that rotel received, once spans of each name in ``names`` are among them."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = [s for s in rotel.spans() if s.trace_id == trace_id]
        if names <= {s.name for s in spans}:
            return spans
        assert time.monotonic() < deadline, f"missing {sorted(names - {s.name for s in spans})}"
        time.sleep(0.1)


def reports(page: Page, count: int) -> list[dict[str, Any]]:
    """The page's reports, once there are ``count``."""
    wait_until(page, f"window.performanceTracker.getReports().length >= {count}")
    return page.evaluate("window.performanceTracker.getReports()")


def send(page: Page, text: str, *, enter: bool = False) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        page.get_by_role("button", name="Send").click()


def test_send_records_every_metric_of_the_document(browser: Browser, service: str) -> None:
    """One send: the page's report has each metric with its metadata, and the console a [Performance] line."""
    page, console = open_page(browser, f"{service}/")
    send(page, "Turn off the kitchen light and tell me the temperature", enter=True)
    [report] = reports(page, 1)
    expect(page.get_by_role("log", name="Conversation")).to_contain_text("Kitchen Light is now off")

    assert report["operation"] == "send_message"
    assert re.fullmatch(r"[0-9a-f]{32}", report["traceId"])
    names = [m["name"] for m in report["metrics"]]
    assert names == [
        "ui_update",
        "ui_update",
        "api_call",
        "response_processing",
        "ui_update",
        "conversation_reload",
    ]
    ui = [m["metadata"] for m in report["metrics"] if m["name"] == "ui_update"]
    assert [m["operation"] for m in ui] == UI_OPERATIONS
    assert ui[0]["message_length"] == len("Turn off the kitchen light and tell me the temperature")
    api = next(m for m in report["metrics"] if m["name"] == "api_call")["metadata"]
    assert api["operation"] == "sendChatMessage"
    assert api["success"] is True
    assert re.fullmatch(r"conv_[0-9a-f]{16}", api["conversation_id"])
    assert api["tool_calls_count"] == 2 and api["iterations"] == 2
    assert api["tokens_used"] > 0 and api["response_time_ms"] > 0
    reload = report["metrics"][-1]["metadata"]
    assert reload["message_count"] == 2 and reload["conversation_id"] == api["conversation_id"]
    for metric in report["metrics"]:
        assert 0 <= metric["duration"] <= report["totalDuration"], metric
    assert report["totalDuration"] >= sum(m["duration"] for m in report["metrics"]) - 1.0
    assert abs(report["timestamp"] / 1000 - page.evaluate("Date.now()") / 1000) < 60

    [line] = console.lines("[Performance]")
    assert line.startswith(
        f"[Performance] send_message {report['totalDuration']:.2f} ms (trace {report['traceId'][:8]}"
    )
    assert not console.errors(), console.errors()


def test_document_queries_work_from_the_console(browser: Browser, service: str) -> None:
    """window.performanceTracker answers the document's queries; a follow-up send does not reload."""
    page, _ = open_page(browser, f"{service}/")
    send(page, "Which lights are on?")
    reports(page, 1)
    send(page, "Thanks!")
    second = reports(page, 2)[1]
    assert "conversation_reload" not in [m["name"] for m in second["metrics"]]
    assert page.evaluate("window.performanceTracker.getReportsForOperation('send_message').length") == 2
    average = page.evaluate("window.performanceTracker.getAverageDuration('send_message')")
    totals = [r["totalDuration"] for r in page.evaluate("window.performanceTracker.getReports()")]
    assert average == pytest.approx(sum(totals) / 2)
    exported = page.evaluate("JSON.parse(window.performanceTracker.exportReports())")
    assert [r["traceId"] for r in exported] == [
        r["traceId"] for r in page.evaluate("window.performanceTracker.getReports()")
    ]


def test_page_is_usable_by_keyboard_and_screen_reader(browser: Browser, service: str) -> None:
    """Labelled input, named button, Enter sends, a live region, a sensible focus order."""
    page, _ = open_page(browser, f"{service}/")
    box = page.get_by_label("Message")
    expect(box).to_be_focused()  # ready to type on load
    log = page.get_by_role("log", name="Conversation")
    assert log.get_attribute("aria-live") == "polite"
    expect(page.get_by_role("status")).to_be_hidden()

    page.mouse.click(5, 5)  # the page's top-left corner: Tab starts from the top
    order = []
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["new-conversation", "message", "send"]

    page.keyboard.press("Shift+Tab")  # back to the input
    page.keyboard.type("When the sun sets turn on the porch light")
    page.keyboard.press("Enter")
    expect(log).to_contain_text("preview_automation")
    expect(page.get_by_role("region", name="Confirmation needed")).to_be_visible()
    reports(page, 1)  # the send is over: its buttons are enabled again
    expect(page.get_by_role("button", name="Confirm")).to_be_enabled()
    expect(box).to_be_focused()  # focus stays where the user types
    page.mouse.click(5, 5)
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["new-conversation", "confirm", "cancel", "message", "send"]


def test_confirm_sends_the_confirmation_and_new_conversation_starts_over(
    browser: Browser, service: str
) -> None:
    """The preview's Confirm creates the automation; New conversation clears the list and reloads again."""
    page, _ = open_page(browser, f"{service}/")
    send(page, "When the sun sets turn on the porch light")
    reports(page, 1)
    region = page.get_by_role("region", name="Confirmation needed")
    expect(region).to_contain_text("The agent is ready to create the automation")
    page.get_by_role("button", name="Confirm").click()
    reports(page, 2)
    expect(region).to_be_hidden()
    log = page.get_by_role("log", name="Conversation")
    expect(log.get_by_role("listitem")).to_have_count(4)
    expect(log.get_by_role("listitem").nth(2)).to_have_text("You: confirm")
    expect(log.get_by_role("listitem").nth(3)).to_contain_text(
        "automation."
    )  # the entity Home Assistant made

    page.get_by_role("button", name="New conversation").click()
    expect(log.get_by_role("listitem")).to_have_count(0)
    send(page, "Hello there")
    third = reports(page, 3)[2]
    assert third["metrics"][-1]["name"] == "conversation_reload"
    first_id = reports(page, 1)[0]["metrics"][2]["metadata"]["conversation_id"]
    assert third["metrics"][2]["metadata"]["conversation_id"] != first_id


def test_a_risky_service_waits_for_confirm_and_cancel_drops_it(browser: Browser, service: str) -> None:
    """Opening the garage door waits in the confirmation panel; Cancel sends "cancel" and nothing is left pending."""
    page, _ = open_page(browser, f"{service}/")
    send(page, "Open the garage door")
    first = reports(page, 1)[0]
    region = page.get_by_role("region", name="Confirmation needed")
    expect(region).to_contain_text("The agent is ready to call cover.open_cover on cover.garage_door")
    assert (
        next(m for m in first["metrics"] if m["name"] == "response_processing")["metadata"]["has_preview"]
        is True
    )
    page.get_by_role("button", name="Cancel").click()
    second = reports(page, 2)[1]
    expect(region).to_be_hidden()
    expect(page.get_by_role("log", name="Conversation").get_by_role("listitem").nth(2)).to_have_text(
        "You: cancel"
    )
    assert (
        next(m for m in second["metrics"] if m["name"] == "response_processing")["metadata"]["has_preview"]
        is False
    )
    conversation = second["metrics"][2]["metadata"]["conversation_id"]
    answer = httpx.post(
        f"{service}/api/v1/chat", json={"message": "yes", "conversation_id": conversation}, timeout=30
    )
    assert answer.json()["awaiting_confirmation"] is None
    assert not [c for c in answer.json()["tool_calls"] if c["id"] == "confirmed_preview"], (
        "nothing left to confirm"
    )


def test_backend_down_shows_the_error_records_handle_error_and_retry_recovers(
    browser: Browser, tmp_path: Path
) -> None:
    """With the service gone: a visible error, a handle_error metric, api_call failed; Retry works once it is back."""
    env = serve_env()
    with serve_command(env, tmp_path / "first.log", "--log-level", "warning") as base:
        page, console = open_page(browser, f"{base}/")
    send(page, "Which lights are on?")
    [report] = reports(page, 1)
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("cannot be reached")
    expect(page.get_by_role("status")).to_be_hidden()
    names = [(m["name"], m["metadata"].get("operation")) for m in report["metrics"]]
    assert names == [
        ("ui_update", "add_user_message"),
        ("ui_update", "show_loading"),
        ("api_call", "sendChatMessage"),
        ("ui_update", "handle_error"),
    ]
    api = report["metrics"][2]
    assert api["metadata"]["success"] is False and api["status"] == "error"
    assert api["metadata"]["status_code"] == 0
    assert console.lines("[Performance] send_message")

    with serve_command(env, tmp_path / "second.log", "--log-level", "warning"):
        page.get_by_role("button", name="Retry").click()
        retried = reports(page, 2)[1]
    assert [m["name"] for m in retried["metrics"]][-1] == "conversation_reload"
    expect(alert).to_be_hidden()
    expect(page.get_by_role("log", name="Conversation").get_by_role("listitem")).to_have_count(2)


def test_page_and_assets_are_served_with_their_types_and_without_reports(service: str) -> None:
    """`/` is the page, its assets are under static/ with the right types; loading them makes no report."""
    page = httpx.get(f"{service}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/chat/main.js"' in page.text
    script = httpx.get(f"{service}/static/chat/main.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (
        httpx.get(f"{service}/static/chat/main.css", timeout=10)
        .headers["content-type"]
        .startswith("text/css")
    )
    assert httpx.get(f"{service}/static/../pyproject.toml", timeout=10).status_code == 404
    assert httpx.get(f"{service}/api/v1/conversations/nope", timeout=10).status_code == 404
    assert httpx.get(f"{service}/api/v1/conversations/bad%20id", timeout=10).status_code == 422
    found = httpx.get(
        f"{service}/api/v1/performance/reports",
        params={"operation": "GET /"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    assert found["count"] == 0


def test_demo_keep_serving_prints_the_page_url(tmp_path: Path) -> None:
    """`demo --keep-serving` says where the chat page is, and the page is there while it serves."""
    with demo_serving(clean_env(), tmp_path / "demo.out", latency_ms=0) as output:
        found = re.search(r"chat page (http://127\.0\.0\.1:\d+/) ", output)
        assert found, output
        page = httpx.get(found.group(1), timeout=10)
        assert page.status_code == 200 and 'id="composer"' in page.text


def test_one_trace_from_the_click_to_the_tool_call_at_the_collector(browser: Browser, tmp_path: Path) -> None:
    """Browser spans (via the relay) and server spans reach rotel as one trace with the right parents."""
    with exporting_service(tmp_path) as (base, rotel):
        page, console = open_page(browser, f"{base}/")
        send(page, "Turn off the kitchen light and tell me the temperature")
        [report] = reports(page, 1)
        expected = {"send_message", "conversation_reload", "POST /api/v1/chat", "tool_execution"}
        spans = received(rotel, report["traceId"], expected)
    by_id = {s.span_id: s for s in spans}
    browser_spans = [s for s in spans if s.resource.get("service.name") == "ai-automation-ui"]
    server_spans = [s for s in spans if s.resource.get("service.name") == "ha-ai-agent-service"]
    assert sorted(s.name for s in browser_spans) == sorted(
        [
            "send_message",
            "ui_update",
            "ui_update",
            "ui_update",
            "api_call",
            "response_processing",
            "conversation_reload",
        ]
    )
    [root] = [s for s in browser_spans if s.name == "send_message"]
    assert root.parent_id is None
    assert all(s.parent_id == root.span_id for s in browser_spans if s is not root)
    [api_call] = [s for s in browser_spans if s.name == "api_call"]
    [server] = [s for s in server_spans if s.name == "POST /api/v1/chat"]
    assert server.parent_id == api_call.span_id, "the chat request's server span is the api_call span's child"
    tools = [s for s in server_spans if s.name == "tool_execution"]
    assert len(tools) == 2
    for tool in tools:  # from the tool call up to the click
        chain = [tool.name]
        span = tool
        while span.parent_id is not None:
            span = by_id[span.parent_id]
            chain.append(span.name)
        assert chain[-3:] == ["POST /api/v1/chat", "api_call", "send_message"], chain
    assert api_call.attributes["success"] is True and api_call.attributes["tool_calls_count"] == 2
    assert not console.errors(), console.errors()


def test_spans_leave_when_the_page_is_closed_before_the_batch_is_due(
    browser: Browser, tmp_path: Path
) -> None:
    """Closing the tab right after a send still delivers its spans: the batch is flushed on page hide."""
    with exporting_service(tmp_path) as (base, rotel):
        page, _ = open_page(browser, f"{base}/")
        send(page, "Hello there")
        [report] = reports(page, 1)
        page.close(run_before_unload=True)  # well within the page's 1 s batch delay
        received(rotel, report["traceId"], {"send_message", "api_call"})


def ingress_proxy(upstream: str, prefix: str) -> Starlette:
    """A reverse proxy that serves ``upstream`` under ``prefix`` and strips it, as Home Assistant ingress does."""

    async def forward(request: Request) -> Response:
        path = request.url.path.removeprefix(prefix.rstrip("/"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(base_url=upstream, timeout=30) as client:
            answer = await client.request(
                request.method,
                path or "/",
                params=request.query_params,
                headers=headers,
                content=await request.body(),
            )
        passed = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        }
        return Response(answer.content, status_code=answer.status_code, headers=passed)

    return Starlette(routes=[Route(prefix.rstrip("/") + "/{path:path}", forward, methods=["GET", "POST"])])


def test_the_page_works_under_an_ingress_prefix(browser: Browser, service: str) -> None:
    """Behind a proxy that serves it under /api/hassio_ingress/<token>/ the page loads, sends and reloads."""
    prefix = "/api/hassio_ingress/Zm9vYmFy/"
    with BackgroundServer(ingress_proxy(service, prefix)) as proxy:
        page, console = open_page(browser, f"{proxy.url}{prefix}")
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        send(page, "Which lights are on?")
        [report] = reports(page, 1)
        assert [m["name"] for m in report["metrics"]][-1] == "conversation_reload"
        expect(page.get_by_role("log", name="Conversation")).to_contain_text(
            re.compile(r"Kitchen Light is (on|off)")
        )
        page.evaluate("window.performanceTracker.forceFlush()")
        assert all(url.startswith(f"{proxy.url}{prefix}") for url in requested), requested
        assert any(url.endswith("api/v1/telemetry/traces") for url in requested), requested
    assert not console.errors(), console.errors()


def test_the_backend_report_of_the_trace_holds_the_browser_metrics(browser: Browser, service: str) -> None:
    """GET /api/v1/performance/reports/{trace_id}: the page's metrics (source browser) beside the server's."""
    page, _ = open_page(browser, f"{service}/")
    send(page, "Turn off the kitchen light and tell me the temperature")
    [report] = reports(page, 1)
    page.evaluate("window.performanceTracker.forceFlush()")
    url = f"{service}/api/v1/performance/reports/{report['traceId']}"
    deadline = time.monotonic() + 15
    while True:
        answer = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        joined = [m for m in answer.json().get("metrics", []) if m["source"] == "browser"]
        if answer.status_code == 200 and len(joined) == 1 + len(report["metrics"]):
            break  # every span of the send arrived (they may come in more than one batch)
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    backend = answer.json()
    assert backend["operation"] == "chat_request" and backend["trace_id"] == report["traceId"]
    from_page = [m for m in backend["metrics"] if m["source"] == "browser"]
    # The root and its first metric may start in the same tick of the browser's clock: compare apart.
    [root] = [m for m in from_page if m["name"] == "send_message"]
    metrics = [m for m in from_page if m is not root]
    assert [m["name"] for m in metrics] == [m["name"] for m in report["metrics"]]
    assert root["duration"] == pytest.approx(report["totalDuration"], abs=0.01)
    for joined, recorded in zip(metrics, report["metrics"], strict=True):
        assert joined["metadata"] == recorded["metadata"], joined["name"]
        assert joined["duration"] == pytest.approx(recorded["duration"], abs=0.01)
        assert joined["parent"] == "send_message"
    server_names = [m["name"] for m in backend["metrics"] if m["source"] == "server"]
    assert {"rate_limit_check", "openai_api_call", "tool_execution"} <= set(server_names)
    # Ordered by start: the server's work inside the api_call, the rendering after it.
    names = [m["name"] for m in backend["metrics"]]
    assert names.index("api_call") < names.index("rate_limit_check") < names.index("response_processing")
