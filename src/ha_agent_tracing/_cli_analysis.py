"""``ha-agent-tracing compare`` and ``analyze``: the command-line side of ``analysis``.

Each command is two small functions, one that declares its arguments and one
that runs it, so ``_cli.py`` only wires them in. Exit codes: 0 done, 1 the
``--fail-if-slower`` gate failed, 2 bad arguments or a source that cannot be
read (the message names the source and the problem).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, TextIO

__all__ = ["add_analyze", "add_compare", "bottleneck_line", "parse_percent", "run_analyze", "run_compare"]

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_percent(text: str) -> float:
    """``"10%"`` (or ``"10"``) as the fraction 0.10; argparse reports a ``ValueError`` as usage."""
    match = _PERCENT.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 10%, not {text!r}")
    return float(match.group(1)) / 100


def _sources_help() -> str:
    return (
        "a source: an export file (GET /api/v1/performance/export), history#FILTERS, or "
        "jaeger:URL#FILTERS; filters after # as key=value joined by &: operation, version, "
        "variant, since, until, service, limit"
    )


def add_compare(commands: Any) -> None:
    """Declare ``compare A B``."""
    cmd = commands.add_parser(
        "compare",
        help="compare two sets of reports: ratios with intervals, a significance test, a verdict",
        description="Compare report set B with report set A, per operation: the total and each metric.",
    )
    cmd.add_argument("a", metavar="A", help="the baseline: " + _sources_help())
    cmd.add_argument("b", metavar="B", help="the candidate, as A")
    cmd.add_argument("--operation", action="append", help="compare only this operation (repeatable)")
    cmd.add_argument(
        "--unit",
        choices=["request", "conversation"],
        default="request",
        help="what is resampled and tested: whole requests (default) or whole conversations",
    )
    cmd.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    cmd.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    cmd.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0: reproducible)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.add_argument(
        "--fail-if-slower",
        type=parse_percent,
        metavar="PCT",
        help="exit 1 when an operation's total is significantly slower by at least PCT (e.g. 10%%)",
    )


def _loaders() -> dict[str, Any]:
    return {}


def run_compare(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``compare``; prints a table (or JSON) and applies the gate."""
    from ha_agent_tracing.analysis import (
        ReportSetError,
        compare_reports,
        load_report_set,
        render_comparison,
        slower_than,
    )

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        set_a = load_report_set(args.a, _loaders())
        set_b = load_report_set(args.b, _loaders())
    except ReportSetError as exc:
        print(f"compare: {exc}", file=err)
        return 2
    for side, chosen in (("A", set_a), ("B", set_b)):
        if not chosen.reports:
            print(f"compare: {chosen.label}: no reports match (side {side})", file=err)
            return 2
    try:
        comparison = compare_reports(
            set_a.reports,
            set_b.reports,
            operations=args.operation,
            unit=args.unit,
            alpha=args.alpha,
            resamples=args.resamples,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"compare: {exc}", file=err)
        return 2
    if args.json:
        document = {"a": set_a.label, "b": set_b.label, **comparison}
        print(json.dumps(document, indent=2), file=out)
    else:
        print(render_comparison(comparison, _describe(set_a), _describe(set_b)), file=out)
    if args.fail_if_slower is None:
        return 0
    failed = slower_than(comparison, args.fail_if_slower)
    limit = f"{args.fail_if_slower * 100:g} %"
    for operation, ratio in failed:
        print(f"compare: {operation} is slower in B: median x{ratio:.2f} (gate: {limit})", file=err)
    if not failed and not args.json:
        print(f"\ngate passed: no operation significantly slower by {limit} or more", file=out)
    return 1 if failed else 0


def _describe(chosen: Any) -> str:
    return f"{chosen.label} ({len(chosen.reports)} reports)"


def add_analyze(commands: Any) -> None:
    """Declare ``analyze SOURCE``."""
    cmd = commands.add_parser(
        "analyze",
        help="where the time goes: critical paths, bottleneck, concurrency, cache, repeats, tokens",
        description="Insights for a set of reports, each finding with the trace ids to open.",
    )
    cmd.add_argument("source", metavar="SOURCE", help=_sources_help())
    cmd.add_argument("--operation", action="append", help="analyze only this operation (repeatable)")
    cmd.add_argument("--top", type=int, default=5, help="slowest requests and token-heaviest turns listed")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_analyze(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``analyze``."""
    from ha_agent_tracing.analysis import ReportSetError, analyze_reports, load_report_set, render_insights

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        chosen = load_report_set(args.source, _loaders())
    except ReportSetError as exc:
        print(f"analyze: {exc}", file=err)
        return 2
    if not chosen.reports:
        print(f"analyze: {chosen.label}: no reports match", file=err)
        return 2
    try:
        insights = analyze_reports(chosen.reports, operations=args.operation, top=args.top)
    except ValueError as exc:
        print(f"analyze: {exc}", file=err)
        return 2
    if args.json:
        print(json.dumps({"source": chosen.label, "operations": insights}, indent=2), file=out)
    else:
        print(render_insights(insights, _describe(chosen)), file=out)
    return 0


def bottleneck_line(reports: list[dict[str, Any]]) -> str:
    """One line for the demo: what decided the latency of these requests (``analyze``'s bottleneck)."""
    from ha_agent_tracing.analysis import analyze_reports

    if not reports:
        return "  bottleneck: no reports"
    found = next(iter(analyze_reports(reports, top=0).values()))
    bottleneck = found["bottleneck"]
    if bottleneck is None:
        return "  bottleneck: no metrics on the critical path"
    saved = found["concurrency"]["saved_ms_per_request"]
    return (
        f"  bottleneck (ha-agent-tracing analyze): {bottleneck['name']}, "
        f"{bottleneck['share_p50'] * 100:.0f} % of a typical request's critical path, "
        f"{bottleneck['share_p95'] * 100:.0f} % of the slowest; concurrency saved "
        f"{saved:.1f} ms per request"
    )
