"""The report history: SQLite, off the request path, kept across restarts, never in the way."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ha_agent_tracing import load_config
from ha_agent_tracing._config import history_file
from ha_agent_tracing.reports._history import (
    SCHEMA_STEPS,
    History,
    HistoryReader,
    HistoryUnavailable,
    data_bytes,
    migrate,
)

NOW = 1_800_000_000.0


def report(n: int, at: float = NOW, total: float = 100.0, **extra: Any) -> dict[str, Any]:
    """A report of the documented shape: two model turns, one failed tool call."""
    return {
        "operation": "chat_request",
        "total_duration": total,
        "timestamp": at,
        "metrics": [
            {"name": "rate_limit_check", "duration": 0.5, "metadata": {"exceeded": False}, "status": "ok"},
            {
                "name": "openai_api_call",
                "duration": 40.0,
                "metadata": {"gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30},
                "status": "ok",
            },
            {"name": "tool_execution", "duration": 12.0, "metadata": {"success": False}, "status": "error"},
            {
                "name": "openai_api_call",
                "duration": 30.0,
                "metadata": {"gen_ai.usage.input_tokens": 200, "gen_ai.usage.output_tokens": 20},
                "status": "ok",
            },
            {
                "name": "token_count_retrieval",
                "duration": 0.1,
                "metadata": {"tokens_used": 370},
                "status": "ok",
            },
        ],
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "root_span": "POST /api/v1/chat",
        "status": "ok",
        "sampled": True,
        **extra,
    }


@contextlib.contextmanager
def opened(path: Path, **options: Any) -> Iterator[History]:
    history = History(path, flush_interval_s=0.02, **options)
    try:
        yield history
    finally:
        history.close()


def warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()
    ]


def test_a_restart_keeps_the_reports(tmp_path: Path) -> None:
    """What one process wrote, the next one reads: same reports, same order, same content."""
    path = tmp_path / "state" / "history.sqlite3"
    with opened(path) as history:
        for n in range(5):
            history.record(report(n, at=NOW + n))
        assert history.flush()
        assert history.stats()["written"] == 5
    with opened(path) as again:
        found = again.query()
    assert [r["trace_id"] for r in found] == [f"{n:032x}" for n in range(5)]
    assert found[2] == report(2, at=NOW + 2)


def test_a_newer_version_of_a_report_replaces_the_older_one(tmp_path: Path) -> None:
    """Late spans make a new version of the same (trace_id, span_id): one row, the newer content."""
    path = tmp_path / "h.sqlite3"
    with opened(path) as history:
        history.record(report(1, total=100.0))
        history.flush()
        late = report(1, total=180.0)
        late["metrics"].append({"name": "background_save", "duration": 60.0, "metadata": {}, "status": "ok"})
        history.record(late)
        history.flush()
        (row,) = history.rows()
        assert [r["total_duration"] for r in history.query()] == [180.0]
    assert row.metrics() == [(m["name"], m["duration"], m["status"] == "error") for m in late["metrics"]]


def test_the_queried_columns(tmp_path: Path) -> None:
    """Tokens are the model turns' usage (not counted twice), errors the failed metrics; filters work."""
    with opened(tmp_path / "h.sqlite3") as history:
        history.record(report(1, at=NOW) | {"service.version": "1.2.0", "variant": "b"})
        history.record(report(2, at=NOW + 60) | {"operation": "nightly_sync", "status": "error"})
        history.record(report(3, at=NOW + 120))
        history.flush()
        (row,) = history.rows(since=NOW, until=NOW + 1)
        assert (row.input_tokens, row.output_tokens, row.error_count) == (320, 50, 1)
        assert (row.service_version, row.variant) == ("1.2.0", "b")
        assert [r["trace_id"][-1] for r in history.query(since=NOW + 60)] == ["2", "3"]
        assert [r["trace_id"][-1] for r in history.query(until=NOW + 60)] == ["1"]
        assert [r["trace_id"][-1] for r in history.query(operation="chat_request")] == ["1", "3"]
        assert [r["trace_id"][-1] for r in history.query(limit=2)] == ["2", "3"]
        assert history.get(f"{2:032X}") is not None, "trace ids are matched in any case"
        assert history.get("f" * 32) is None


