"""Faults of the export path: the service carries on, losses are counted and said once.

Every test here is bounded in time and talks to loopback only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ha_agent_tracing import load_config, shutdown_tracing
from ha_agent_tracing.agent._background import free_port
from ha_agent_tracing.telemetry._exporters import CountingBatchProcessor, CountingExporter

from .agent_harness import Agent, running_agent
from .receivers import Rotel

pytestmark = pytest.mark.receiver


def export_warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ha_agent_tracing" and r.levelno == logging.WARNING and word in r.getMessage()
    ]


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def exporter_stats(agent: Agent) -> dict[str, Any]:
    return agent.runtime.stats()["exporters"][0]


def test_receiver_killed_mid_load_and_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No request fails; drops while it is down are counted and logged once; spans after the restart arrive."""
    caplog.set_level(logging.INFO, logger="ha_agent_tracing")
    ports = (free_port(), free_port())
    first = Rotel(tmp_path, ports=ports, name="first").start()
    tracing = {
        "exporters": "otlp",
        "otlp_protocol": "grpc",
        "otlp_traces_endpoint": first.grpc_endpoint,
        "bsp_schedule_delay_ms": 50,
        "otlp_timeout_ms": 500,
    }
    statuses: list[int] = []
    try:
        with running_agent(tracing=tracing, rate_limit=10_000) as agent:
            for n in range(5):
                statuses.append(agent.chat(f"Which lights are on? {n}", f"before_{n}").status_code)
            before = agent.reports(5)
            first.wait_for_spans({r["span_id"] for r in before})

            first.kill()
            for n in range(10):
                statuses.append(agent.chat(f"Turn on the bedroom light {n}", f"down_{n}").status_code)
            wait_until(lambda: exporter_stats(agent)["failed_spans"], 15, "a failed export")

            with Rotel(tmp_path, ports=ports, name="second") as second:
                # gRPC reconnects with a backoff of its own: keep asking until a request's spans arrive.
                deadline = time.monotonic() + 30
                arrived = False
                n = 0
                while not arrived and time.monotonic() < deadline:
                    statuses.append(agent.chat(f"Hello again {n}", f"after_{n}").status_code)
                    report = agent.reports(None)[-1]
                    try:
                        second.wait_for_spans({report["span_id"]}, timeout_s=2)
                        arrived = True
                    except AssertionError:
                        n += 1
                stats = exporter_stats(agent)
    finally:
        first.stop()
    assert arrived, "spans of a request sent after the restart reached the new receiver"
    assert statuses and set(statuses) == {200}, "no request failed because the receiver was down"
    assert stats["failed_spans"] > 0
    assert stats["exported_spans"] > 0
    assert len(export_warnings(caplog, "failed;")) == 1, (
        "one warning when export starts failing, not one per batch"
    )
    assert export_warnings(caplog, "recovered")


def test_a_receiver_that_never_answers_does_not_hold_up_requests(caplog: pytest.LogCaptureFixture) -> None:
    """Connections are accepted but never answered: requests succeed, exports time out and are counted."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        tracing = {
            "exporters": "otlp",
            "otlp_traces_endpoint": f"http://127.0.0.1:{port}/v1/traces",
            "bsp_schedule_delay_ms": 50,
            "otlp_timeout_ms": 300,
            "shutdown_timeout_s": 1.0,
        }
        with running_agent(tracing=tracing, rate_limit=10_000) as agent:
            statuses = [agent.chat(f"Which lights are on? {n}", f"c{n}").status_code for n in range(10)]
            reports = agent.reports(10)
            wait_until(lambda: exporter_stats(agent)["failed_spans"], 15, "a timed-out export")
            started = time.monotonic()
            shutdown_tracing()
            shutdown_s = time.monotonic() - started
    assert set(statuses) == {200}
    assert len(reports) == 10
    assert export_warnings(caplog, "failed;")
    assert shutdown_s < 1.5, "shutdown_tracing() kept its bound"


def test_an_endpoint_unreachable_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    """Nobody listens: the service starts and answers; losses are counted; one warning, no retry storm."""
    tracing = {
        "exporters": "otlp",
        "otlp_protocol": "grpc",
        "otlp_traces_endpoint": f"http://127.0.0.1:{free_port()}",
        "bsp_schedule_delay_ms": 50,
        "otlp_timeout_ms": 300,
    }
    with running_agent(tracing=tracing, rate_limit=10_000) as agent:
        statuses = [agent.chat(f"Hello {n}", f"c{n}").status_code for n in range(8)]
        assert len(agent.reports(8)) == 8
        wait_until(
            lambda: exporter_stats(agent)["failed_spans"] >= 8, 15, "every request's spans counted as lost"
        )
        stats = exporter_stats(agent)
    assert set(statuses) == {200}
    assert stats["failing"] is True
    assert stats["exported_spans"] == 0
    assert len(export_warnings(caplog, "failed;")) == 1


def test_spans_that_find_the_export_queue_full_are_counted() -> None:
    """While the exporter is stuck, a full queue drops spans; each drop is counted, none raises."""
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(10)
            return SpanExportResult.SUCCESS

    config = load_config({}, bsp_max_queue_size=2, bsp_max_export_batch_size=1, bsp_schedule_delay_ms=10)
    processor = CountingBatchProcessor(CountingExporter(Stuck(), "stuck"), config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("first"):
        pass
    wait_until(lambda: len(processor._batch_processor._queue) == 0, 5, "the worker to take the first span")
    for n in range(20):
        with tracer.start_as_current_span(f"s{n}"):
            pass
    dropped = processor.stats()["queue_dropped_spans"]
    release.set()
    provider.shutdown()
    assert dropped == 18  # 2 fit in the queue while the first export is stuck
