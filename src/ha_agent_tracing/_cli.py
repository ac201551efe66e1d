"""Command line: ``ha-agent-tracing serve``, ``demo``, ``compare``, ``analyze``, ``history``.

``serve`` runs the reference agent service with tracing configured from the
environment. ``demo`` starts the embedded model and the service on free
loopback ports, sends a realistic mix of chat messages over HTTP, and prints
where the time of a chat request goes, metric by metric. ``history`` reads
the report history file (no service needed): reports, summaries, one trace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ha_agent_tracing._cli_analysis import add_analyze, add_compare, bottleneck_line, run_analyze, run_compare
from ha_agent_tracing.analysis._render import table

__all__ = ["main"]

# Four conversations as a user would have them: tool calls, two tools in one
# turn, a failing tool, an automation draft and its confirmation, small talk.
DEMO_CONVERSATIONS: list[list[str]] = [
    [
        "Which lights are on?",
        "Turn off the kitchen light and tell me the temperature",
        "Turn on the living room light",
        "Thanks!",
    ],
    [
        "When the sun sets turn on the porch light",
        "confirm",
        "What's the status of everything?",
        "Turn on the garage light",
    ],
    [
        "Is it cold outside?",
        "Switch on the coffee maker and turn on the office fan",
        "Lock the front door",
        "Turn off the bedroom light",
    ],
    [
        "Hello there",
        "Open the garage door",
        "Which lights are on?",
        "Turn off the porch light and what's the temperature",
    ],
]


def metric_table(summary: dict[str, Any], operation: str) -> str:
    """The per-metric table (count, mean, p50, p95, p99 in ms) of one operation's summary."""
    data = summary.get(operation)
    if not data:
        return f"(no {operation} reports)"
    rows = [["metric", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms"]]

    def row(name: str, stats: dict[str, float]) -> list[str]:
        return [name, str(int(stats["count"]))] + [f"{stats[k]:.2f}" for k in ("mean", "p50", "p95", "p99")]

    by_mean = sorted(data["metrics"].items(), key=lambda item: item[1]["mean"], reverse=True)
    rows.extend(row(name, stats) for name, stats in by_mean)
    rows.append(row(f"{operation} (total)", data["total_duration"]))
    return table(rows)


async def _send_all(base_url: str, conversations: list[list[str]], extra_burst: int, out: Any) -> list[int]:
    import httpx2

    statuses: list[int] = []
    total = sum(len(c) for c in conversations) + extra_burst
    done = 0

    async def send(
        client: httpx2.AsyncClient, message: str, conversation_id: str
    ) -> tuple[int, dict[str, Any], str]:
        response = await client.post(
            "/api/v1/chat", json={"message": message, "conversation_id": conversation_id}, timeout=60
        )
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        return response.status_code, payload, response.headers.get("retry-after", "")

    def show(message: str, status: int, payload: dict[str, Any], retry_after: str, elapsed_ms: float) -> None:
        nonlocal done
        done += 1
        statuses.append(status)
        if status == 200:
            tools = payload.get("tool_calls", [])
            failed = sum(1 for t in tools if not t.get("success"))
            what = f"{len(tools)} tool call(s)" + (f", {failed} failed" if failed else "")
        elif status == 429:
            what = f"rate limited, Retry-After: {retry_after} s"
        else:
            what = str(payload.get("detail", ""))[:60]
        print(
            f"  [{done:2d}/{total}] {status} {elapsed_ms:7.1f} ms  {message[:48]!r:52} {what}",
            file=out,
            flush=True,
        )

    async with httpx2.AsyncClient(base_url=base_url) as client:

        async def converse(index: int, messages: list[str]) -> None:
            for message in messages:
                started = time.perf_counter()
                status, payload, retry_after = await send(client, message, f"demo_{index}")
                show(message, status, payload, retry_after, (time.perf_counter() - started) * 1000)

        await asyncio.gather(*(converse(i, messages) for i, messages in enumerate(conversations)))
        for n in range(extra_burst):
            started = time.perf_counter()
            status, payload, retry_after = await send(client, "One more: which lights are on?", f"burst_{n}")
            show(
                "One more: which lights are on?",
                status,
                payload,
                retry_after,
                (time.perf_counter() - started) * 1000,
            )
    return statuses


def demo(args: argparse.Namespace) -> int:
    """Run the offline demo and print the per-metric table."""
    import httpx2

    from ha_agent_tracing import configure_tracing, get_tracker, shutdown_tracing
    from ha_agent_tracing.agent import create_app, load_agent_settings
    from ha_agent_tracing.agent._background import BackgroundServer

    out = sys.stdout
    token = secrets.token_urlsafe(16)
    messages = sum(len(c) for c in DEMO_CONVERSATIONS)
    settings = load_agent_settings(
        openai_api_key=None,
        openai_base_url=None,
        model_latency_ms=args.latency_ms,
        rate_limit=messages,  # every demo message fits; the one burst request after them does not
        reports_api="on",
        api_token=token,
    )
    print(
        "ha-agent-tracing demo: embedded model + reference agent service on loopback, no network, no key",
        file=out,
    )
    app = create_app(settings)
    runtime = configure_tracing(app)
    exporting = ", ".join(e.exporter.target for e in runtime.exporters) or "nowhere (in-process reports only)"
    with BackgroundServer(app) as server:
        print(
            f"  service  {server.url}   model  {app.state.model_url}   traces exported to {exporting}",
            file=out,
        )
        print(
            f"  sending {messages} chat messages in 4 concurrent conversations, then 1 over the rate limit",
            file=out,
        )
        sent_from = time.time()
        statuses = asyncio.run(_send_all(server.url, DEMO_CONVERSATIONS, 1, out))
        time.sleep(0.2)  # background spans of the last request land in its report
        headers = {"Authorization": f"Bearer {token}"}
        # This run's requests only: the summary also reads the report history, which
        # keeps earlier runs' reports.
        summary = httpx2.get(
            f"{server.url}/api/v1/performance/summary",
            params={"since": f"{math.floor(sent_from)}"},
            headers=headers,
            timeout=10,
        ).json()
        print("\nWhere the time of a chat request goes (from GET /api/v1/performance/summary):\n", file=out)
        print(metric_table(summary, "chat_request"), file=out)
        tracker = get_tracker()
        slowest = max(tracker.get_reports_for_operation("chat_request"), key=lambda r: r["total_duration"])
        print(
            f"\n  {statuses.count(200)} answered, {statuses.count(429)} rate limited; "
            f"average chat_request {tracker.get_average_duration('chat_request'):.1f} ms; "
            f"slowest trace {slowest['trace_id']} ({slowest['total_duration']:.1f} ms)",
            file=out,
        )
        chat_reports = tracker.get_reports_for_operation("chat_request")
        print(bottleneck_line(cast(list[dict[str, Any]], chat_reports)), file=out)
        live = "" if args.keep_serving else " (live with --keep-serving)"
        print(f"\nSee more{live}:", file=out)
        print(f"  chat page {server.url}/   (its [Performance] reports are in the browser console)", file=out)
        print(f"  dashboard {server.url}/performance  (token: {token})", file=out)
        print(f"  reports   GET {server.url}/api/v1/performance/reports?operation=chat_request", file=out)
        print(f"            GET {server.url}/api/v1/performance/reports/{slowest['trace_id']}", file=out)
        print(f"            with  Authorization: Bearer {token}", file=out)
        if runtime.exporters:
            print("  traces    in Jaeger: http://localhost:16686 (service ha-ai-agent-service)", file=out)
        else:
            print(
                "  traces    `docker compose up`, then run with OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318",
                file=out,
            )
            print("            and open Jaeger at http://localhost:16686", file=out)
        if args.keep_serving:
            print("\nServing until Ctrl-C ...", file=out, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    shutdown_tracing()
    ok = statuses.count(200) == messages and statuses.count(429) == 1
    return 0 if ok else 1


def _when(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def report_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """One line per report: start (UTC), operation, total ms, status, metrics, slowest metric, trace."""
    if not reports:
        return "(no reports)"
    rows = [["start (UTC)", "operation", "total ms", "status", "metrics", "slowest metric", "trace_id"]]
    for report in reports:
        metrics = report.get("metrics") or []
        slowest = max(metrics, key=lambda m: m["duration"], default=None)
        rows.append(
            [
                _when(report["timestamp"]),
                str(report["operation"]),
                f"{report['total_duration']:.2f}",
                str(report.get("status", "")),
                str(len(metrics)),
                f"{slowest['name']} {slowest['duration']:.2f} ms" if slowest else "",
                str(report.get("trace_id", "")),
            ]
        )
    return table(rows)


def timeline_table(result: dict[str, Any]) -> str:
    """One line per bucket: start (UTC), requests, errors, p50/p95/p99 of the total, tokens."""
    if not result["buckets"]:
        return "(no reports in the range)"
    rows = [["bucket (UTC)", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "tokens in", "tokens out"]]
    for bucket in result["buckets"]:
        total = bucket["total"]
        rows.append(
            [
                _when(bucket["start"]),
                str(bucket["requests"]),
                str(bucket["errors"]),
                *(f"{total[k]:.2f}" for k in ("p50", "p95", "p99")),
                str(bucket["input_tokens"]),
                str(bucket["output_tokens"]),
            ]
        )
    return table(rows)


def history(args: argparse.Namespace) -> int:
    """Read the report history file: reports, a summary, a timeline or one trace."""
    import json

    from ha_agent_tracing import load_config
    from ha_agent_tracing._config import history_file
    from ha_agent_tracing.analysis import parse_time
    from ha_agent_tracing.analysis._timeline import check_range, parse_bucket, summarize_rows, timeline
    from ha_agent_tracing.reports._history import HistoryReader, HistoryUnavailable

    out = sys.stdout
    path = history_file(args.path, None) if args.path else load_config().history_path
    if path is None:
        print("report history is off (HA_AGENT_TRACING_HISTORY_PATH=off); pass --path FILE", file=sys.stderr)
        return 1
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        bucket = parse_bucket(args.bucket) if args.bucket else None
    except ValueError as exc:
        print(f"ha-agent-tracing history: {exc}", file=sys.stderr)
        return 2
    reader = HistoryReader(path)
    try:
        if args.trace:
            found = reader.get(args.trace)
            if found is None:
                print(f"no report for trace {args.trace} in {path}", file=sys.stderr)
                return 1
            print(json.dumps(found, indent=2), file=out)
            return 0
        if bucket is not None:
            end = time.time() if until is None else until
            start = end - 86400.0 if since is None else since
            check_range(start, end, bucket)
            result = timeline(reader.rows(start, end, args.operation), start, end, bucket)
            print(json.dumps(result, indent=2) if args.json else timeline_table(result), file=out)
            return 0
        if args.summary:
            summary = summarize_rows(reader.rows(since, until, args.operation))
            if args.json:
                print(json.dumps(summary, indent=2), file=out)
            else:
                print("\n\n".join(metric_table(summary, op) for op in summary) or "(no reports)", file=out)
            return 0
        reports = reader.query(since, until, args.operation, args.limit, slowest=args.slowest)
        if args.json:
            print(json.dumps({"count": len(reports), "reports": reports}, indent=2), file=out)
        else:
            print(report_table(reports), file=out)
        return 0
    except HistoryUnavailable as exc:
        print(f"ha-agent-tracing history: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"ha-agent-tracing history: {exc}", file=sys.stderr)
        return 2


def serve(args: argparse.Namespace) -> int:
    """Run the agent service with uvicorn, tracing configured from the environment."""
    import uvicorn

    from ha_agent_tracing import configure_tracing, shutdown_tracing
    from ha_agent_tracing.agent import create_app, load_agent_settings
    from ha_agent_tracing.agent._app import SERVE_YOUNG_GC_THRESHOLD

    settings = load_agent_settings()
    app = create_app(settings, freeze_startup_objects=True, young_gc_threshold=SERVE_YOUNG_GC_THRESHOLD)
    configure_tracing(app)  # also flushes queued spans in the app's shutdown, which SIGTERM runs
    host = args.host or settings.host
    port = args.port or settings.port
    try:  # reached on Ctrl-C only: uvicorn re-raises SIGTERM, and the process dies by it
        uvicorn.run(app, host=host, port=port, log_level=args.log_level, access_log=False)
    finally:
        shutdown_tracing()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ha-agent-tracing`` command."""
    parser = argparse.ArgumentParser(
        prog="ha-agent-tracing", description="Performance tracing for the reference agent service."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the reference agent service")
    serve_cmd.add_argument("--host", help="listen address (default: HA_AGENT_HOST, else 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="listen port (default: HA_AGENT_PORT, else 8000)")
    serve_cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    demo_cmd = commands.add_parser("demo", help="run the offline demo and print where the time goes")
    demo_cmd.add_argument("--latency-ms", type=int, default=40, help="embedded model latency per call")
    demo_cmd.add_argument("--keep-serving", action="store_true", help="keep the service up after the demo")
    demo_cmd.add_argument("--verbose", action="store_true", help="log every [Performance] report")
    add_compare(commands)
    add_analyze(commands)
    history_cmd = commands.add_parser(
        "history", help="read the report history (works without the service running)"
    )
    history_cmd.add_argument(
        "--path", help="history file (default: HA_AGENT_TRACING_HISTORY_PATH or its default)"
    )
    history_cmd.add_argument(
        "--since", help="from this time on: ISO 8601 with a zone, epoch seconds, or 24h back"
    )
    history_cmd.add_argument("--until", help="before this time: ISO 8601 or epoch seconds")
    history_cmd.add_argument("--operation", help="only this operation (e.g. chat_request)")
    history_cmd.add_argument("--limit", type=int, default=50, help="newest N reports (default 50)")
    history_cmd.add_argument("--slowest", action="store_true", help="the slowest reports first")
    history_cmd.add_argument("--summary", action="store_true", help="count and percentiles per metric")
    history_cmd.add_argument("--bucket", help="per time bucket (30s, 5m, 1h, 1d): count, p50/p95/p99, errors")
    history_cmd.add_argument("--trace", metavar="TRACE_ID", help="the full report of one trace")
    history_cmd.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    if args.command == "compare":
        return run_compare(args)
    if args.command == "analyze":
        return run_analyze(args)

    # `serve --log-level` sets every logger's level, the per-request [Performance] lines' included.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(getattr(args, "log_level", "info").upper())
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "history":
        logging.getLogger("ha_agent_tracing").setLevel(logging.WARNING)
        return history(args)
    if args.command == "demo":
        logging.getLogger("ha_agent_tracing").setLevel(logging.INFO if args.verbose else logging.WARNING)
        return demo(args)
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
