"""Benchmarks: every figure is a ratio of two things measured in the same run.

    .venv/bin/python benchmarks/run.py           # full run (about a minute)
    .venv/bin/python benchmarks/run.py --quick   # a smoke run, as CI does (no timing goals checked)

Results go to benchmarks/results/latest.json and latest.md (the README's table).
Conditions are interleaved in rounds and each figure is a median over rounds,
so drift of the machine during the run hits both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.receivers (rotel)

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore  # noqa: E402

METRICS_PER_REQUEST = 10
ATTRIBUTES = {
    "iteration": 1,
    "message_count": 5,
    "tool_count": 3,
    "has_tool_calls": True,
    "model": "gpt-4o-mini",
}


def _timed(work: Callable[[], None], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat


def _rounds(conditions: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in conditions}
    for _ in range(rounds):
        for name, measure in conditions.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def _tracked_request(tracker: PerformanceTracker) -> Callable[[], None]:
    def request() -> None:
        with tracker.operation("chat_request"):
            for _ in range(METRICS_PER_REQUEST):
                with tracker.track("openai_api_call", **ATTRIBUTES):
                    pass

    return request


class _NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def bench_tracker(rounds: int, repeat: int) -> dict[str, Any]:
    """A request of 10 metrics: the tracker (with the report processor) against bare SDK spans.

    Two more conditions put the processor's figure in context: the tracker on a
    provider with no processor, and on one with the SDK's own BatchSpanProcessor
    (exporting nowhere). Folding is timed apart: it runs when a report is read.
    """
    bare_tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bare")

    def bare() -> None:
        with bare_tracer.start_as_current_span("chat_request"):
            for _ in range(METRICS_PER_REQUEST):
                with bare_tracer.start_as_current_span("openai_api_call", attributes=ATTRIBUTES):
                    pass

    def tracker_with(processor: SpanProcessor | None) -> Callable[[], None]:
        provider = TracerProvider(shutdown_on_exit=False)
        store = ReportStore()
        if processor is not None:
            provider.add_span_processor(processor)
        return _tracked_request(PerformanceTracker(provider, store))

    batch = BatchSpanProcessor(_NullExporter())
    medians = _rounds(
        {
            "bare": lambda: _timed(bare, repeat),
            "tracker": lambda: _timed(tracker_with(ReportProcessor()), repeat),
            "tracker_no_processor": lambda: _timed(tracker_with(None), repeat),
            "tracker_sdk_batch": lambda: _timed(tracker_with(batch), repeat),
        },
        rounds,
    )
    batch.shutdown()
    spans = METRICS_PER_REQUEST + 1
    fold_per_request = _fold_seconds(rounds, repeat)
    without = medians["tracker_no_processor"]
    return {
        "bare_us_per_span": medians["bare"] / spans * 1e6,
        "tracker_us_per_span": medians["tracker"] / spans * 1e6,
        "tracker_ratio": medians["tracker"] / medians["bare"],
        "processor_us_per_span": (medians["tracker"] - without) / spans * 1e6,
        "processor_own_us_per_span": _processor_own_us(rounds, repeat),
        "sdk_batch_us_per_span": (medians["tracker_sdk_batch"] - without) / spans * 1e6,
        "fold_us_per_metric": fold_per_request / METRICS_PER_REQUEST * 1e6,
        "tracker_read_once_ratio": (medians["tracker"] + fold_per_request) / medians["bare"],
    }


def _processor_own_us(rounds: int, repeat: int) -> float:
    """The processor's own work per span: its hooks replayed over recorded spans, less a no-op's.

    Replaying leaves out what the SDK does around the hooks and the cost of
    keeping spans alive past ``on_end`` (memory that is no longer reused at
    once), which any processor that holds spans pays; the in-request figure
    includes both.
    """
    events: list[tuple[bool, Any]] = []

    class Record(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            events.append((False, span))

        def on_end(self, span: ReadableSpan) -> None:
            events.append((True, span))

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(Record())
    request = _tracked_request(PerformanceTracker(provider, ReportStore()))
    for _ in range(repeat):
        request()

    def replay(processor: SpanProcessor) -> float:
        on_start, on_end = processor.on_start, processor.on_end
        started = time.perf_counter()
        for ended, span in events:
            if ended:
                on_end(span)
            else:
                on_start(span)
        return time.perf_counter() - started

    medians = _rounds(
        {"report": lambda: replay(ReportProcessor()), "no-op": lambda: replay(SpanProcessor())},
        rounds,
    )
    return (medians["report"] - medians["no-op"]) / (len(events) / 2) * 1e6


def _fold_seconds(rounds: int, repeat: int) -> float:
    """Median time to fold one request's report the first time it is read."""
    provider = TracerProvider(shutdown_on_exit=False)
    processor = ReportProcessor(ReportStore(max_reports=repeat))
    provider.add_span_processor(processor)
    request = _tracked_request(PerformanceTracker(provider, processor.store))
    samples = []
    for _ in range(rounds):
        processor.store.clear()
        for _ in range(repeat):
            request()
        started = time.perf_counter()
        processor.store.operations()  # the first read folds every report
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Service:
    """`ha-agent-tracing serve` in a subprocess with the given environment."""

    def __init__(self, extra_env: dict[str, str], workdir: Path, name: str) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_"))}
        env.update(
            {
                "HA_AGENT_PORT": str(self.port),
                "HA_AGENT_MODEL_LATENCY_MS": "0",
                "HA_AGENT_HOME_LATENCY_MS": "0",
                "HA_AGENT_RATE_LIMIT": "10000000",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                **extra_env,
            }
        )
        command = [str(Path(sys.executable).parent / "ha-agent-tracing"), "serve", "--log-level", "warning"]
        self.log = (workdir / f"{name}.log").open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        import httpx2

        self.client = httpx2.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"service {name} did not start; see {self.log.name}")
            time.sleep(0.1)

    def latencies(self, count: int) -> list[float]:
        found = []
        for _ in range(count):
            started = time.perf_counter()
            response = self.client.post(
                "/api/v1/chat",
                # A new conversation each time: every request does the same work (two
                # model turns, two tools), so the run is stationary and rounds compare.
                json={"message": "Turn off the kitchen light and tell me the temperature"},
            )
            found.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"benchmark request failed: {response.status_code} {response.text}")
        return found

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


