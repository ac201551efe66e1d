"""Reports that outlive the process: an embedded SQLite history.

Every finished report handed to :meth:`History.record` is written to one
SQLite file (standard library, WAL mode) by a background thread, in batches,
off the request path::

    history = History("~/.local/state/ha-agent-tracing/history.sqlite3", retention_days=30)
    history.record(report)                              # never blocks, never raises
    history.query(since=time.time() - 3600)            # list[Report], oldest first
    history.rows(since, until)                          # one row per report, metrics packed
    history.close()

A report recorded again (late spans folded in) replaces its earlier version:
rows are keyed by ``(trace_id, span_id)``. Reports older than
``retention_days`` are deleted, and the oldest go first when the file grows
past ``max_bytes``. The schema carries a version (``PRAGMA user_version``)
and migrates forward on open.

Telemetry must not break the application: a file that cannot be opened, a
read-only directory, a locked, full or corrupt database gives **one**
warning; reports then stay in memory (up to ``max_queue`` wait for the
database to come back, tried again every ``retry_interval_s``) and nothing
else is affected. Every report that could not be kept is counted in
:meth:`History.stats`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import sqlite3
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing.reports._fold import Report

__all__ = [
    "SCHEMA",
    "SCHEMA_STEPS",
    "History",
    "HistoryReader",
    "HistoryUnavailable",
    "IndexRow",
    "ReportRow",
    "migrate",
    "pack_durations",
    "report_row",
    "rows_of",
    "unpack_durations",
]

logger = logging.getLogger("ha_agent_tracing")

State = Literal["starting", "ok", "unavailable", "closed"]

# Version 1, as SQL; later versions are in SCHEMA_STEPS. A file's version is its
# PRAGMA user_version (0 for a new file). Append steps, never edit a shipped one.
SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        timestamp REAL NOT NULL,
        total_duration REAL NOT NULL,
        status TEXT NOT NULL,
        error_count INTEGER NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        service_version TEXT,
        variant TEXT,
        report TEXT NOT NULL,
        UNIQUE (trace_id, span_id)
    );
    CREATE INDEX reports_by_time ON reports (timestamp);
    CREATE INDEX reports_by_operation ON reports (operation, timestamp);
    CREATE INDEX reports_by_duration ON reports (total_duration);
    CREATE TABLE metrics (
        report_id INTEGER NOT NULL,
        timestamp REAL NOT NULL,
        operation TEXT NOT NULL,
        name TEXT NOT NULL,
        duration REAL NOT NULL,
        failed INTEGER NOT NULL,
        source TEXT
    );
    CREATE INDEX metrics_by_time ON metrics (timestamp, operation, name, duration, failed, source);
    CREATE INDEX metrics_by_report ON metrics (report_id);
    """,
)


class HistoryUnavailable(Exception):
    """The history file cannot be read (missing, unreadable, corrupt, or a newer schema)."""


class IndexRow(NamedTuple):
    """Where one report sits: what a sample is drawn from before any report is read."""

    id: int
    operation: str
    trace_id: str
    span_id: str
    timestamp: float


class ReportRow(NamedTuple):
    """The columns of one report that queries filter and aggregate on."""

    trace_id: str
    span_id: str
    operation: str
    timestamp: float
    total_duration: float
    status: str
    error_count: int
    input_tokens: int | None
    output_tokens: int | None
    service_version: str | None
    variant: str | None
    metric_names: str
    """The metrics' names, a JSON array in the report's order."""
    metric_durations: bytes
    """Their durations (ms), packed as little-endian doubles."""
    metric_failures: bytes
    """One byte per metric: 1 when it failed."""

    def metrics(self) -> list[tuple[str, float, bool]]:
        """``(name, duration ms, failed)`` of each metric, unpacked."""
        names = json.loads(self.metric_names)
        return list(
            zip(names, unpack_durations(self.metric_durations), map(bool, self.metric_failures), strict=True)
        )


