"""The report store: bounds, replacement, queries and summaries."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from ha_agent_tracing import ReportStore, summarize
from ha_agent_tracing.analysis import percentile


def report(
    n: int, operation: str = "chat_request", total: float = 1.0, metrics: tuple[tuple[str, float], ...] = ()
) -> dict[str, Any]:
    return {
        "operation": operation,
        "total_duration": total,
        "timestamp": float(n),
        "metrics": [{"name": name, "duration": d, "metadata": {}} for name, d in metrics],
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
    }


def test_keeps_only_the_newest_reports() -> None:
    """The store holds max_reports reports and drops the oldest first."""
    store = ReportStore(max_reports=3)
    for n in range(5):
        store.put(report(n))
    assert [r["timestamp"] for r in store.reports()] == [2.0, 3.0, 4.0]
    assert store.dropped == 2


def test_default_size_is_the_reference_documents_100() -> None:
    """'Reports are kept in memory (last 100 reports by default)'."""
    store = ReportStore()
    for n in range(150):
        store.put(report(n))
    assert len(store) == 100
    assert store.reports()[0]["timestamp"] == 50.0


def test_a_newer_version_replaces_in_place_and_an_older_one_never_wins() -> None:
    """Late spans replace a report without moving it; a stale version is ignored."""
    store = ReportStore()
    store.put(report(1))
    store.put(report(2))
    assert store.put(report(1, total=5.0), version=2)
    assert not store.put(report(1, total=3.0), version=1)
    assert [(r["timestamp"], r["total_duration"]) for r in store.reports()] == [(1.0, 5.0), (2.0, 1.0)]
    assert store.put(report(1, total=6.0), version=2), "the same version again is a newer state: it replaces"
    assert [r["total_duration"] for r in store.reports()] == [6.0, 1.0]


def test_queries_filter_limit_and_return_copies() -> None:
    """operation filters, limit keeps the newest, and mutating a result changes nothing stored."""
    store = ReportStore()
    for n in range(6):
        store.put(report(n, operation="a" if n % 2 else "b"))
    assert [r["timestamp"] for r in store.reports(operation="a")] == [1.0, 3.0, 5.0]
    assert [r["timestamp"] for r in store.reports(limit=2)] == [4.0, 5.0]
    assert store.reports(limit=0) == []
    store.reports()[0]["operation"] = "changed"
    assert store.reports()[0]["operation"] == "b"
    assert store.get(f"{3:032X}")["timestamp"] == 3.0  # type: ignore[index]
    assert store.get("f" * 32) is None
    assert store.operations() == ["b", "a"]
    with pytest.raises(ValueError, match="limit"):
        store.reports(limit=-1)


def test_get_returns_the_earliest_root_of_a_trace() -> None:
    """Two reports of one trace: get() answers with the one whose root started first, not the first put."""
    store = ReportStore()
    later = report(1) | {"span_id": f"{2:016x}", "timestamp": 20.0, "operation": "later"}
    earlier = report(1) | {"span_id": f"{3:016x}", "timestamp": 10.0, "operation": "earlier"}
    store.put(later)
    store.put(earlier)
    found = store.get(f"{1:032x}")
    assert found is not None and found["operation"] == "earlier"


def test_reads_copy_every_dict_and_list_but_not_by_deepcopy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutating a read's metric, metadata or list value leaves the store untouched; no deepcopy is used."""
    import copy

    def no_deepcopy(*args: object, **kwargs: object) -> None:
        raise AssertionError("deepcopy on a read")

    monkeypatch.setattr(copy, "deepcopy", no_deepcopy)
    store = ReportStore()
    held = report(1, metrics=(("m", 2.0),))
    held["metrics"][0]["metadata"] = {"tags": ["a"], "n": 1}
    store.put(held)
    (first,) = store.reports()
    first["metrics"][0]["metadata"]["tags"].append("b")
    first["metrics"][0]["metadata"]["n"] = 2
    first["metrics"][0]["name"] = "changed"
    first["metrics"].append(first["metrics"][0])
    again = store.get(f"{1:032x}")
    assert again is not None
    assert again["metrics"] == [{"name": "m", "duration": 2.0, "metadata": {"tags": ["a"], "n": 1}}]


def test_export_is_a_json_array_of_the_reports() -> None:
    """export() round-trips through JSON."""
    store = ReportStore()
    store.put(report(1, metrics=(("m", 2.0),)))
    assert json.loads(store.export()) == store.reports()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", True])
def test_invalid_size_raises(bad: object) -> None:
    """A store size that is not a positive whole number is rejected."""
    with pytest.raises(ValueError, match="max_reports"):
        ReportStore(max_reports=bad)  # type: ignore[arg-type]


def test_percentiles_interpolate_between_ranks() -> None:
    """p50 of 1..100 is 50.5; p99 is 99.01; one value is every percentile; order does not matter."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)  # 3 + 0.85 * (4 - 3)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summary_per_operation_and_metric() -> None:
    """count, mean, p50, p95, p99 and max of totals and of each metric name."""
    reports = [
        report(n, total=float(n), metrics=(("openai_api_call", float(n)), ("openai_api_call", 1.0)))
        for n in range(1, 11)
    ]
    reports.append(report(99, operation="other", total=3.0))
    summary = summarize(reports)
    assert set(summary) == {"chat_request", "other"}
    chat = summary["chat_request"]
    assert chat["count"] == 10
    assert chat["total_duration"]["mean"] == pytest.approx(5.5)
    assert chat["total_duration"]["p50"] == pytest.approx(5.5)
    assert chat["total_duration"]["max"] == 10.0
    calls = chat["metrics"]["openai_api_call"]
    assert calls["count"] == 20
    # Twenty durations: eleven 1.0, then 2.0 .. 10.0. Rank 0.95 * 19 = 18.05 lies between
    # the 19th (9.0) and 20th (10.0) values: 9.0 + 0.05 * 1.0.
    assert calls["p95"] == pytest.approx(9.05)
    assert calls["p50"] == pytest.approx(1.0)
    assert calls["max"] == 10.0
    assert summary["other"]["metrics"] == {}


def test_concurrent_writers_and_readers() -> None:
    """Many threads putting and reading at once never lose the bound or raise."""
    store = ReportStore(max_reports=50)
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for n in range(200):
                store.put(report(base * 1000 + n))
                store.summary()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 50
    assert store.dropped == 8 * 200 - 50
