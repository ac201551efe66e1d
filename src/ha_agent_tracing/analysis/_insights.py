"""Where the time of a set of requests goes, and what to look at first.

::

    from ha_agent_tracing.analysis import analyze_reports

    found = analyze_reports(reports)                  # report dicts of one or more operations
    print(found["chat_request"]["bottleneck"])        # {"name": "openai_api_call", "share_p50": 0.81, ...}

For each request, the **critical path**: walking back from the end of the
request, the metric that ended last decided when its parent could go on, so
its time counts; a tool call that ran beside a longer one does not. Time on the
path inside no metric is ``(untracked)`` (framework, serialisation). From the
paths, each metric's **share** of the typical request (totals between the
40th and 60th percentile, around p50) and of the slow tail (at or above the
90th percentile, what p95 is made of). Then **concurrency** (what running
sibling metrics side by side saved), **cache hits** (every metric with a
``cache_hit`` flag), **repeated tool calls** within one request, and the
**turns with the most tokens**. Every finding carries the trace ids to open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ha_agent_tracing.analysis._percentiles import percentiles

__all__ = ["UNTRACKED", "OperationInsights", "analyze_reports", "critical_path"]

UNTRACKED = "(untracked)"
"""Time on a request's critical path inside none of its metrics."""

_EPS_MS = 1e-6
_EXAMPLES = 3


@dataclass
class _Node:
    name: str
    start: float
    end: float
    span_id: str | None
    children: list[_Node] = field(default_factory=list["_Node"])


def _tree(report: Mapping[str, Any]) -> _Node:
    """The report's metrics as a tree under a root node spanning the request."""
    root = _Node(UNTRACKED, 0.0, float(report["total_duration"]), None)
    nodes: list[tuple[_Node, str | None]] = []
    by_id: dict[str, _Node] = {}
    for metric in report["metrics"]:
        start = float(metric.get("start_offset") or 0.0)
        node = _Node(metric["name"], start, start + float(metric["duration"]), metric.get("span_id"))
        if node.span_id:
            by_id[node.span_id] = node
        nodes.append((node, metric.get("parent_span_id")))
    for node, parent_id in nodes:
        parent = by_id.get(parent_id) if parent_id else None
        (parent if parent is not None and parent is not node else root).children.append(node)
    return root


def _walk(node: _Node, start: float, end: float, path: list[tuple[str, float, str | None]]) -> None:
    """Append ``node``'s critical path within ``[start, end]``, latest segment first."""
    cursor = end
    candidates = sorted(node.children, key=lambda c: c.end, reverse=True)
    while True:
        child = next((c for c in candidates if c.end <= cursor + _EPS_MS and c.end > start), None)
        if child is None:
            break
        if cursor - child.end > _EPS_MS:
            path.append((node.name, cursor - child.end, node.span_id))
        child_start = max(child.start, start)
        _walk(child, child_start, min(child.end, cursor), path)
        cursor = child_start
        candidates = [c for c in candidates if c.end <= cursor + _EPS_MS and c is not child]
    if cursor - start > _EPS_MS:
        path.append((node.name, cursor - start, node.span_id))