def bench_service(rounds: int, per_round: int, workdir: Path) -> dict[str, Any]:
    """Chat requests (two model turns, two tools) through the service, per tracing condition."""
    from tests.receivers import Rotel

    rotel = Rotel(workdir).start()
    services: dict[str, _Service] = {}
    try:
        services = {
            "disabled": _Service({"OTEL_SDK_DISABLED": "true"}, workdir, "disabled"),
            "metrics_only": _Service({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}, workdir, "metrics_only"),
            "instrumented": _Service({}, workdir, "instrumented"),
            "exporting": _Service(
                {"OTEL_EXPORTER_OTLP_ENDPOINT": rotel.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
                workdir,
                "exporting",
            ),
            "unreachable": _Service(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
                },
                workdir,
                "unreachable",
            ),
        }
        for service in services.values():
            service.latencies(20)  # warm up: imports, connections, caches
        samples: dict[str, list[float]] = {name: [] for name in services}
        medians: dict[str, list[float]] = {name: [] for name in services}
        for _ in range(rounds):
            for name, service in services.items():
                found = service.latencies(per_round)
                samples[name].extend(found)
                medians[name].append(statistics.median(found))
    finally:
        for service in services.values():
            service.stop()
        rotel.stop()

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    p50 = {name: statistics.median(values) for name, values in medians.items()}
    return {
        "requests_per_condition": rounds * per_round,
        "p50_ms": {name: value * 1000 for name, value in p50.items()},
        "p99_ms": {name: p99(values) * 1000 for name, values in samples.items()},
        "metrics_only_over_disabled": p50["metrics_only"] / p50["disabled"],
        "instrumented_over_disabled": p50["instrumented"] / p50["disabled"],
        "exporting_over_disabled": p50["exporting"] / p50["disabled"],
        "unreachable_over_reachable_p99": p99(samples["unreachable"]) / p99(samples["exporting"]),
    }


