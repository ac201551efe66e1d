"""Plain-text tables of comparisons, for the terminal and the README."""

from __future__ import annotations

from ha_agent_tracing.analysis._compare import Comparison, MeasureComparison, RatioJSON

__all__ = ["format_p", "render_comparison", "table"]


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
    return f"{verdict} (could detect ±{detectable * 100:.0f} %)" if detectable < 10 else f"{verdict} (wide)"


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
        notes: list[str] = []
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
            notes.extend(f"{measure['name']}: {note}" for note in measure["notes"])
        out.append(table(rows))
        for side, names in data["only_in"].items():
            if names:
                out.append(f"only in {side.upper()}: {', '.join(names)}")
        out.extend(f"note: {note}" for note in dict.fromkeys(notes))
    for side, names in comparison["only_in"].items():
        if names:
            out.append(f"\noperations only in {side.upper()}: {', '.join(names)}")
    return "\n".join(out)