def critical_path(report: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The request's critical path in time order: ``(metric name, ms)`` segments summing to its total."""
    root = _tree(report)
    path: list[tuple[str, float, str | None]] = []
    _walk(root, 0.0, root.end, path)
    merged: list[tuple[str, float]] = []
    for name, ms, _ in reversed(path):
        if merged and merged[-1][0] == name:
            merged[-1] = (name, merged[-1][1] + ms)
        else:
            merged.append((name, ms))
    return merged


def _concurrency_saved(node: _Node) -> tuple[float, set[str]]:
    """Sum over every level of (durations of siblings) - (time covered by them); the names that overlapped."""
    saved, names = 0.0, set[str]()
    spans = sorted(node.children, key=lambda c: c.start)
    covered = 0.0
    current_start: float | None = None
    current_end = 0.0
    for child in spans:
        if current_start is not None and child.start < current_end - _EPS_MS:
            names.add(child.name)
            names.update(c.name for c in spans if c.start < child.start and c.end > child.start + _EPS_MS)
        if current_start is None or child.start > current_end:
            if current_start is not None:
                covered += current_end - current_start
            current_start, current_end = child.start, child.end
        else:
            current_end = max(current_end, child.end)
    if current_start is not None:
        covered += current_end - current_start
    saved += sum(c.end - c.start for c in spans) - covered
    for child in spans:
        child_saved, child_names = _concurrency_saved(child)
        saved += child_saved
        names |= child_names
    return saved, names


class Share(TypedDict):
    """A metric's part of the critical path of typical (p50) and slow (p95) requests."""

    name: str
    share_p50: float
    share_p95: float
    ms_p50: float
    ms_p95: float


class OperationInsights(TypedDict):
    """The findings for one operation; every list of requests names their trace ids."""

    requests: int
    p50_ms: float
    p95_ms: float
    bottleneck: Share | None
    shares: list[Share]
    critical_paths: list[dict[str, Any]]
    concurrency: dict[str, Any]
    cache: list[dict[str, Any]]
    repeated_tool_calls: list[dict[str, Any]]
    top_token_turns: list[dict[str, Any]]
    notes: list[str]


def _tool_key(metadata: Mapping[str, Any]) -> tuple[str, str, str] | None:
    name = metadata.get("gen_ai.tool.name") or metadata.get("tool_name")
    if not isinstance(name, str):
        return None
    arguments = metadata.get("gen_ai.tool.call.arguments")
    if isinstance(arguments, str):
        return name, arguments, "arguments"
    length = metadata.get("arguments_length")
    return name, str(length), "argument length (arguments not captured)"


def _tokens(metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    """Input and output tokens of one model turn (a metric with an ``iteration`` or GenAI usage)."""
    if "iteration" not in metadata and "gen_ai.usage.input_tokens" not in metadata:
        return None  # a request's token summary, not a turn
    prompt = metadata.get("gen_ai.usage.input_tokens", metadata.get("prompt_tokens"))
    completion = metadata.get("gen_ai.usage.output_tokens", metadata.get("completion_tokens"))
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def _band_share(
    paths: list[dict[str, float]], totals: list[float], chosen: list[int]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per metric: share of the chosen requests' summed totals, and mean ms per request."""
    total = sum(totals[i] for i in chosen) or 1.0
    summed: dict[str, float] = {}
    for i in chosen:
        for name, ms in paths[i].items():
            summed[name] = summed.get(name, 0.0) + ms
    return {n: ms / total for n, ms in summed.items()}, {n: ms / len(chosen) for n, ms in summed.items()}


def _analyze(reports: Sequence[Mapping[str, Any]], top: int) -> OperationInsights:
    totals = [float(r["total_duration"]) for r in reports]
    p40, p50, p60, p90, p95 = percentiles(totals, (40, 50, 60, 90, 95))
    paths: list[dict[str, float]] = []
    path_rows: list[dict[str, Any]] = []
    for report in reports:
        path = critical_path(report)
        by_name: dict[str, float] = {}
        for name, ms in path:
            by_name[name] = by_name.get(name, 0.0) + ms
        paths.append(by_name)
        path_rows.append(
            {
                "trace_id": report.get("trace_id"),
                "total_duration": float(report["total_duration"]),
                "path": [{"name": n, "ms": ms} for n, ms in path],
            }
        )
    typical = [i for i, t in enumerate(totals) if p40 <= t <= p60] or [
        min(range(len(totals)), key=lambda i: abs(totals[i] - p50))
    ]
    tail = [i for i, t in enumerate(totals) if t >= p90] or [max(range(len(totals)), key=totals.__getitem__)]
    share50, ms50 = _band_share(paths, totals, typical)
    share95, ms95 = _band_share(paths, totals, tail)
    names = sorted(set(share50) | set(share95), key=lambda n: (-share50.get(n, 0.0), n))
    shares: list[Share] = [
        {
            "name": n,
            "share_p50": share50.get(n, 0.0),
            "share_p95": share95.get(n, 0.0),
            "ms_p50": ms50.get(n, 0.0),
            "ms_p95": ms95.get(n, 0.0),
        }
        for n in names
    ]
    bottleneck = next((s for s in shares if s["name"] != UNTRACKED), None)

    saved_rows = []
    overlapping: set[str] = set()
    for report in reports:
        saved, names_here = _concurrency_saved(_tree(report))
        overlapping |= names_here
        if saved > _EPS_MS:
            saved_rows.append((saved, report.get("trace_id")))
    saved_rows.sort(key=lambda row: row[0], reverse=True)
    saved_total = sum(s for s, _ in saved_rows)
    concurrency = {
        "requests_with_concurrency": len(saved_rows),
        "saved_ms_total": saved_total,
        "saved_ms_per_request": saved_total / len(reports),
        # How much longer the requests would take with everything run one after another.
        "saved_share": saved_total / (sum(totals) or 1.0),
        "metrics": sorted(overlapping),
        "trace_ids": [t for _, t in saved_rows[:_EXAMPLES]],
    }

    cache: dict[str, dict[str, Any]] = {}
    for report in reports:
        for metric in report["metrics"]:
            hit = metric.get("metadata", {}).get("cache_hit")
            if not isinstance(hit, bool):
                continue
            entry = cache.setdefault(
                metric["name"], {"name": metric["name"], "hits": 0, "misses": 0, "hit_ms": [], "miss_ms": []}
            )
            entry["hits" if hit else "misses"] += 1
            entry["hit_ms" if hit else "miss_ms"].append(float(metric["duration"]))
            if not hit:
                entry.setdefault("miss_trace_ids", [])
                if report.get("trace_id") not in entry["miss_trace_ids"]:
                    entry["miss_trace_ids"].append(report.get("trace_id"))
    cache_rows = []
    for entry in cache.values():
        hits, misses = entry["hits"], entry["misses"]
        cache_rows.append(
            {
                "name": entry["name"],
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / (hits + misses),
                "hit_ms_p50": percentiles(entry["hit_ms"], (50,))[0] if hits else None,
                "miss_ms_p50": percentiles(entry["miss_ms"], (50,))[0] if misses else None,
                "trace_ids": entry.get("miss_trace_ids", [])[:_EXAMPLES],
            }
        )

    repeated = []
    for report in reports:
        groups: dict[tuple[str, str], list[float]] = {}
        basis: dict[tuple[str, str], str] = {}
        for metric in report["metrics"]:
            key = _tool_key(metric.get("metadata", {}))
            if key is None:
                continue
            groups.setdefault(key[:2], []).append(float(metric["duration"]))
            basis[key[:2]] = key[2]
        for (tool, _), durations in groups.items():
            if len(durations) > 1:
                repeated.append(
                    {
                        "trace_id": report.get("trace_id"),
                        "tool": tool,
                        "calls": len(durations),
                        "repeat_ms": sum(sorted(durations)[:-1]),
                        "same": basis[(tool, _)],
                    }
                )
    repeated.sort(key=lambda row: row["repeat_ms"], reverse=True)

    turns = []
    for report in reports:
        for metric in report["metrics"]:
            tokens = _tokens(metric.get("metadata", {}))
            if tokens is None:
                continue
            turns.append(
                {
                    "trace_id": report.get("trace_id"),
                    "name": metric["name"],
                    "iteration": metric.get("metadata", {}).get("iteration"),
                    "prompt_tokens": tokens[0],
                    "completion_tokens": tokens[1],
                    "tokens": tokens[0] + tokens[1],
                    "duration": float(metric["duration"]),
                }
            )
    turns.sort(key=lambda row: row["tokens"], reverse=True)

    notes = []
    if len(reports) < 20:
        notes.append(f"only {len(reports)} requests: shares of p50 and p95 rest on few of them")
    slowest = sorted(path_rows, key=lambda row: row["total_duration"], reverse=True)
    return {
        "requests": len(reports),
        "p50_ms": p50,
        "p95_ms": p95,
        "bottleneck": bottleneck,
        "shares": shares,
        "critical_paths": slowest if top <= 0 else slowest[:top],
        "concurrency": concurrency,
        "cache": cache_rows,
        "repeated_tool_calls": repeated,
        "top_token_turns": turns[: max(top, 1)],
        "notes": notes,
    }


def analyze_reports(
    reports: Sequence[Mapping[str, Any]], *, operations: Sequence[str] | None = None, top: int = 5
) -> dict[str, OperationInsights]:
    """Insights per operation (each present one, or ``operations``); ``top`` caps the listed requests.

    ``critical_paths`` lists the ``top`` slowest requests' paths (all of them with ``top=0``).
    """
    names = list(dict.fromkeys(r["operation"] for r in reports))
    if operations is not None:
        missing = [op for op in operations if op not in names]
        if missing:
            raise ValueError(f"no reports of operation(s): {', '.join(missing)}")
        names = list(operations)
    return {op: _analyze([r for r in reports if r["operation"] == op], top) for op in names}