def test_the_slowest_first(tmp_path: Path) -> None:
    """slowest=True orders by total duration, longest first; limit keeps the N slowest in the range."""
    totals = [30.0, 250.0, 90.0, 400.0, 10.0]
    with opened(tmp_path / "h.sqlite3") as history:
        for n, total in enumerate(totals):
            history.record(report(n, at=NOW + n, total=total))
        history.flush()
        slowest = history.query(slowest=True, limit=2)
        in_range = history.query(since=NOW, until=NOW + 3, slowest=True)
    assert [r["total_duration"] for r in slowest] == [400.0, 250.0]
    assert [r["total_duration"] for r in in_range] == [250.0, 90.0, 30.0]


def test_reports_of_the_browser_keep_their_source(tmp_path: Path) -> None:
    """Browser metrics land in the same report and row as the server's, their source kept."""
    browsed = report(7)
    browsed["metrics"].insert(
        0, {"name": "page_render", "duration": 16.0, "metadata": {}, "status": "ok", "source": "browser"}
    )
    with opened(tmp_path / "h.sqlite3") as history:
        history.record(browsed)
        history.flush()
        (row,) = history.rows()
        kept = history.get(f"{7:032x}")
    assert row.metrics()[0] == ("page_render", 16.0, False)
    assert kept is not None and kept["metrics"][0]["source"] == "browser"


def test_retention_deletes_what_is_older_and_keeps_the_rest(tmp_path: Path) -> None:
    """On open, reports older than retention_days go; younger ones, and their metrics, stay."""
    path = tmp_path / "h.sqlite3"
    with opened(path, retention_days=30, clock=lambda: NOW) as history:
        for n, age_days in enumerate((10.0, 2.01, 1.99, 0.5)):
            history.record(report(n, at=NOW - age_days * 86400))
        history.flush()
        assert len(history.query()) == 4
    with opened(path, retention_days=2, clock=lambda: NOW) as history:
        history.flush()
        kept = history.query()
        rows = history.rows()
        deleted = history.stats()["deleted"]
    assert [r["trace_id"][-1] for r in kept] == ["2", "3"]
    assert [len(row.metrics()) for row in rows] == [5, 5]
    assert deleted == 2


def test_the_size_cap_deletes_the_oldest_first(tmp_path: Path) -> None:
    """Past max_bytes the oldest reports are deleted until the data fit; the newest stay."""
    path = tmp_path / "h.sqlite3"
    cap = 300 * 1024
    with opened(path, max_bytes=cap) as history:
        for n in range(2000):
            history.record(report(n, at=NOW + n))
        history.flush(timeout_s=30)
        kept = history.query()
        stats = history.stats()
    conn = sqlite3.connect(path)
    used = data_bytes(conn)
    conn.close()
    assert used <= cap
    assert stats["deleted"] > 0 and stats["written"] == 2000
    assert len(kept) == 2000 - stats["deleted"]
    assert kept[-1]["trace_id"] == f"{1999:032x}"
    assert [r["timestamp"] for r in kept] == [NOW + n for n in range(2000 - len(kept), 2000)]


