"""Plain text of comparisons and insights, for the terminal and the README."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ha_agent_tracing.analysis._compare import Comparison, MeasureComparison, RatioJSON
from ha_agent_tracing.analysis._insights import OperationInsights

__all__ = ["format_p", "render_comparison", "render_insights", "table"]


def table(rows: list[list[str]]) -> str:
    """Columns aligned: the first left, the rest right; a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_p(p: float | None) -> str:
    """A p-value as people read it: ``<0.001`` below a thousandth."""
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _ratio(ratio: RatioJSON) -> str:
    if ratio["low"] is None or ratio["high"] is None:
        return f"{ratio['estimate']:.2f} [-]"
    return f"{ratio['estimate']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"


def _verdict(measure: MeasureComparison) -> str:
    verdict = measure["verdict"]
    detectable = measure["detectable_change"]
    if detectable is None:
        return verdict
    if detectable >= 1:
        return f"{verdict} (interval too wide to detect less than x2)"
    return f"{verdict} (could detect ±{detectable * 100:.0f} %)"


def render_comparison(comparison: Comparison, label_a: str, label_b: str) -> str:
    """One table per operation: n, p50, p95 of each side, the ratios B/A with intervals, p, verdict."""
    confidence = round((1 - comparison["alpha"]) * 100)
    unit = comparison["unit"]
    out: list[str] = [
        f"A = {label_a}",
        f"B = {label_b}",
        f"B/A: ratio of B to A (below 1: B is faster), [{confidence} % bootstrap interval, "
        f"{comparison['resamples']} resamples of whole {unit}s]; p: Mann-Whitney U, one value per {unit}",
    ]
    if not comparison["operations"]:
        out.append("\nno operation appears in both sets")
    for operation, data in comparison["operations"].items():
        out.append(f"\n{operation}: {data['reports_a']} reports in A, {data['reports_b']} in B\n")
        rows = [
            ["measure", "n A", "n B", "p50 A ms", "p50 B ms", "p50 B/A", "p95 A ms", "p95 B ms", "p95 B/A"]
        ]
        rows[0] += ["p", "verdict"]
        notes: dict[str, list[str]] = {}
        for measure in data["measures"]:
            name = measure["name"] + (" (total)" if measure is data["measures"][0] else "")
            rows.append(
                [
                    name,
                    str(measure["n_a"]),
                    str(measure["n_b"]),
                    f"{measure['p50_a']:.2f}",
                    f"{measure['p50_b']:.2f}",
                    _ratio(measure["median_ratio"]),
                    f"{measure['p95_a']:.2f}",
                    f"{measure['p95_b']:.2f}",
                    _ratio(measure["p95_ratio"]),
                    format_p(measure["p_value"]),
                    _verdict(measure),
                ]
            )
            for note in measure["notes"]:
                notes.setdefault(note, []).append(measure["name"])
        out.append(table(rows))
        for side, names in data["only_in"].items():
            if names:
                out.append(f"only in {side.upper()}: {', '.join(names)}")
        for note, names in notes.items():
            which = "every measure" if len(names) == len(data["measures"]) else ", ".join(names)
            out.append(f"note ({which}): {note}")
    for side, names in comparison["only_in"].items():
        if names:
            out.append(f"\noperations only in {side.upper()}: {', '.join(names)}")
    return "\n".join(out)


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def _merged_steps(path: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The path without steps under 0.1 ms, neighbours of one name joined again."""
    merged: list[dict[str, Any]] = []
    for step in path:
        if step["ms"] < 0.1:
            continue
        if merged and merged[-1]["name"] == step["name"]:
            merged[-1] = {"name": step["name"], "ms": merged[-1]["ms"] + step["ms"]}
        else:
            merged.append(dict(step))
    return merged


def render_insights(insights: Mapping[str, OperationInsights], label: str) -> str:
    """What ``analyze`` prints: per operation, the bottleneck, shares, and each finding with trace ids."""
    out: list[str] = [f"Reports: {label}"]
    for operation, found in insights.items():
        out.append(
            f"\n{operation}: {found['requests']} requests, "
            f"p50 {found['p50_ms']:.1f} ms, p95 {found['p95_ms']:.1f} ms"
        )
        bottleneck = found["bottleneck"]
        if bottleneck is not None:
            out.append(
                f"bottleneck: {bottleneck['name']} — {_pct(bottleneck['share_p50'])} of the critical path "
                f"of a typical request (p50), {_pct(bottleneck['share_p95'])} of the slow ones (p95)"
            )
        out.append("\nshare of the critical path (what decided the latency; concurrent calls count once)\n")
        rows = [["metric", "share p50", "ms p50", "share p95", "ms p95"]]
        rows.extend(
            [
                s["name"],
                _pct(s["share_p50"]),
                f"{s['ms_p50']:.1f}",
                _pct(s["share_p95"]),
                f"{s['ms_p95']:.1f}",
            ]
            for s in found["shares"]
        )
        out.append(table(rows))
        paths = found["critical_paths"]
        if paths:
            out.append("\ncritical path of the slowest requests (ms; steps under 0.1 ms left out)")
            for row in paths:
                steps = " → ".join(f"{s['name']} {s['ms']:.1f}" for s in _merged_steps(row["path"]))
                out.append(f"  {row['trace_id']}  {row['total_duration']:.1f} ms: {steps}")
        concurrency = found["concurrency"]
        if concurrency["requests_with_concurrency"]:
            out.append(
                f"\nconcurrency saved {concurrency['saved_ms_per_request']:.1f} ms per request on average "
                f"({_pct(concurrency['saved_share'])} of the total time; "
                f"{concurrency['requests_with_concurrency']} requests ran "
                f"{', '.join(concurrency['metrics'])} side by side); "
                f"most in {', '.join(map(str, concurrency['trace_ids']))}"
            )
        else:
            out.append("\nconcurrency: no metrics ran side by side")
        for entry in found["cache"]:
            timing = ""
            if entry["hit_ms_p50"] is not None and entry["miss_ms_p50"] is not None:
                timing = (
                    f"; p50 {entry['hit_ms_p50']:.2f} ms on a hit, {entry['miss_ms_p50']:.2f} ms on a miss"
                )
            misses = f"; misses in {', '.join(map(str, entry['trace_ids']))}" if entry["trace_ids"] else ""
            out.append(
                f"cache: {entry['name']} hit {entry['hits']} of {entry['hits'] + entry['misses']} "
                f"({_pct(entry['hit_rate'])}){timing}{misses}"
            )
        repeated = found["repeated_tool_calls"]
        if repeated:
            out.append(f"repeated tool calls within a request: {len(repeated)}")
            for row in repeated[:5]:
                out.append(
                    f"  {row['trace_id']}  {row['tool']} x{row['calls']} (same {row['same']}), "
                    f"{row['repeat_ms']:.1f} ms in the repeats"
                )
        else:
            out.append("repeated tool calls within a request: none")
        if found["top_token_turns"]:
            out.append("turns with the most tokens")
            for row in found["top_token_turns"]:
                out.append(
                    f"  {row['trace_id']}  {row['name']} #{row['iteration']}: {row['tokens']} tokens "
                    f"({row['prompt_tokens']} in, {row['completion_tokens']} out), {row['duration']:.1f} ms"
                )
        out.extend(f"note: {note}" for note in found["notes"])
    return "\n".join(out)
