"""What the store holds per report: an entry that folds its report when first read.

The processor publishes one :class:`ReportEntry` per finished request as its
root span ends; the request's records stay in its :class:`RequestRecords`,
late spans and browser spans are appended to them, and the next read folds
again. A report dict put into the store by hand is held in an entry too, so
listeners and queries see one type.
"""

from __future__ import annotations

from collections.abc import Callable

from ha_agent_tracing.reports import _fold
from ha_agent_tracing.reports._records import SpanRecord
from ha_agent_tracing.reports._types import Report

__all__ = ["ReportEntry", "RequestRecords"]

# RequestRecords.state
OPEN, PUBLISHED, DROPPED = 0, 1, 2


class RequestRecords:
    """The finished spans of one request (one local root) in this process, and its bookkeeping.

    Owned by the report processor: every field changes under its lock, except
    that a running request's spans are appended to ``records`` without it, and
    span ids are added to ``members`` without it (see the processor's module
    docstring).
    """

    __slots__ = (
        "cut",
        "has_metric",
        "limit",
        "lost_as",
        "members",
        "open",
        "overflow",
        "records",
        "remote",
        "root_id",
        "settled",
        "shared",
        "started",
        "state",
        "trace_id",
        "until",
    )

    def __init__(
        self,
        trace_id: int,
        root_id: int,
        started: float,
        has_metric: bool,
        limit: int = 1_000,
        remote: bool = False,
    ) -> None:
        self.trace_id = trace_id
        self.root_id = root_id
        self.remote = remote  # the root's parent is remote: other requests may share the trace
        self.limit = limit  # most records kept (the per-request cap)
        self.open = True  # the root has not ended (nor was the request evicted)
        self.records: list[SpanRecord] = []  # every finished span of the request but its root
        self.cut = 0  # spans left out over the cap
        self.has_metric = has_metric  # the root is a server span or a metric, or a metric started under it
        self.started = started  # monotonic time the root started
        self.until = 0.0  # monotonic end of the late-span window, once published
        self.state = OPEN
        self.settled = 0  # len(records) when the request closed: what its close accounted for
        self.lost_as = "unreported_spans"  # the counter of its spans arriving once DROPPED
        # The ids of the spans started under the root, when other requests of the trace were
        # held here as it started (a client reusing one traceparent, two local roots under
        # one remote parent): how a span of the trace is told to be this request's.
        self.members: set[int] | None = None
        self.overflow = False  # it started more spans than ``members`` may hold: some are not noted
        # Without members: another request of its trace started here later, so a span of
        # the trace is its own only once no other request's members hold it.
        self.shared = False


class ReportEntry:
    """One stored report, folded the first time it is read and again after spans join it.

    What store listeners receive. ``key`` is ``(trace_id, span_id)`` in hex, the
    report's stable identity (a later call for the same key is a newer state of
    the same report); :meth:`report` returns the folded report (cached until
    spans join), or ``None`` if folding failed (counted as an internal error).
    The returned dict is shared: copy it before changing it.
    """

    __slots__ = ("_cached", "_on_error", "_ready", "_root", "_trace", "span_int", "trace_int", "version")

    def __init__(
        self,
        *,
        report: Report | None = None,
        root: SpanRecord | None = None,
        trace: RequestRecords | None = None,
        on_error: Callable[[Exception], None] | None = None,
        version: int = 0,
    ) -> None:
        if report is not None:
            self.trace_int = int(report["trace_id"], 16)
            self.span_int = int(report["span_id"], 16)
        elif root is not None and trace is not None:
            self.trace_int = root.trace_id
            self.span_int = root.span_id
        else:
            raise ValueError("a report entry needs a report, or a root record and its trace's records")
        self._ready = report
        self._root = root
        self._trace = trace
        self._on_error = on_error
        self._cached: tuple[int, int, Report] | None = None
        self.version = version

    @property
    def key(self) -> tuple[str, str]:
        """``(trace_id, span_id)`` as 32 and 16 hex digits."""
        return f"{self.trace_int:032x}", f"{self.span_int:016x}"

    @property
    def trace_id(self) -> str:
        """The trace id, 32 hex digits."""
        return f"{self.trace_int:032x}"

    @property
    def span_id(self) -> str:
        """The root span's id, 16 hex digits."""
        return f"{self.span_int:016x}"

    @property
    def trace(self) -> RequestRecords | None:
        """The records the report is folded from (``None`` for a report put as a dict)."""
        return self._trace

    @property
    def root(self) -> SpanRecord | None:
        """The root span's record (``None`` for a report put as a dict)."""
        return self._root

    @property
    def start_ns(self) -> int:
        """When the request's root started, epoch ns (for ordering the reports of one trace)."""
        if self._root is not None:
            return self._root.start_ns
        return int(self._ready["timestamp"] * 1e9) if self._ready is not None else 0

    def report(self) -> Report | None:
        """The report, folded now if spans joined since the last read; ``None`` if folding failed."""
        if self._ready is not None:
            return self._ready
        trace, root = self._trace, self._root
        assert trace is not None and root is not None
        cut = trace.cut
        cached = self._cached
        if cached is not None and cached[0] == len(trace.records) and cached[1] == cut:
            return cached[2]  # records only grow: the same count is the same records
        records = trace.records[:]  # a snapshot: spans appended meanwhile wait for the next read
        try:
            report = _fold.fold(root, records, truncated_spans=cut)
        except Exception as exc:  # noqa: BLE001 - a broken record must not break the query
            if self._on_error is not None:
                self._on_error(exc)
            return None
        self._cached = (len(records), cut, report)
        return report

    def headline(self) -> tuple[str, float, str, list[tuple[str, float]]]:
        """Operation, total ms, trace id and the three slowest metrics, without folding."""
        if self._ready is not None or self._root is None or self._trace is None:
            report = self.report()
            assert report is not None
            slowest = sorted(report["metrics"], key=lambda m: m["duration"], reverse=True)[:3]
            return (
                report["operation"],
                report["total_duration"],
                report["trace_id"],
                [(m["name"], m["duration"]) for m in slowest],
            )
        operation, total, slowest = _fold.headline(self._root, self._trace.records[:])
        return operation, total, self.trace_id, slowest