def test_a_version_1_file_migrates_forward_and_keeps_every_metric(tmp_path: Path) -> None:
    """Version 1 kept metrics in a table of their own; opening it packs them into their reports' rows."""
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, SCHEMA_STEPS[:1]) == 1
    for n, total in ((1, 100.0), (2, 250.0)):
        conn.execute(
            "INSERT INTO reports (trace_id, span_id, operation, timestamp, total_duration, status, error_count,"
            " report) VALUES (?, ?, 'chat_request', ?, ?, 'ok', 1, ?)",
            (f"{n:032x}", f"{n:016x}", NOW + n, total, json.dumps(report(n, at=NOW + n, total=total))),
        )
        report_id = conn.execute("SELECT max(id) FROM reports").fetchone()[0]
        conn.executemany(
            "INSERT INTO metrics (report_id, timestamp, operation, name, duration, failed) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (report_id, NOW + n, "chat_request", name, n * d, failed)
                for name, d, failed in (("a", 1.5, 0), ("b", 2.0, 1))
            ],
        )
    conn.close()
    with opened(path) as history:
        history.flush()
        rows = sorted(history.rows(), key=lambda row: row.timestamp)
        found = history.query()
    conn = sqlite3.connect(path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert version == len(SCHEMA_STEPS) == 2
    assert tables == {"reports"}
    assert [row.metrics() for row in rows] == [
        [("a", 1.5, False), ("b", 2.0, True)],
        [("a", 3.0, False), ("b", 4.0, True)],
    ]
    assert [r["total_duration"] for r in found] == [100.0, 250.0]


def test_a_later_migration_applies_once(tmp_path: Path) -> None:
    """A step appended to the schema runs on the next open, once, and keeps the rows."""
    path = tmp_path / "h.sqlite3"
    with opened(path) as history:
        history.record(report(1))
        history.flush()
    conn = sqlite3.connect(path, isolation_level=None)
    later = (
        *SCHEMA_STEPS,
        "ALTER TABLE reports ADD COLUMN region TEXT; CREATE INDEX reports_by_region ON reports (region)",
    )
    assert migrate(conn, later) == len(SCHEMA_STEPS) + 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(SCHEMA_STEPS) + 1
    assert conn.execute("SELECT trace_id, region FROM reports").fetchall() == [(f"{1:032x}", None)]
    assert migrate(conn, later) == len(SCHEMA_STEPS) + 1, "migrating again changes nothing"
    conn.close()


def test_a_file_from_a_newer_version_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A schema this version does not know: one warning, nothing written, requests unaffected."""
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(SCHEMA_STEPS) + 5}")
    conn.close()
    with opened(path) as history:
        history.record(report(1))
        history.flush()
        assert history.state == "unavailable"
        assert "newer" in (history.problem or "")
    assert len(warnings_about(caplog, path)) == 1
    with pytest.raises(HistoryUnavailable, match="schema version"):
        HistoryReader(path).query()


def test_a_corrupt_file_gives_one_warning_and_nothing_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage where the database should be: one clear warning; record() and flush() carry on."""
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database, " * 200)
    with opened(path, retry_interval_s=0.05) as history:
        for n in range(20):
            history.record(report(n))
            history.flush()
        assert history.state == "unavailable"
        assert history.stats()["written"] == 0
    (message,) = warnings_about(caplog, path)
    assert "corrupt" in message and "in memory" in message
    with pytest.raises(HistoryUnavailable):
        HistoryReader(path).query()


def test_it_comes_back_when_the_file_does_and_loses_nothing_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reports recorded while the database was unusable are written once it is usable again."""
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"x" * 4096)
    with opened(path, retry_interval_s=0.1) as history:
        for n in range(3):
            history.record(report(n, at=NOW + n))
        history.flush()
        assert history.state == "unavailable"
        path.unlink()  # the person moved the corrupt file aside, as the warning says
        deadline = time.monotonic() + 5
        while history.state != "ok" and time.monotonic() < deadline:
            history.flush()
            time.sleep(0.05)
        history.flush()
        assert [r["trace_id"][-1] for r in history.query()] == ["0", "1", "2"]
    assert any("writable again" in m for m in warnings_about(caplog, path))


def test_a_locked_database_waits_then_writes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holding the write lock past the timeout: one warning; the reports follow later."""
    path = tmp_path / "h.sqlite3"
    with opened(path, lock_timeout_s=0.2, retry_interval_s=0.1) as history:
        history.record(report(0))
        history.flush()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        history.record(report(1))
        history.flush()
        assert history.state == "unavailable" and "locked" in (history.problem or "")
        other.execute("COMMIT")
        other.close()
        deadline = time.monotonic() + 5
        while len(history.query()) < 2 and time.monotonic() < deadline:
            history.flush()
            time.sleep(0.05)
        assert len(history.query()) == 2
    assert sum("unavailable" in m for m in warnings_about(caplog, path)) == 1


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    """record() never waits: past max_queue reports are dropped from history and counted."""
    gate = threading.Event()

    class Slow:
        def report(self) -> dict[str, Any]:
            gate.wait(5)
            return report(0)

    with opened(tmp_path / "h.sqlite3", max_queue=5, batch_size=1) as history:
        history.record(Slow())
        time.sleep(0.1)  # the writer is now folding the slow one
        started = time.perf_counter()
        for n in range(1, 20):
            history.record(report(n))
        elapsed = time.perf_counter() - started
        gate.set()
        history.flush()
        stats = history.stats()
    assert elapsed < 0.5
    assert stats["dropped"] == 14
    assert stats["written"] == 6


def test_a_malformed_report_is_counted_and_the_rest_written(tmp_path: Path) -> None:
    """A report without the documented keys is rejected alone; the batch goes on."""
    with opened(tmp_path / "h.sqlite3") as history:
        history.record(report(1))
        history.record({"operation": "broken"})
        history.record(report(2) | {"total_duration": float("nan")})
        history.record(report(3))
        history.flush()
        stats = history.stats()
        assert [r["trace_id"][-1] for r in history.query()] == ["1", "3"]
    assert stats["rejected"] == 2


def test_concurrent_writers_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    """Two services on one file (WAL, busy timeout): every report of both is written."""
    path = tmp_path / "h.sqlite3"
    script = (
        "import sys, time\n"
        "from ha_agent_tracing.reports._history import History\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from test_history import report\n"
        "h = History(sys.argv[1], flush_interval_s=0.01, batch_size=7)\n"
        "base = int(sys.argv[2])\n"
        "for n in range(base, base + 300):\n"
        "    h.record(report(n, at=1.8e9 + n))\n"
        "    if n % 50 == 0: time.sleep(0.01)\n"
        "assert h.close(30), 'not closed'\n"
        "assert h.stats()['written'] == 300, h.stats()\n"
    )
    import sys

    here = str(Path(__file__).parent)
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(base), here]) for base in (0, 10_000)
    ]
    with opened(path) as history:  # and a third writer in this process
        for n in range(20_000, 20_100):
            history.record(report(n, at=NOW + n))
    assert [p.wait(60) for p in processes] == [0, 0]
    found = HistoryReader(path).query()
    assert len(found) == 700
    assert len({r["trace_id"] for r in found}) == 700