def pack_durations(durations: Sequence[float]) -> bytes:
    """Durations as little-endian doubles (the same bytes on every machine)."""
    packed = array("d", durations)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_durations(packed: bytes) -> array[float]:
    """The inverse of :func:`pack_durations`."""
    values = array("d")
    values.frombytes(packed)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _tokens(metrics: Sequence[Mapping[str, Any]], key: str, fallback: str) -> int | None:
    found: int | None = None
    for metric in metrics:
        metadata = metric.get("metadata") or {}
        value = (
            metadata.get(key, metadata.get(fallback))
            if metric.get("name") != "token_count_retrieval"
            else None
        )
        if isinstance(value, int) and not isinstance(value, bool):
            found = (found or 0) + value
    return found


def report_row(report: Mapping[str, Any]) -> ReportRow:
    """The queried columns of ``report``; ``ValueError`` when it lacks the documented keys."""
    try:
        metrics = report.get("metrics") or []
        timestamp = float(report["timestamp"])
        total = float(report["total_duration"])
        names = [str(m["name"]) for m in metrics]
        durations = [float(m["duration"]) for m in metrics]
        row = ReportRow(
            trace_id=str(report["trace_id"]).lower(),
            span_id=str(report["span_id"]).lower(),
            operation=str(report["operation"]),
            timestamp=timestamp,
            total_duration=total,
            status=str(report.get("status") or "ok"),
            error_count=sum(1 for m in metrics if m.get("status") == "error"),
            # Model turns carry their usage; token_count_retrieval repeats the request's sum.
            input_tokens=_tokens(metrics, "gen_ai.usage.input_tokens", "prompt_tokens"),
            output_tokens=_tokens(metrics, "gen_ai.usage.output_tokens", "completion_tokens"),
            service_version=_text(report.get("service.version", report.get("service_version"))),
            variant=_text(report.get("variant")),
            metric_names=json.dumps(names, separators=(",", ":")),
            metric_durations=pack_durations(durations),
            metric_failures=bytes(m.get("status") == "error" for m in metrics),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a report: {exc!r}") from None
    if not all(map(math.isfinite, (timestamp, total, *durations))):
        raise ValueError("not a report: timestamp and total_duration must be finite numbers")
    return row


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- schema


def _v2_metrics_in_the_report_row(conn: sqlite3.Connection) -> None:
    """Version 2: each report's metrics packed into its own row; the metrics table goes.

    A summary then reads one row per request instead of one per metric (70 000
    rows for a week of 10 000 requests a day, not 770 000).
    """
    for column, kind, default in (
        ("metric_names", "TEXT", "'[]'"),
        ("metric_durations", "BLOB", "x''"),
        ("metric_failures", "BLOB", "x''"),
    ):
        conn.execute(f"ALTER TABLE reports ADD COLUMN {column} {kind} NOT NULL DEFAULT {default}")
    rows = conn.execute("SELECT report_id, name, duration, failed FROM metrics ORDER BY report_id, rowid")
    updates = []
    for report_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        metrics = list(group)
        updates.append(
            (
                json.dumps([m[1] for m in metrics], separators=(",", ":")),
                pack_durations([m[2] for m in metrics]),
                bytes(bool(m[3]) for m in metrics),
                report_id,
            )
        )
    conn.executemany(
        "UPDATE reports SET metric_names = ?, metric_durations = ?, metric_failures = ? WHERE id = ?", updates
    )
    conn.execute("DROP TABLE metrics")
    # Summaries read only these columns: an index that holds them answers a range without
    # touching the rows, whose report JSON fills a page each.
    conn.execute("DROP INDEX reports_by_time")
    conn.execute("DROP INDEX reports_by_operation")
    conn.execute(f"CREATE INDEX reports_summary ON reports (timestamp, {', '.join(_SUMMARY_COLUMNS)})")


_SUMMARY_COLUMNS = (
    "operation", "trace_id", "span_id", "total_duration", "status", "error_count", "input_tokens",
    "output_tokens", "service_version", "variant", "metric_names", "metric_durations", "metric_failures",
)  # fmt: skip

Migration = str | Callable[[sqlite3.Connection], None]


def migrate(conn: sqlite3.Connection, schema: Sequence[Migration] | None = None) -> int:
    """Bring the file up to ``len(schema)``, one version per transaction; the version reached.

    Raises :class:`HistoryUnavailable` for a file written by a newer version of
    this package (its schema is not known here, so nothing is written to it).
    """
    steps: Sequence[Migration] = SCHEMA_STEPS if schema is None else schema
    while True:
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(steps):
                raise HistoryUnavailable(
                    f"its schema version {version} is newer than this version of ha-agent-tracing "
                    f"knows ({len(steps)}); upgrade, or point HA_AGENT_TRACING_HISTORY_PATH elsewhere"
                )
            if version == len(steps):
                conn.execute("COMMIT")
                return version
            step = steps[version]
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


SCHEMA_STEPS: tuple[Migration, ...] = (SCHEMA[0], _v2_metrics_in_the_report_row)
"""Each step migrates the schema from version i to i + 1 (SQL, or a function for what SQL cannot do)."""


def _statements(script: str) -> list[str]:
    # executescript() would commit the open transaction; run each statement in it instead.
    return [part.strip() for part in script.split(";") if part.strip()]


# ---------------------------------------------------------------- the writer


@dataclass
class _Flush:
    done: threading.Event


class _Entry(NamedTuple):
    row: ReportRow
    body: str
    report: Any
    """The report object encoded: an entry's ``report()`` returns the same one while nothing joined it."""


_UPSERT = """
    INSERT INTO reports (trace_id, span_id, operation, timestamp, total_duration, status, error_count,
                         input_tokens, output_tokens, service_version, variant,
                         metric_names, metric_durations, metric_failures, report)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (trace_id, span_id) DO UPDATE SET
        operation = excluded.operation, timestamp = excluded.timestamp,
        total_duration = excluded.total_duration, status = excluded.status,
        error_count = excluded.error_count, input_tokens = excluded.input_tokens,
        output_tokens = excluded.output_tokens, service_version = excluded.service_version,
        variant = excluded.variant, metric_names = excluded.metric_names,
        metric_durations = excluded.metric_durations, metric_failures = excluded.metric_failures,
        report = excluded.report
"""


_CLOSE = object()


def _describe(exc: BaseException) -> str:
    message = str(exc)
    lowered = message.lower()
    if "full" in lowered:
        hint = "the disk is full"
    elif "readonly" in lowered or "read-only" in lowered or isinstance(exc, PermissionError):
        hint = "the file or its directory is read-only"
    elif "unable to open" in lowered:
        hint = "the file cannot be created or opened (missing or read-only directory?)"
    elif "locked" in lowered or "busy" in lowered:
        hint = "another process holds the database locked"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        hint = "the file is corrupt or not a SQLite database; move it aside to start a new history"
    else:
        hint = ""
    return f"{message} ({hint})" if hint else message


class HistoryReader:
    """Reads a history file, read-only: what the command line uses while no service runs.

    Each query opens its own read-only connection (WAL lets it run while the
    service writes). Every failure to read raises :class:`HistoryUnavailable`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._read_lock = threading.Lock()
        self._read_failures = 0

    @property
    def read_failures(self) -> int:
        """Reads that raised :class:`HistoryUnavailable` (the service then answered from memory)."""
        return self._read_failures

    def _failed_read(self) -> None:
        with self._read_lock:
            self._read_failures += 1

    def _reader(self) -> _Reader:
        return _Reader(self.path, self._failed_read)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        operation: str | None = None,
        limit: int | None = None,
        *,
        slowest: bool = False,
    ) -> list[Report]:
        """Reports with ``since <= timestamp < until``, oldest first; ``limit`` keeps the newest N.

        With ``slowest``: the slowest first (``limit`` keeps the N slowest).
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit!r}")
        where, args = _where(since, until, operation)
        order = "total_duration" if slowest else "timestamp"
        sql = f"SELECT report FROM reports{where} ORDER BY {order} DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._reader() as conn:
            bodies = [body for (body,) in conn.execute(sql, args)]
        if not slowest:
            bodies.reverse()
        return [json.loads(body) for body in bodies]

    def get(self, trace_id: str) -> Report | None:
        """The report of a trace (its earliest local root); ``None`` when history has none."""
        with self._reader() as conn:
            found = conn.execute(
                "SELECT report FROM reports WHERE trace_id = ? ORDER BY timestamp LIMIT 1",
                (trace_id.lower(),),
            ).fetchone()
        return json.loads(found[0]) if found else None

    def rows(
        self, since: float | None = None, until: float | None = None, operation: str | None = None
    ) -> list[ReportRow]:
        """The rows of the reports in the range, metrics packed: what summaries and percentiles read."""
        where, args = _where(since, until, operation)
        columns = ", ".join(ReportRow._fields)
        with self._reader() as conn:
            return list(map(ReportRow._make, conn.execute(f"SELECT {columns} FROM reports{where}", args)))

    def index(
        self, since: float | None = None, until: float | None = None, operation: str | None = None
    ) -> list[IndexRow]:
        """Id, operation, trace and span id and start time of each report in the range, oldest first.

        Small rows, no report body: a sample is chosen from them, then read with :meth:`by_ids`.
        """
        where, args = _where(since, until, operation)
        columns = ", ".join(IndexRow._fields)
        sql = f"SELECT {columns} FROM reports{where} ORDER BY timestamp, id"
        with self._reader() as conn:
            return list(map(IndexRow._make, conn.execute(sql, args)))

    def by_ids(self, ids: Iterable[int]) -> dict[int, Report]:
        """The reports with these row ids (see :meth:`index`); ids deleted meanwhile are missing."""
        wanted = list(ids)
        found: dict[int, Report] = {}
        with self._reader() as conn:
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                for row_id, body in conn.execute(
                    f"SELECT id, report FROM reports WHERE id IN ({marks})", chunk
                ):
                    found[row_id] = json.loads(body)
        return found