def bench_shutdown(bound_s: float) -> dict[str, Any]:
    """shutdown_tracing() against a collector that accepts connections and never answers."""
    from ha_agent_tracing import configure_tracing, get_tracker, shutdown_tracing

    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        configure_tracing(
            tracer_provider=TracerProvider(shutdown_on_exit=False),
            exporters="otlp",
            otlp_traces_endpoint=f"http://127.0.0.1:{port}/v1/traces",
            otlp_timeout_ms=30_000,
        )
        for _ in range(200):
            with get_tracker().operation("chat_request"):
                pass
        started = time.monotonic()
        shutdown_tracing(timeout_s=bound_s)
        elapsed = time.monotonic() - started
    return {"bound_s": bound_s, "elapsed_s": elapsed}


GOALS = {
    "tracker_ratio": 1.0,
    "processor_us_per_span": 2.0,
    "instrumented_over_disabled": 1.05,
    "exporting_over_disabled": 1.05,
    "unreachable_over_reachable_p99": 1.05,
}


def table(results: dict[str, Any]) -> str:
    tracker, service, shutdown = results["tracker"], results["service"], results["shutdown"]
    p50 = service["p50_ms"]

    def verdict(key: str, value: float) -> str:
        return "met" if value <= GOALS[key] else "**missed**"

    rows = [
        ("`tracker.track()` with the report processor vs bare `start_as_current_span`, per span",
         f"{tracker['tracker_ratio']:.2f}× ({tracker['tracker_us_per_span']:.1f} µs vs {tracker['bare_us_per_span']:.1f} µs)",
         "≤ 1.0×", verdict("tracker_ratio", tracker["tracker_ratio"])),
        ("the same, each report also read (folded) once",
         f"{tracker['tracker_read_once_ratio']:.2f}×", "", ""),
        ("report processor, per finished span, in the request",
         f"{tracker['processor_us_per_span']:.2f} µs", "≤ 2 µs", verdict("processor_us_per_span", tracker["processor_us_per_span"])),
        ("of which the processor's own work (its hooks replayed over recorded spans)",
         f"{tracker['processor_own_us_per_span']:.2f} µs", "", ""),
        ("for scale: the SDK's `BatchSpanProcessor` (null exporter), per span, same harness",
         f"{tracker['sdk_batch_us_per_span']:.2f} µs", "", ""),
        ("folding a report when first read, per metric",
         f"{tracker['fold_us_per_metric']:.2f} µs", "", ""),
        ("chat request, tracked metrics only (HTTP instrumentations off) vs tracing disabled (p50)",
         f"{service['metrics_only_over_disabled']:.3f}× ({p50['metrics_only']:.2f} vs {p50['disabled']:.2f} ms)", "", ""),
        ("chat request, fully instrumented vs tracing disabled (p50)",
         f"{service['instrumented_over_disabled']:.3f}× ({p50['instrumented']:.2f} ms)",
         "≤ 1.05×", verdict("instrumented_over_disabled", service["instrumented_over_disabled"])),
        ("chat request, OTLP export on vs tracing disabled (p50)",
         f"{service['exporting_over_disabled']:.3f}× ({p50['exporting']:.2f} ms)",
         "≤ 1.05×", verdict("exporting_over_disabled", service["exporting_over_disabled"])),
        ("OTLP endpoint unreachable vs reachable (p99)",
         f"{service['unreachable_over_reachable_p99']:.3f}× ({service['p99_ms']['unreachable']:.2f} vs {service['p99_ms']['exporting']:.2f} ms)",
         "≤ 1.05×", verdict("unreachable_over_reachable_p99", service["unreachable_over_reachable_p99"])),
        ("`shutdown_tracing()` with a collector that never answers",
         f"{shutdown['elapsed_s']:.2f} s", f"≤ {shutdown['bound_s']:.0f} s",
         "met" if shutdown["elapsed_s"] <= shutdown["bound_s"] + 0.1 else "**missed**"),
    ]  # fmt: skip
    lines = ["| measured | result | goal | |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations: checks that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rounds, repeat, service_rounds, per_round = (3, 50, 2, 10) if args.quick else (15, 400, 12, 80)
    with tempfile.TemporaryDirectory() as workdir:
        results: dict[str, Any] = {
            "quick": args.quick,
            "python": sys.version.split()[0],
            "tracker": bench_tracker(rounds, repeat),
            "service": bench_service(service_rounds, per_round, Path(workdir)),
            "shutdown": bench_shutdown(2.0),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "latest"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
