"""The processor, fold and store at their edges: races held open on purpose, shutdown, odd records."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace

from ha_agent_tracing import ReportEntry, ReportProcessor, ReportStore, SpanRecord
from ha_agent_tracing.reports import fold
from ha_agent_tracing.reports._fold import headline

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


def test_a_span_ending_before_it_started_folds_to_a_zero_duration() -> None:
    """Clock skew (a browser's clock, say) never gives a negative duration to a metric or a request."""
    root = SpanRecord("POST", 0xA, 0x1, None, T0, T0 - 3 * MS, {}, False, kind="server")
    step = SpanRecord("step", 0xA, 0x2, 0x1, T0 + 2 * MS, T0 + MS, {}, True)
    report = fold(root, [step])
    assert report["total_duration"] == 0.0
    assert report["metrics"][0]["duration"] == 0.0
    assert report["metrics"][0]["start_offset"] == 2.0
    assert headline(root, [step]) == ("POST", 0.0, [("step", 0.0)])


_ids = st.integers(min_value=0, max_value=6)
_records = st.lists(
    st.builds(
        SpanRecord,
        name=st.sampled_from(["a", "b", "c"]),
        trace_id=st.just(0xA),
        span_id=_ids,
        parent_id=st.none() | _ids,
        start_ns=st.integers(min_value=T0 - 10 * MS, max_value=T0 + 10 * MS),
        end_ns=st.integers(min_value=T0 - 10 * MS, max_value=T0 + 10 * MS),
        attributes=st.just({}),
        is_metric=st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(records=_records, root_end=st.integers(min_value=T0 - MS, max_value=T0 + 10 * MS))
def test_fold_of_odd_records_keeps_every_metric_ordered_and_never_negative(
    records: list[SpanRecord], root_end: int
) -> None:
    """Duplicate ids, id 0, missing parents, ends before starts: one metric per record, sane values."""
    root = SpanRecord("POST", 0xA, 0x7, None, T0, root_end, {}, False, kind="server")
    report = fold(root, records)
    expected = sorted((r for r in records if r.is_metric), key=lambda r: r.start_ns)
    metrics = report["metrics"]
    assert [(m["name"], m["span_id"]) for m in metrics] == [(r.name, f"{r.span_id:016x}") for r in expected]
    assert report["total_duration"] == max(root_end - T0, 0) / MS
    for metric, record in zip(metrics, expected, strict=True):
        assert metric["duration"] == max(record.end_ns - record.start_ns, 0) / MS
        assert metric["start_offset"] == (record.start_ns - T0) / MS
        metric_names = {r.name for r in expected if r.span_id == record.parent_id}
        assert metric["parent"] is None if not metric_names else metric["parent"] in metric_names
