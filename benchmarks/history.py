"""The report history at size: 7 days of 10 000 chat reports a day (70 000 reports, 770 000 metrics).

Run: ``.venv/bin/python benchmarks/history.py`` (about a minute; ``--days 1 --per-day 1000``
for a smoke run). It writes the reports through :class:`History` as the service
does (one ``record()`` per report, batches on the writer thread), then times
the queries the API, the dashboard and the command line make, each the median
of ``--rounds`` rounds with the spread (min-max), in CPU time and wall time. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ha_agent_tracing.analysis import INSIGHTS_SAMPLE, ReportQueries, summarize_rows, timeline
from ha_agent_tracing.reports import History, HistoryReader, ReportStore

METRICS = (
    ("rate_limit_check", 0.02),
    ("conversation_management", 0.01),
    ("pending_preview_check", 0.01),
    ("context_refresh", 11.0),
    ("message_assembly", 12.0),
    ("openai_api_call", 450.0),
    ("tool_execution", 10.0),
    ("tool_execution", 12.0),
    ("openai_api_call", 380.0),
    ("token_count_retrieval", 0.02),
    ("background_save", 3.0),
)


def make_report(n: int, at: float, rng: random.Random) -> dict[str, Any]:
    metrics = []
    offset = 0.0
    for name, typical in METRICS:
        duration = typical * rng.lognormvariate(0, 0.4)
        metadata: dict[str, Any] = {}
        if name == "openai_api_call":
            metadata = {"gen_ai.usage.input_tokens": rng.randint(300, 1200), "gen_ai.usage.output_tokens": 40}
        metrics.append(
            {
                "name": name,
                "duration": duration,
                "metadata": metadata,
                "start_offset": offset,
                "parent": None,
                "span_id": f"{n * 16 + len(metrics):016x}",
                "status": "error" if rng.random() < 0.01 else "ok",
                "source": "server",
            }
        )
        offset += duration
    return {
        "operation": "chat_request",
        "total_duration": offset * 1.02,
        "timestamp": at,
        "metrics": metrics,
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "root_span": "POST /api/v1/chat",
        "status": "ok",
        "sampled": True,
    }


def timed(rounds: int, work: Callable[[], object]) -> tuple[list[float], list[float]]:
    """CPU and wall times of ``rounds`` runs, seconds.

    CPU time is what the query costs this process; on a machine shared with
    other work the wall time also holds the waits for a core.
    """
    cpu, wall = [], []
    for _ in range(rounds):
        started_cpu, started = time.process_time(), time.perf_counter()
        work()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return cpu, wall


def spread(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:,.0f} ms ({min(times) * 1000:,.0f}–{max(times) * 1000:,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(13)
    now = time.time()
    total = args.days * args.per_day
    span = args.days * 86400.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite3"
        history = History(path, retention_days=args.days + 1, max_bytes=4 * 1024**3, max_queue=total + 1)
        reports = [make_report(n, now - span + n * span / total, rng) for n in range(total)]
        record_started = time.perf_counter()
        for report in reports:
            history.record(report)
        record_s = time.perf_counter() - record_started
        written_started = time.perf_counter()
        assert history.flush(timeout_s=600), "the writer did not finish"
        write_s = time.perf_counter() - written_started + record_s
        assert history.stats()["written"] == total, history.stats()
        history.close()
        size_mb = path.stat().st_size / 1024**2
        reader = HistoryReader(path)
        since = now - span - 1
        queries = ReportQueries(ReportStore(), reader)  # the API's reads: memory (empty here) and history

        def percentiles_by_metric() -> object:
            return summarize_rows(reader.rows(since, now + 1))

        def hourly_timeline() -> object:
            return timeline(reader.rows(since, now + 1), since, now + 1, 3600.0)

        def last_day_5m() -> object:
            return timeline(reader.rows(now - 86400.0, now + 1), now - 86400.0, now + 1, 300.0)

        rows = [
            ("`record()` on the request's thread, per report", record_s / total * 1e6, None, "µs"),
            ("written to SQLite (WAL, batches of 500), reports per second", total / write_s, None, "/s"),
            ("file size", size_mb, None, "MB"),
        ]
        measured = [
            (f"p50/p95/p99 of the total and each metric, {args.days} days", percentiles_by_metric),
            (f"the same per hour ({args.days * 24} buckets)", hourly_timeline),
            ("the last day in 5-minute buckets", last_day_5m),
            (
                f"where the time goes, {args.days} days (an even sample of {INSIGHTS_SAMPLE})",
                lambda: queries.insights(since, now + 1, top=3),
            ),
            (
                f"where the time goes, the last day (an even sample of {INSIGHTS_SAMPLE})",
                lambda: queries.insights(now - 86400.0, now + 1, top=3),
            ),
            ("the newest 100 reports", lambda: reader.query(limit=100)),
            ("one report by trace id", lambda: reader.get(f"{total // 2:032x}")),
        ]
        print(f"{total} reports ({args.days} days × {args.per_day}), {total * len(METRICS)} metrics\n")
        print("| measured | CPU time, median (min–max) | wall time, median (min–max) |")
        print("| --- | --- | --- |")
        for what, value, _, unit in rows:
            print(f"| {what} | {value:,.1f} {unit} | |")
        for what, work in measured:
            cpu, wall = timed(args.rounds, work)
            print(f"| {what} | {spread(cpu)} | {spread(wall)} |")
        print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
