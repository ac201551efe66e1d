"""Shared fixtures: every test records on its own provider, never on globals."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore, get_tracker, shutdown_tracing


@dataclass
class Tracing:
    """A fresh provider wired to a report processor and an in-memory exporter."""

    provider: TracerProvider
    store: ReportStore
    processor: ReportProcessor
    exporter: InMemorySpanExporter
    tracker: PerformanceTracker


def make_tracing(**processor_options: object) -> Tracing:
    """A provider with a report processor (options passed on) and an in-memory exporter."""
    provider = TracerProvider(shutdown_on_exit=False)
    store = ReportStore()
    processor = ReportProcessor(store, **processor_options)  # type: ignore[arg-type]
    exporter = InMemorySpanExporter()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, store, processor, exporter, PerformanceTracker(provider, store))


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """A fresh, isolated tracing setup; every span it saw must have ended."""
    setup = make_tracing()
    yield setup
    assert setup.processor.stats()["pending_traces"] == 0, "a span was left open"
    setup.provider.shutdown()


@pytest.fixture(autouse=True)
def _history_kept_apart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes the user's own history, nor sees another test's.

    History is off unless a test turns it on, and its default location (what a
    command run with a cleaned environment uses) is a new temporary directory
    for each test.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HA_AGENT_TRACING_HISTORY_PATH", "off")
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(autouse=True)
def _reset_global_tracing() -> Iterator[None]:
    """Whatever a test configured globally is shut down after it."""
    yield
    shutdown_tracing(timeout_s=2)
    get_tracker().clear_reports()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch every microsecond, so races between hooks happen often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def lib_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures the library's own log records at DEBUG and above."""
    caplog.set_level(logging.DEBUG, logger="ha_agent_tracing")
    return caplog