def test_queries_read_while_the_writer_writes(tmp_path: Path) -> None:
    """A reader never sees a report without its metrics (each batch is one transaction)."""
    path = tmp_path / "h.sqlite3"
    with opened(path, batch_size=50) as history:
        history.record(report(0))
        history.flush()
        stop = threading.Event()
        seen: list[tuple[int, int]] = []

        def read() -> None:
            while not stop.is_set():
                rows = history.rows()
                seen.append((len(rows), sum(len(row.metrics()) for row in rows)))

        reader = threading.Thread(target=read)
        reader.start()
        for n in range(1, 500):
            history.record(report(n))
        history.flush()
        stop.set()
        reader.join()
    assert seen and all(metrics == 5 * reports for reports, metrics in seen)


def test_where_history_lives(tmp_path: Path) -> None:
    """Default under XDG_STATE_HOME (a relative one is ignored), a directory gets history.sqlite3, off is off."""
    home = Path.home()
    assert history_file(None, str(tmp_path)) == tmp_path / "ha-agent-tracing" / "history.sqlite3"
    assert history_file(None, None) == home / ".local/state/ha-agent-tracing/history.sqlite3"
    assert history_file(None, "relative/state") == home / ".local/state/ha-agent-tracing/history.sqlite3"
    assert history_file(str(tmp_path), None) == tmp_path / "history.sqlite3"
    assert history_file(str(tmp_path / "new") + "/", None) == tmp_path / "new" / "history.sqlite3"
    assert history_file(str(tmp_path / "mine.db"), None) == tmp_path / "mine.db"
    assert history_file("off", str(tmp_path)) is None
    assert load_config({"HA_AGENT_TRACING_HISTORY_PATH": "OFF"}).history_path is None
    assert load_config({"XDG_STATE_HOME": str(tmp_path)}).history_path == (
        tmp_path / "ha-agent-tracing" / "history.sqlite3"
    )


class Folding:
    """An entry as the store's listeners get it: folded on demand, late spans may still change it."""

    def __init__(self, content: dict[str, Any]) -> None:
        self.content = content
        self.folds = 0

    def report(self) -> dict[str, Any]:
        self.folds += 1
        return self.content


def test_late_spans_after_the_write_are_folded_in_once_they_settle(tmp_path: Path) -> None:
    """An entry is written at once and folded again settle_s later; a changed report replaces its row."""
    entry = Folding(report(1, total=100.0))
    unchanged = Folding(report(2))
    with opened(tmp_path / "h.sqlite3", settle_s=0.3) as history:
        history.record(entry)
        history.record(unchanged)
        history.flush()
        assert history.get(f"{1:032x}")["total_duration"] == 100.0  # type: ignore[index]
        late = report(1, total=150.0)
        late["metrics"].append({"name": "background_save", "duration": 40.0, "metadata": {}, "status": "ok"})
        entry.content = late
        deadline = time.monotonic() + 5
        while history.get(f"{1:032x}")["total_duration"] != 150.0 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
        written = history.stats()["written"]
        assert history.get(f"{1:032x}") == late
        rows = history.rows()
    assert sorted(len(row.metrics()) for row in rows) == [5, 6]
    assert (entry.folds, unchanged.folds) == (2, 2)
    assert written == 3, "the unchanged report was not written twice"


