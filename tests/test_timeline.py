"""Queries over time: parsing bounds and buckets, per-bucket percentiles, memory and history merged."""

from __future__ import annotations

import json

import pytest

from ha_agent_tracing import ReportStore
from ha_agent_tracing.analysis import ReportQueries, parse_bucket, summarize_rows, timeline
from ha_agent_tracing.reports._history import ReportRow, pack_durations, rows_of

from .test_history import report


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("90", 90.0), ("2H", 7200.0)],
)
def test_bucket_widths(raw: str, seconds: float) -> None:
    """Seconds, minutes, hours, days."""
    assert parse_bucket(raw) == seconds


@pytest.mark.parametrize("raw", ["5 parsecs", "m", "-5m", "0.5s", ""])
def test_a_bad_bucket_is_a_clear_error(raw: str) -> None:
    """Nonsense, negative or sub-second widths are refused."""
    with pytest.raises(ValueError, match="bucket"):
        parse_bucket(raw)


def rows(
    totals: list[tuple[float, float, str]], metrics: list[tuple[float, str, float, bool]]
) -> list[ReportRow]:
    """Rows of reports (start, total, status); each metric (start, name, ms, failed) joins the report started then."""
    found = []
    for n, (t, total, status) in enumerate(totals):
        mine = [(name, d, failed) for at, name, d, failed in metrics if at == t]
        found.append(
            ReportRow(
                f"{n:032x}", f"{n:016x}", "chat_request", t, total, status, 0, 10, 2, None, None,
                json.dumps([name for name, _, _ in mine]),
                pack_durations([d for _, d, _ in mine]),
                bytes(failed for _, _, failed in mine),
            )
        )  # fmt: skip
    return found


def test_the_timeline_per_bucket_by_hand() -> None:
    """Two 5-minute buckets; percentiles by linear interpolation between ranks, errors counted per cell."""
    found = rows(
        [
            (0.0, 10.0, "ok"),
            (100.0, 20.0, "error"),
            (299.0, 30.0, "ok"),
            (300.0, 40.0, "ok"),
            (301.0, 50.0, "ok"),
        ],
        [
            (0.0, "model", 1.0, False),
            (100.0, "model", 2.0, True),
            (299.0, "model", 3.0, False),
            (300.0, "model", 4.0, True),
        ],
    )
    result = timeline(found, since=0.0, until=600.0, bucket_s=300.0)
    first, second = result["buckets"]
    assert (first["start"], first["requests"], first["errors"]) == (0.0, 3, 1)
    # [10, 20, 30]: p50 = 20, p95 = 20 + 0.95 * 2 * 10 - 10 = 29, p99 = 29.8
    assert first["total"] == {"count": 3, "p50": 20.0, "p95": 29.0, "p99": pytest.approx(29.8), "errors": 1}
    assert first["metrics"]["model"] == {
        "count": 3,
        "p50": 2.0,
        "p95": 2.9,
        "p99": pytest.approx(2.98),
        "errors": 1,
    }
    assert (first["input_tokens"], first["output_tokens"]) == (30, 6)
    assert second["start"] == 300.0
    assert second["total"]["p50"] == 45.0
    assert second["metrics"]["model"] == {"count": 1, "p50": 4.0, "p95": 4.0, "p99": 4.0, "errors": 1}
    overall = result["overall"]
    assert overall["requests"] == 5 and overall["errors"] == 1
    assert overall["total"]["p50"] == 30.0
    assert overall["metrics"]["model"]["count"] == 4 and overall["metrics"]["model"]["errors"] == 2


def test_empty_buckets_are_left_out_and_too_many_refused() -> None:
    """Only buckets with requests appear; a range of more than 10 000 buckets is a ValueError."""
    found = rows([(0.0, 1.0, "ok"), (3600.0, 2.0, "ok")], [])
    result = timeline(found, 0.0, 7200.0, 60.0)
    assert [b["start"] for b in result["buckets"]] == [0.0, 3600.0]
    with pytest.raises(ValueError, match="buckets"):
        timeline(found, 0.0, 7 * 86400.0, 30.0)
    with pytest.raises(ValueError, match="before"):
        timeline(found, 10.0, 0.0, 60.0)


def test_summary_rows_have_the_store_summary_shape() -> None:
    """The same numbers as the in-memory store's summary, from rows."""
    reports = [report(n, at=float(n), total=float(10 * (n + 1))) for n in range(7)]
    store = ReportStore()
    for r in reports:
        store.put(r)
    assert rounded(summarize_rows(rows_of(reports))) == rounded(store.summary())


def rounded(value: object) -> object:
    """Numbers to 9 places, recursively (sums may differ in the last bit)."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, 9) if isinstance(value, float) else value


def test_memory_and_history_merge_without_duplicates(tmp_path: object) -> None:
    """Without history the store answers alone; limit keeps the newest; ranges are half-open."""
    store = ReportStore()
    for n in range(5):
        store.put(report(n, at=100.0 + n))
    queries = ReportQueries(store, None)
    assert [r["timestamp"] for r in queries.reports(since=101.0, until=103.0)] == [101.0, 102.0]
    assert [r["timestamp"] for r in queries.reports(limit=2)] == [103.0, 104.0]
    assert queries.reports(limit=0) == []
    store.put(report(9, at=99.0, total=500.0))
    assert [r["total_duration"] for r in queries.reports(slowest=True, limit=2)] == [500.0, 100.0]
    assert queries.get(f"{3:032x}") is not None
    found = queries.rows(since=103.0)
    assert [len(row.metrics()) for row in found] == [5, 5]
