"""The processor, fold and store at their edges: races held open on purpose, shutdown, odd records."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from ha_agent_tracing import ReportEntry, ReportProcessor, ReportStore, SpanRecord

from .conftest import make_tracing

MS = 1_000_000
T0 = 1_764_100_000 * 1_000_000_000


class _HeldStore(ReportStore):
    """A store whose first ``put`` waits until the test lets it go, to hold a race window open."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self._held = False

    def put(self, report: Mapping[str, Any] | ReportEntry, version: int = 0) -> bool:  # type: ignore[override]
        if not self._held:
            self._held = True
            self.entered.set()
            assert self.release.wait(10), "the test never released the store"
        return super().put(report, version)  # pyright: ignore[reportArgumentType]


def _browser(name: str, span_id: int, parent_id: int | None, start: int, end: int) -> SpanRecord:
    return SpanRecord(name, 0xB0, span_id, parent_id, start, end, {}, True, source="browser")


def test_browser_spans_arriving_while_their_new_report_is_being_published_join_it() -> None:
    """A batch making a new report is being put when the next batch of its trace arrives: it joins."""
    store = _HeldStore()
    processor = ReportProcessor(store)
    first = threading.Thread(
        target=processor.add_records, args=([_browser("page_load", 0x1, None, T0, T0 + 50 * MS)],)
    )
    first.start()
    assert store.entered.wait(10)
    try:
        joined = processor.add_records([_browser("send_message", 0x2, 0x1, T0 + MS, T0 + 2 * MS)])
    finally:
        store.release.set()
        first.join(10)
    assert joined == 1
    stats = processor.stats()
    assert (stats["orphan_spans"], stats["spans_not_reported"]) == (0, 0)
    report = store.get(f"{0xB0:032x}")
    assert report is not None
    assert [m["name"] for m in report["metrics"]] == ["send_message"]


def test_spans_of_requests_unfinished_at_shutdown_are_counted() -> None:
    """Shutdown forgets unfinished requests: the spans they held count as evicted, like their roots."""
    setup = make_tracing()
    tracer = setup.tracker.tracer
    root = tracer.start_span("POST /api/v1/chat", kind=trace.SpanKind.SERVER)
    tracer.start_span("step", context=trace.set_span_in_context(root)).end()
    setup.processor.shutdown()
    root.end()
    stats = setup.processor.stats()
    assert (stats["evicted_traces"], stats["evicted_spans"], stats["spans_not_reported"]) == (1, 2, 2)
    assert setup.store.reports() == []