def test_a_late_span_of_a_real_request_reaches_the_history(tmp_path: Path) -> None:
    """Real SDK spans: a tracked span ending after its root is in the history's row of that request."""
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from ha_agent_tracing import TRACER_NAME, ReportProcessor, ReportStore

    provider = TracerProvider(shutdown_on_exit=False)
    store = ReportStore()
    provider.add_span_processor(ReportProcessor(store, late_span_window_s=2.0))
    tracer = provider.get_tracer(TRACER_NAME)
    with opened(tmp_path / "h.sqlite3", settle_s=0.5) as history:
        store.add_listener(history.record)
        root = tracer.start_span("POST /api/v1/chat", kind=SpanKind.SERVER)
        context = otel_trace.set_span_in_context(root)
        tracer.start_span("rate_limit_check", context=context).end()
        late = tracer.start_span("background_save", context=context)
        root.end()
        history.flush()
        trace_id = f"{root.get_span_context().trace_id:032x}"
        first = history.get(trace_id)
        late.end()
        deadline = time.monotonic() + 5
        while len(history.get(trace_id)["metrics"]) < 2 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
        final = history.get(trace_id)
    provider.shutdown()
    assert first is not None and [m["name"] for m in first["metrics"]] == ["rate_limit_check"]
    assert final is not None and [m["name"] for m in final["metrics"]] == [
        "rate_limit_check",
        "background_save",
    ]


def test_the_writer_outlives_a_bug_in_a_report_it_folds(tmp_path: Path) -> None:
    """A report whose folding raises something unexpected is counted; later reports are still written."""

    class Broken:
        def report(self) -> dict[str, Any]:
            raise RuntimeError("a bug in folding")

    with opened(tmp_path / "h.sqlite3") as history:
        history.record(Broken())
        history.record(report(1))
        assert history.flush()
        found = history.query()
        errors = history.stats()["internal_errors"]
    assert [r["trace_id"][-1] for r in found] == ["1"]
    assert errors == 1


def test_a_path_history_cannot_use_is_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A path below a regular file (or with a NUL byte) cannot hold a database: one warning, no crash."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for path in (blocker / "history.sqlite3", tmp_path / "nul\x00.sqlite3"):
        with opened(path) as history:
            history.record(report(1))
            assert history.flush()
            assert history.state == "unavailable"
    assert sum("unavailable" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 2


def test_the_history_benchmark_runs() -> None:
    """The smoke run of benchmarks/history.py prints every row of its table (no timing is asserted)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "history.py"
    done = subprocess.run(
        [sys.executable, str(script), "--days", "1", "--per-day", "300", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for row in ("`record()`", "written to SQLite", "each metric, 1 days", "per hour", "trace id"):
        assert row in done.stdout, row


def test_a_burst_of_reports_wakes_the_writer_once_not_per_report(tmp_path: Path) -> None:
    """record() is the request's side: while a batch gathers it appends without waking the writer."""
    history = History(tmp_path / "h.sqlite3", flush_interval_s=0.5)
    try:
        wakes = 0
        real_set = history._wake.set

        def counting_set() -> None:
            nonlocal wakes
            wakes += 1
            real_set()

        history._wake.set = counting_set  # type: ignore[method-assign]
        history.record(report(0))
        deadline = time.monotonic() + 5
        while not history._collecting and time.monotonic() < deadline:  # the writer took the first one
            time.sleep(0.01)
        for n in range(1, 100):
            history.record(report(n))
        assert wakes == 1
        assert history.flush()
        assert history.stats()["written"] == 100
    finally:
        history.close()


def test_a_settled_report_that_did_not_change_is_not_encoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second look at a written entry compares the report object it folds to, not its JSON."""
    from ha_agent_tracing.reports import _history

    encoded: list[Any] = []
    real_dumps = json.dumps

    def counting_dumps(value: Any, **options: Any) -> str:
        encoded.append(value)
        return real_dumps(value, **options)

    monkeypatch.setattr(_history.json, "dumps", counting_dumps)
    unchanged = Folding(report(2))
    with opened(tmp_path / "h.sqlite3", settle_s=0.1) as history:
        history.record(unchanged)
        history.flush()
        deadline = time.monotonic() + 5
        while unchanged.folds < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        history.flush()
        reports_encoded = [value for value in encoded if isinstance(value, dict) and "operation" in value]
    assert unchanged.folds == 2
    assert len(reports_encoded) == 1
