"""What the store holds per report: an entry that folds its report when first read.

The processor publishes one :class:`ReportEntry` per finished request as its
root span ends; the request's records stay in a :class:`TraceRecords` shared
by every report of the trace, late spans and browser spans are appended to it,
and the next read folds again. A report dict put into the store by hand is
held in an entry too, so listeners and queries see one type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ha_agent_tracing.reports import _fold
from ha_agent_tracing.reports._records import SpanRecord
from ha_agent_tracing.reports._types import Report

__all__ = ["ReportEntry", "TraceRecords"]

# TraceRecords.state
OPEN, PUBLISHED, DROPPED = 0, 1, 2


class TraceRecords:
    """The finished spans of one trace's requests in this process, and their bookkeeping.

    Owned by the report processor: every field changes under its lock, except
    that a running request's spans are appended to ``records`` without it (see
    the processor's ``on_end``). Usually
    a trace has one local root here; when several requests of one trace run
    here (two server spans under one remote parent), they share this object
    and each report takes the subtree under its own root.
    """

    __slots__ = (
        "children",
        "cut",
        "cut_children",
        "has_metric",
        "limit",
        "lost",
        "lost_as",
        "lost_held",
        "open",
        "records",
        "remote",
        "reported",
        "root_ids",
        "settled",
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
        self.remote = remote  # its first root had a remote parent: later requests may share the trace
        self.root_ids = [root_id]
        self.limit = limit  # most records kept: the per-request cap times the requests that count
        self.open = [root_id]  # local roots started and not yet ended
        self.records: list[SpanRecord] = []  # every finished span but the roots; only grows
        self.cut = 0  # spans left out over the per-request cap
        # The ids of cut spans by their parent's id (at most ``limit``): a cut span's children
        # still belong to its request, through it.
        self.cut_children: dict[int | None, list[int]] | None = None
        self.has_metric = has_metric  # a root is a server span or a metric, or a metric started under one
        self.reported = False  # a report of this trace was published
        self.started = started  # monotonic time its latest root started
        self.until = 0.0  # monotonic end of the late-span window, once every root ended
        self.state = OPEN
        self.settled = 0  # len(records) when ``open`` last fell to 0: what that close accounted for
        self.lost_as = "unreported_spans"  # the counter of records that arrive once DROPPED
        # Once one of several requests of the trace is lost (evicted, or makes no report):
        # span ids of the lost requests' spans, roots included, to the counter of their cause;
        self.lost: dict[int, str] | None = None
        # the records by parent id, to find a lost span's descendants that ended before it;
        self.children: dict[int | None, list[SpanRecord]] | None = None
        self.lost_held = 0  # and how many of ``records`` are counted lost (in no report)

    def spans_of(self, root_id: int, records: Sequence[SpanRecord]) -> Sequence[SpanRecord]:
        """The records of the request under ``root_id`` (all of them when it is the trace's only root)."""
        if len(self.root_ids) == 1:
            return records
        children: dict[int | None, list[SpanRecord]] = {}
        for record in records:
            children.setdefault(record.parent_id, []).append(record)
        cut = dict(self.cut_children) if self.cut_children else {}  # one C-level copy: a snapshot
        found: list[SpanRecord] = []
        stack = [root_id]
        while stack:
            parent_id = stack.pop()
            for child in children.get(parent_id, ()):
                found.append(child)
                stack.append(child.span_id)
            stack += cut.get(parent_id, ())  # left out, but their children are this request's
        # Spans from another source (the browser) sit above the server roots: they join every report.
        ids = {record.span_id for record in found}
        found += [r for r in records if r.source != "server" and r.span_id not in ids]
        return found


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
        trace: TraceRecords | None = None,
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
        self._cached: tuple[int, int, int, Report] | None = None
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
    def trace(self) -> TraceRecords | None:
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
        cut, roots = trace.cut, len(trace.root_ids)
        cached = self._cached
        if cached is not None and cached[0] == len(trace.records) and cached[1] == cut and cached[2] == roots:
            return cached[3]  # records only grow: the same count is the same records
        records = trace.records[:]  # a snapshot: spans appended meanwhile wait for the next read
        try:
            report = _fold.fold(root, trace.spans_of(root.span_id, records), truncated_spans=cut)
        except Exception as exc:  # noqa: BLE001 - a broken record must not break the query
            if self._on_error is not None:
                self._on_error(exc)
            return None
        self._cached = (len(records), cut, roots, report)
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
        records = self._trace.records[:]
        operation, total, slowest = _fold.headline(self._root, self._trace.spans_of(self.span_int, records))
        return operation, total, self.trace_id, slowest