class History(HistoryReader):
    """Reports kept in one SQLite file, written by a background thread; read as :class:`HistoryReader`.

    Args:
        path: the SQLite file; its directory is created if missing.
        retention_days: reports older than this are deleted.
        max_bytes: when the data outgrow this, the oldest reports are deleted.
        flush_interval_s: longest a recorded report waits before it is written.
        batch_size: most reports written in one transaction.
        max_queue: most reports waiting to be written; beyond, new ones are dropped and counted.
        retry_interval_s: after a failure, how long before the database is tried again.
        maintenance_interval_s: how often retention runs while the service is up.
        lock_timeout_s: how long a write waits for another process's lock before it fails.
        settle_s: a report recorded as an entry that folds on demand (what the store's
            listeners receive) is folded again this long after it was written, and
            rewritten if late spans changed it; 0: never (the report processor
            records its entries again whenever spans join them, so the service
            passes 0).
        clock: wall-clock time in epoch seconds (tests pass their own).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float = 30.0,
        max_bytes: int = 256 * 1024 * 1024,
        flush_interval_s: float = 1.0,
        batch_size: int = 500,
        max_queue: int = 10_000,
        retry_interval_s: float = 60.0,
        maintenance_interval_s: float = 600.0,
        lock_timeout_s: float = 5.0,
        settle_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days <= 0 or max_bytes <= 0 or flush_interval_s <= 0:
            raise ValueError("retention_days, max_bytes and flush_interval_s must be greater than 0")
        if settle_s < 0:
            raise ValueError("settle_s must be 0 or more")
        if batch_size <= 0 or max_queue <= 0 or retry_interval_s <= 0 or maintenance_interval_s <= 0:
            raise ValueError("batch_size, max_queue and the intervals must be greater than 0")
        super().__init__(path)
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self._flush_interval = flush_interval_s
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._retry_interval = retry_interval_s
        self._maintenance_interval = maintenance_interval_s
        self._clock = clock
        self._lock_timeout = lock_timeout_s
        self._settle = settle_s
        # (monotonic due time, entry, what was written): folded again when due.
        self._settling: deque[tuple[float, Any, _Entry]] = deque()
        # Reports and markers (flush, close) in order. The request side appends without a
        # lock and wakes the writer only when it is idle or a batch is full, not per report.
        self._inbox: deque[object] = deque()
        self._wake = threading.Event()
        self._collecting = False  # the writer lets a batch gather: records need not wake it
        self._markers = 0  # flush and close markers in the inbox (under _lock)
        self._backlog: list[Any] = []
        self._lock = threading.Lock()
        self._state: State = "starting"
        self._problem: str | None = None
        self._counts = {"written": 0, "dropped": 0, "rejected": 0, "failures": 0, "deleted": 0}
        self._errors = InternalErrors("report history")
        self._drop_warning = RateLimitedWarning()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ha-agent-tracing-history", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the request side

    def record(self, report: Report | Any) -> None:
        """Queue a finished report (or an object whose ``report()`` folds it) for writing.

        Never blocks and never raises: when the queue is full the report is
        dropped from history (it stays in memory) and counted.
        """
        if self._closed:
            return
        inbox = self._inbox
        if len(inbox) >= self._max_queue:
            with self._lock:
                self._counts["dropped"] += 1
            self._drop_warning.warn(
                "report history at %s is behind: %d reports are waiting to be written; "
                "newer ones are kept in memory only",
                self.path,
                self._max_queue,
            )
            return
        inbox.append(report)
        if not self._collecting or len(inbox) >= self._batch_size:
            self._wake.set()

    def _mark(self, marker: object) -> None:
        with self._lock:
            self._markers += 1
        self._inbox.append(marker)
        self._wake.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Write everything recorded so far; ``False`` if that took longer than ``timeout_s``."""
        if self._closed or not self._thread.is_alive():
            return False
        marker = _Flush(threading.Event())
        self._mark(marker)
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write what is queued (within ``timeout_s``) and close the file."""
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout_s
        self._mark(_CLOSE)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    @property
    def state(self) -> State:
        """``starting``, ``ok``, ``unavailable`` (see :attr:`problem`) or ``closed``."""
        return self._state

    @property
    def problem(self) -> str | None:
        """Why the database is unavailable, when it is."""
        return self._problem

    def stats(self) -> dict[str, Any]:
        """Path, state, and counts of reports written, dropped, rejected, deleted; write and read failures."""
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
        counts.update(
            path=str(self.path),
            state=self._state,
            problem=self._problem,
            queued=len(self._inbox) - self._markers + len(self._backlog),
            internal_errors=self._errors.count,
            read_failures=self.read_failures,
        )
        return counts

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        timers = {"maintenance": 0.0, "retry": 0.0}
        while True:
            flushes: list[_Flush] = []
            closing = False
            try:
                wake = timers["retry"] if self._conn is None and self._backlog else None
                if self._settling:
                    due = self._settling[0][0]
                    wake = min(wake, due) if wake is not None else due
                batch, flushes, closing = self._take(self._flush_interval, wake)
                self._cycle(batch, closing, timers)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive its own bugs
                self._errors.record(exc)
            for marker in flushes:
                marker.done.set()
            if closing:
                break
        if self._backlog:
            with self._lock:
                self._counts["dropped"] += len(self._backlog)
            self._backlog = []
        self._drop_connection()
        self._state = "closed"

    def _cycle(self, batch: list[Any], closing: bool, timers: dict[str, float]) -> None:
        """Fold and write one batch (with what waits from earlier), retrying and maintaining when due."""
        prepared = [(item, entry) for item in batch if (entry := self._prepare(item)) is not None]
        now = time.monotonic()
        pending = self._backlog + [entry for _, entry in prepared] + self._settled(now, closing)
        self._backlog = []
        if self._conn is None and now >= timers["retry"]:
            if self._open():
                timers["maintenance"] = now
            else:
                timers["retry"] = now + self._retry_interval
        written = False
        if pending and self._conn is not None:
            written = self._write(pending)
            if not written:
                timers["retry"] = now + self._retry_interval
        if pending and not written:
            self._keep(pending)
        elif written:
            self._settle_later(prepared, now)
        if self._conn is not None and now >= timers["maintenance"]:
            self._maintain()
            timers["maintenance"] = now + self._maintenance_interval

    def _settle_later(self, prepared: list[tuple[Any, _Entry]], now: float) -> None:
        """Remember entries that fold on demand: late spans may still join them."""
        if not self._settle:
            return
        for item, entry in prepared:
            if not isinstance(item, Mapping):
                self._settling.append((now + self._settle, item, entry))
        while len(self._settling) > self._max_queue:  # already written once; only the re-check is lost
            self._settling.popleft()

    def _settled(self, now: float, everything: bool) -> list[_Entry]:
        """Entries due for their second fold whose report changed since it was written."""
        changed: list[_Entry] = []
        while self._settling and (everything or self._settling[0][0] <= now):
            _, item, written = self._settling.popleft()
            try:
                report = item.report()
            except Exception as exc:  # noqa: BLE001 - a broken report must not stop the writer
                self._errors.record(exc)
                continue
            if report is None or report is written.report:
                continue  # nothing joined it since (the entry returns its cached report), or it failed
            entry = self._prepare(report)
            if entry is not None and entry.body != written.body:
                changed.append(entry)
        return changed

    def _take(self, wait_s: float, wake: float | None) -> tuple[list[Any], list[_Flush], bool]:
        """Up to ``batch_size`` reports, waiting at most ``wait_s`` after the first arrives.

        With nothing queued it returns by ``wake`` (a retry is due) or after the
        maintenance interval.
        """
        inbox = self._inbox
        idle_until = time.monotonic() + self._maintenance_interval
        if wake is not None:
            idle_until = min(idle_until, wake)
        self._collecting = False  # from here on a record wakes the writer: set before looking
        while not inbox:
            timeout = idle_until - time.monotonic()
            if timeout <= 0:
                return [], [], False
            self._wake.wait(timeout)
            self._wake.clear()  # cleared before the inbox is looked at again: no wake-up is lost
        self._collecting = True
        deadline = time.monotonic() + wait_s
        while len(inbox) < self._batch_size and not self._markers:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            self._wake.wait(timeout)
            self._wake.clear()
        batch: list[Any] = []
        flushes: list[_Flush] = []
        while len(batch) < self._batch_size:
            try:
                item = inbox.popleft()
            except IndexError:
                break
            if item is _CLOSE:
                self._unmark()
                return batch + self._drain(), flushes, True
            if isinstance(item, _Flush):
                self._unmark()
                flushes.append(item)
                break
            batch.append(item)
        return batch, flushes, False

    def _unmark(self) -> None:
        with self._lock:
            self._markers -= 1

    def _drain(self) -> list[Any]:
        rest: list[Any] = []
        while True:
            try:
                item = self._inbox.popleft()
            except IndexError:
                return rest
            if isinstance(item, _Flush):
                self._unmark()
                item.done.set()
            elif item is _CLOSE:
                self._unmark()
            else:
                rest.append(item)

    def _prepare(self, item: Any) -> _Entry | None:
        """Fold (if need be), check and encode one report; ``None`` for one that cannot be kept."""
        try:
            report = item if isinstance(item, Mapping) else item.report()
            if report is None:
                return None
            row = report_row(report)
            return _Entry(row, json.dumps(report, default=str, separators=(",", ":")), report)
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                self._counts["rejected"] += 1
            self._errors.record(exc)
        except Exception as exc:  # noqa: BLE001 - a broken report must not stop the writer
            self._errors.record(exc)
        return None

    def _keep(self, pending: list[_Entry]) -> None:
        """Hold reports for the next try, the newest ``max_queue`` of them."""
        overflow = len(pending) - self._max_queue
        if overflow > 0:
            with self._lock:
                self._counts["dropped"] += overflow
            pending = pending[overflow:]
        self._backlog = pending

    def _open(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, lock_timeout_s=self._lock_timeout)
            try:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode is {mode})")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA journal_size_limit = 67108864")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
        except (sqlite3.Error, OSError, ValueError, HistoryUnavailable) as exc:
            self._fail(exc)
            return False
        self._conn = conn
        self._recovered()
        return True

    def _write(self, pending: list[_Entry]) -> bool:
        """Write ``pending`` in one transaction; ``False`` (connection dropped) when SQLite fails."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_UPSERT, [(*entry.row, entry.body) for entry in pending])
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._fail(exc)
            self._drop_connection()
            return False
        with self._lock:
            self._counts["written"] += len(pending)
        self._enforce_size()
        return True

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _maintain(self) -> None:
        """Delete what is past retention, then enforce the size cap."""
        conn = self._conn
        assert conn is not None
        cutoff = self._clock() - self.retention_days * 86400.0
        try:
            deleted = self._delete_before(conn, cutoff, inclusive=False)
        except sqlite3.Error as exc:
            self._fail(exc)
            self._drop_connection()
            return
        if deleted:
            logger.info("report history: deleted %d reports older than %g days", deleted, self.retention_days)
        self._enforce_size()

    def _enforce_size(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            for _ in range(8):  # each round deletes enough to go under; a few rounds absorb estimates
                used = data_bytes(conn)
                if used <= self.max_bytes:
                    return
                count = conn.execute("SELECT count(*) FROM reports").fetchone()[0]
                if not count:
                    return
                share = 1.0 - 0.9 * self.max_bytes / used
                doomed = max(1, math.ceil(count * share))
                cutoff = conn.execute(
                    "SELECT timestamp FROM reports ORDER BY timestamp LIMIT 1 OFFSET ?", (doomed - 1,)
                ).fetchone()[0]
                deleted = self._delete_before(conn, cutoff, inclusive=True)
                logger.info(
                    "report history: over %d MB, deleted the %d oldest reports",
                    self.max_bytes // (1024 * 1024),
                    deleted,
                )
        except sqlite3.Error as exc:
            self._fail(exc)
            self._drop_connection()

    def _delete_before(self, conn: sqlite3.Connection, cutoff: float, *, inclusive: bool) -> int:
        op = "<=" if inclusive else "<"
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(f"DELETE FROM reports WHERE timestamp {op} ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if deleted:
            with self._lock:
                self._counts["deleted"] += deleted
            conn.execute("PRAGMA incremental_vacuum")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._counts["failures"] += 1
        problem = _describe(exc)
        was = self._state
        self._state, self._problem = "unavailable", problem
        if was != "unavailable":
            logger.warning(
                "report history at %s is unavailable: %s. Reports stay in memory only; "
                "the file is tried again every %.0f s (HA_AGENT_TRACING_HISTORY_PATH=off turns history off)",
                self.path,
                problem,
                self._retry_interval,
            )

    def _recovered(self) -> None:
        was = self._state
        self._state, self._problem = "ok", None
        if was == "unavailable":
            logger.warning("report history at %s is writable again", self.path)


def _where(since: float | None, until: float | None, operation: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if since is not None:
        clauses.append("timestamp >= ?")
        args.append(since)
    if until is not None:
        clauses.append("timestamp < ?")
        args.append(until)
    if operation is not None:
        clauses.append("operation = ?")
        args.append(operation)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def connect(path: Path, *, read_only: bool = False, lock_timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), waiting ``lock_timeout_s`` on locks."""
    if read_only:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=lock_timeout_s, isolation_level=None
        )
    else:
        conn = sqlite3.connect(path, timeout=lock_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(lock_timeout_s * 1000)}")
    return conn


def data_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file in use (free pages not counted)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size


_IDS_PER_QUERY = 500
"""Row ids bound in one ``IN (...)``: well under SQLite's limit on bound parameters."""


class _Reader:
    """A read-only connection for one query; every SQLite error becomes :class:`HistoryUnavailable`.

    ``failed`` is called once for each read that raises it (the reader counts them).
    """

    def __init__(self, path: Path, failed: Callable[[], None]) -> None:
        self._path = path
        self._failed = failed
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        if not self._path.exists():
            self._failed()
            raise HistoryUnavailable(f"no history at {self._path} yet")
        try:
            self._conn = connect(self._path, read_only=True)
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._close()
            self._failed()
            raise HistoryUnavailable(f"cannot read {self._path}: {_describe(exc)}") from exc
        if version != len(SCHEMA_STEPS):
            self._close()
            self._failed()
            raise HistoryUnavailable(
                f"{self._path} has schema version {version}; this version of ha-agent-tracing reads "
                f"version {len(SCHEMA_STEPS)} (the service migrates it when it starts)"
            )
        return self._conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self._close()
        if isinstance(exc, sqlite3.Error):
            self._failed()
            raise HistoryUnavailable(f"cannot read {self._path}: {_describe(exc)}") from exc

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def rows_of(reports: Iterable[Mapping[str, Any]]) -> list[ReportRow]:
    """The rows of in-memory reports (malformed ones are left out)."""
    found: list[ReportRow] = []
    for report in reports:
        try:
            found.append(report_row(report))
        except ValueError:
            continue
    return found
