"""Benchmarks: the goals of the core, each a ratio of two conditions measured in one run.

    .venv/bin/python benchmarks/run.py           # full run (a few minutes)
    .venv/bin/python benchmarks/run.py --quick   # a smoke run, as CI does (no timing goal checked)
    .venv/bin/python benchmarks/run.py --only serve --rounds 24   # the serve rows alone, printed, not saved
    .venv/bin/python benchmarks/run.py --only tracker --rounds 41  # an in-process figure alone (also memory, reads)

Results go to benchmarks/results/latest.json and latest.md (the README's table).

The machine is shared, so every figure is built to survive a busy neighbour:

- in-process figures are **CPU time of this thread** (``time.thread_time``),
  which other processes cannot inflate;
- the service figures read the service process's own CPU time (its threads'
  ``/proc/PID/task/*/schedstat``, to the ns) as well as the client's wall-clock
  latency; a round's CPU time runs until that service's next round starts, so
  what its requests left to background threads (history writes, metrics
  recording) is counted with them;
- conditions alternate within each round (their order rotates from round to
  round), a ratio is taken **per round**, and the table gives the median of
  those ratios with their spread (interquartile range, and min to max), never a
  single pooled figure.

Percentiles are the project's one definition, ``ha_agent_tracing.analysis.percentiles``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.receivers (rotel)

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider  # noqa: E402

from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore  # noqa: E402
from ha_agent_tracing.analysis import percentiles  # noqa: E402
from ha_agent_tracing.telemetry._sdk_compat import attribute_dict, span_fields, span_parent  # noqa: E402

METRICS_PER_REQUEST = 10
ATTRIBUTES = {
    "iteration": 1,
    "message_count": 5,
    "tool_count": 3,
    "has_tool_calls": True,
    "model": "gpt-4o-mini",
}


# ---------------------------------------------------------------- statistics


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and range of per-round figures."""
    p25, p50, p75 = percentiles(values, (25, 50, 75))
    return {"median": p50, "p25": p25, "p75": p75, "min": min(values), "max": max(values), "n": len(values)}


def _rounds(conditions: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each condition once per round, in an order that rotates from round to round."""
    names = list(conditions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(conditions[name]())
    return samples


def _ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def _cpu(work: Callable[[], object], repeat: int) -> float:
    """CPU seconds of this thread per call of ``work``."""
    started = time.thread_time()
    for _ in range(repeat):
        work()
    return (time.thread_time() - started) / repeat


# ---------------------------------------------------------------- in-process figures


def _tracked_request(tracker: PerformanceTracker, metrics: int = METRICS_PER_REQUEST) -> Callable[[], None]:
    def request() -> None:
        with tracker.operation("chat_request"):
            for _ in range(metrics):
                with tracker.track("openai_api_call", **ATTRIBUTES):
                    pass

    return request


class _KeepOnly(SpanProcessor):
    """The floor of any processor that folds on read: it keeps what a report needs of each span.

    Each finished span's name, ids, times and attribute dict, as many as the store's
    100 reports of 11 spans hold, and nothing else: no grouping, no report.
    """

    def __init__(self) -> None:
        self.kept: deque[tuple[Any, ...]] = deque(maxlen=100 * (METRICS_PER_REQUEST + 1))

    def on_end(self, span: ReadableSpan) -> None:
        name, context, parent, start, end, _, _, attributes, _ = span_fields(span)
        self.kept.append((name, context[1], parent, start, end, attribute_dict(attributes)))


class _GroupOnly(SpanProcessor):
    """The least a processor that makes reports must do: group each request's records, keep the last 100.

    A local root opens its request under a lock; every other span appends a
    compact tuple to its request's list; the root's end moves the request into
    a bounded map of finished ones. No counters, no eviction of unfinished
    requests, no cap, no late spans, no store, no listeners.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, list[Any]] = {}
        self.finished: OrderedDict[int, list[Any]] = OrderedDict()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        parent = span_parent(span)
        if parent is None or parent.is_remote:
            with self._lock:
                self._running[span.get_span_context().trace_id] = []

    def on_end(self, span: ReadableSpan) -> None:
        name, context, parent, start, end, _, status, attributes, _ = span_fields(span)
        parent_id = parent[1] if parent is not None else None
        record = (name, context[1], parent_id, start, end, attribute_dict(attributes), status.status_code)
        if parent is None or parent.is_remote:
            with self._lock:
                records = self._running.pop(context[0], [])
                records.append(record)
                self.finished[context[0]] = records
                if len(self.finished) > 100:
                    self.finished.popitem(last=False)
            return
        records = self._running.get(context[0])
        if records is not None:
            records.append(record)


def _tracker(processor: bool | SpanProcessor) -> PerformanceTracker:
    provider = TracerProvider(shutdown_on_exit=False)
    store = ReportStore()
    if processor is True:
        provider.add_span_processor(ReportProcessor(store))
    elif processor:
        provider.add_span_processor(processor)
    return PerformanceTracker(provider, store)


def bench_tracker(rounds: int, repeat: int) -> dict[str, Any]:
    """A request of 10 metrics: the tracker with the report processor against bare SDK spans (CPU time)."""
    bare_tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bare")

    def bare() -> None:
        with bare_tracer.start_as_current_span("chat_request"):
            for _ in range(METRICS_PER_REQUEST):
                with bare_tracer.start_as_current_span("openai_api_call", attributes=ATTRIBUTES):
                    pass

    samples = _rounds(
        {
            "bare": lambda: _cpu(bare, repeat),
            "tracker": lambda: _cpu(_tracked_request(_tracker(True)), repeat),
            "tracker_no_processor": lambda: _cpu(_tracked_request(_tracker(False)), repeat),
            "tracker_keep_only": lambda: _cpu(_tracked_request(_tracker(_KeepOnly())), repeat),
            "tracker_group_only": lambda: _cpu(_tracked_request(_tracker(_GroupOnly())), repeat),
        },
        rounds,
    )
    spans = METRICS_PER_REQUEST + 1
    per_span = {name: spread([v / spans * 1e6 for v in values]) for name, values in samples.items()}
    processor_us = [
        (a - b) / spans * 1e6
        for a, b in zip(samples["tracker"], samples["tracker_no_processor"], strict=True)
    ]
    return {
        "us_per_span": per_span,
        "tracker_ratio": spread(_ratios(samples["tracker"], samples["bare"])),
        "no_processor_ratio": spread(_ratios(samples["tracker_no_processor"], samples["bare"])),
        "keep_only_ratio": spread(_ratios(samples["tracker_keep_only"], samples["bare"])),
        "group_only_ratio": spread(_ratios(samples["tracker_group_only"], samples["bare"])),
        "processor_us_per_span": spread(processor_us),
    }


def bench_memory(requests: int) -> dict[str, Any]:
    """Bytes kept per finished span by the processor and store (reports unread, then read once)."""
    store = ReportStore(max_reports=requests)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(ReportProcessor(store))
    tracker = PerformanceTracker(provider, store)
    request = _tracked_request(tracker)
    for _ in range(20):
        request()
    store.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(requests):
            request()
        gc.collect()
        unread = tracemalloc.get_traced_memory()[0]
        store.operations()  # folds every report once; the folded report is cached
        gc.collect()
        read = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    spans = requests * (METRICS_PER_REQUEST + 1)
    return {
        "requests": requests,
        "bytes_per_span_unread": (unread - before) / spans,
        "bytes_per_span_read": (read - before) / spans,
    }


def bench_reads(rounds: int, repeat: int) -> dict[str, Any]:
    """Repeated get_reports() of 100 stored reports of 11 metrics each, after the first read folded them."""
    tracker = _tracker(True)
    request = _tracked_request(tracker, metrics=11)
    for _ in range(100):
        request()
    started = time.thread_time()
    first = tracker.get_reports()
    first_ms = (time.thread_time() - started) * 1e3
    assert len(first) == 100 and all(len(r["metrics"]) == 11 for r in first)
    samples = _rounds({"read": lambda: _cpu(tracker.get_reports, repeat)}, rounds)
    return {"first_read_ms": first_ms, "repeated_read_ms": spread([v * 1e3 for v in samples["read"]])}


# ---------------------------------------------------------------- the service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_cpu_s(pid: int) -> float:
    """CPU seconds a process's threads have run so far, to the nanosecond.

    The sum of each thread's ``/proc/PID/task/TID/schedstat`` (its run time in
    ns); ``/proc/PID/stat`` counts in clock ticks (10 ms), too coarse for a round
    of requests that take a few ms of CPU each. A thread that ended drops out of
    the sum, so the service's threads must be long-lived (they are).
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


class _Service:
    """`ha-agent-tracing serve` in a subprocess with the given environment (started, not yet waited for)."""

    def __init__(self, extra_env: dict[str, str], workdir: Path, name: str) -> None:
        self.port = _free_port()
        self.name = name
        self._window: tuple[float, int, dict[str, float]] | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_"))}
        env.update(
            {
                # Each service its own report history (on by default, as in `serve`), never the user's.
                "HA_AGENT_TRACING_HISTORY_PATH": str(workdir / f"{name}-history.sqlite3"),
                "HA_AGENT_PORT": str(self.port),
                "HA_AGENT_MODEL_LATENCY_MS": "0",
                "HA_AGENT_HOME_LATENCY_MS": "0",
                "HA_AGENT_RATE_LIMIT": "10000000",
                **extra_env,
            }
        )
        command = [str(Path(sys.executable).parent / "ha-agent-tracing"), "serve", "--log-level", "warning"]
        self.log = (workdir / f"{name}.log").open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        import httpx2

        self.client = httpx2.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def ready(self) -> _Service:
        """Wait until the service answers its health check."""
        import httpx2

        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"service {self.name} did not start; see {self.log.name}")
            time.sleep(0.1)

    def round(self, count: int) -> dict[str, float]:
        """``count`` chat requests: p50 and p99 latency (ms) and the service's CPU ms per request.

        A round's CPU time runs from its start until :meth:`close` (or this
        service's next round), so the work it leaves to the service's background
        threads (the report history's batched writes, the metrics' recording) is
        counted with it: its ``cpu`` is filled in then.
        """
        self.close()
        found = []
        result: dict[str, float] = {"cpu": float("nan")}
        self._window = (_process_cpu_s(self.process.pid), count, result)
        for _ in range(count):
            started = time.perf_counter()
            response = self.client.post(
                "/api/v1/chat",
                # A new conversation each time: every request does the same work (two
                # model turns, two tools), so the run is stationary and rounds compare.
                json={"message": "Turn off the kitchen light and tell me the temperature"},
            )
            found.append((time.perf_counter() - started) * 1e3)
            if response.status_code != 200:
                raise RuntimeError(f"benchmark request failed: {response.status_code} {response.text}")
        result["p50"], result["p99"] = percentiles(found, (50, 99))
        return result

    def close(self) -> None:
        """Close the CPU window of the last round: its CPU ms per request, background work included."""
        if self._window is not None:
            cpu_before, count, result = self._window
            result["cpu"] = (_process_cpu_s(self.process.pid) - cpu_before) * 1e3 / count
            self._window = None

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(20)
        self.log.close()


# name -> (environment, role); export batch sizes are explicit so the trade is visible.
def _service_conditions(rotel_grpc: str) -> dict[str, dict[str, str]]:
    export = {"OTEL_EXPORTER_OTLP_ENDPOINT": rotel_grpc, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    return {
        "disabled": {"OTEL_SDK_DISABLED": "true"},
        "metrics_only": {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"},
        "instrumented": {},
        "exporting": export,
        "exporting_batch_512": {**export, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"},
        "unreachable": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        },
    }


def _ready(service: _Service, env: dict[str, str], workdir: Path, attempts: int = 3) -> _Service:
    """``service`` once it answers; one that exited (its free port was taken meanwhile) starts anew."""
    for attempt in range(1, attempts + 1):
        try:
            return service.ready()
        except RuntimeError:
            if service.process.poll() is None or attempt == attempts:
                raise
            service.stop()
            service = _Service(env, workdir, f"{service.name}-retry{attempt}")
    raise AssertionError("unreachable")


BACKGROUND_SETTLE_S = 1.2
"""How long a round's CPU window stays open after its last request, before the next condition runs:
the report history writes a batch at most 1 s after its first report."""

SERVE_ONLY = ("disabled", "metrics_only", "instrumented")
"""The conditions of ``--only serve``: the service's overhead without export."""


def bench_service(
    rounds: int, per_round: int, workdir: Path, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Chat requests (two model turns, two tools) through the service, per tracing condition.

    Every round starts a **new** service process per condition: two processes of
    one configuration differ by several per cent in CPU time per request, for
    their whole life (measured: 1.05x p50 and 1.09x CPU between two identical
    `OTEL_SDK_DISABLED` services over 12 rounds), as large as the goals. With one
    process per condition for the whole run, that luck was a fixed bias of every
    ratio; fresh processes turn it into round-to-round spread, which the median
    of per-round ratios and its IQR show. After its round, each condition's
    service has :data:`BACKGROUND_SETTLE_S` alone to finish its background work
    before its CPU window closes and the next condition runs.

    ``names`` picks some of the conditions (all of them by default); the
    collector (rotel) is started only when an exporting condition is among them.
    """
    exporting = names is None or any(name.startswith(("exporting", "unreachable")) for name in names)
    rotel = None
    if exporting:
        from tests.receivers import Rotel

        rotel = Rotel(workdir).start()
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        conditions = {
            name: env
            for name, env in _service_conditions(rotel.grpc_endpoint if rotel is not None else "").items()
            if names is None or name in names
        }
        samples = {name: [] for name in conditions}
        order = list(conditions)
        for index in range(rounds):
            shift = index % len(order)
            services: dict[str, _Service] = {}
            try:
                for name in order[shift:] + order[:shift]:  # the order rotates from round to round
                    services[name] = _Service(conditions[name], workdir, f"{name}-{index}")
                for name in services:  # started side by side, so one may lose its port to another
                    services[name] = _ready(services[name], conditions[name], workdir)
                for service in services.values():
                    service.round(20)  # warm up: imports, connections, caches
                time.sleep(BACKGROUND_SETTLE_S)  # the warm-up's background work (the history opens its file)
                for name, service in services.items():
                    samples[name].append(service.round(per_round))
                    time.sleep(BACKGROUND_SETTLE_S)  # its background work, before its window closes
                    service.close()
            finally:
                for service in services.values():
                    service.process.terminate()
                for service in services.values():
                    service.stop()
    finally:
        if rotel is not None:
            rotel.stop()

    def series(name: str, figure: str) -> list[float]:
        return [sample[figure] for sample in samples[name]]  # type: ignore[index]

    def ratio(a: str, b: str, figure: str) -> dict[str, float]:
        return spread(_ratios(series(a, figure), series(b, figure)))

    results: dict[str, Any] = {
        "requests_per_round": per_round,
        "rounds": rounds,
        "load_average": os.getloadavg(),
        "conditions": {
            name: {figure: spread(series(name, figure)) for figure in ("p50", "p99", "cpu")}
            for name in samples
        },
        "metrics_only_over_disabled_p50": ratio("metrics_only", "disabled", "p50"),
        "metrics_only_over_disabled_cpu": ratio("metrics_only", "disabled", "cpu"),
        "instrumented_over_disabled_p50": ratio("instrumented", "disabled", "p50"),
        "instrumented_over_disabled_cpu": ratio("instrumented", "disabled", "cpu"),
    }
    if not exporting:
        return results
    return {
        **results,
        "exporting_over_instrumented_p99": ratio("exporting", "instrumented", "p99"),
        "exporting_512_over_instrumented_p99": ratio("exporting_batch_512", "instrumented", "p99"),
        "exporting_over_instrumented_cpu": ratio("exporting", "instrumented", "cpu"),
        "exporting_512_over_instrumented_cpu": ratio("exporting_batch_512", "instrumented", "cpu"),
        "unreachable_over_exporting_p99": ratio("unreachable", "exporting", "p99"),
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


# ---------------------------------------------------------------- the table

# figure -> goal (at most); the verdict compares the median of the per-round figures.
GOALS = {
    "tracker_ratio": 1.00,
    "bytes_per_span_unread": 600.0,
    "repeated_read_ms": 1.0,
    "metrics_only_over_disabled_p50": 1.05,
    "instrumented_over_disabled_p50": 1.10,
    "exporting_over_instrumented_p99": 1.5,
}


def _fmt(s: dict[str, float], digits: int = 2, unit: str = "") -> str:
    return (
        f"{s['median']:.{digits}f}{unit} (IQR {s['p25']:.{digits}f}–{s['p75']:.{digits}f}, "
        f"range {s['min']:.{digits}f}–{s['max']:.{digits}f}; {s['n']:.0f} rounds)"
    )


def _verdict(key: str, value: float) -> str:
    return "met" if value <= GOALS[key] else "**missed**"


def serve_rows(service: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The rows of the service's overhead: metrics only and fully instrumented, against disabled."""
    conditions = service["conditions"]

    def ms(name: str, figure: str) -> str:
        return f"{conditions[name][figure]['median']:.2f} ms"

    return [
        ("`serve`, tracked metrics only vs `OTEL_SDK_DISABLED` (p50 latency)",
         _fmt(service["metrics_only_over_disabled_p50"], 3, "×") + f"; {ms('metrics_only', 'p50')} vs {ms('disabled', 'p50')}",
         "≤ 1.05×", _verdict("metrics_only_over_disabled_p50", service["metrics_only_over_disabled_p50"]["median"])),
        ("… the same in the service's CPU time per request",
         _fmt(service["metrics_only_over_disabled_cpu"], 3, "×")
         + f"; {ms('metrics_only', 'cpu')} vs {ms('disabled', 'cpu')}", "", ""),
        ("`serve`, fully instrumented vs `OTEL_SDK_DISABLED` (p50 latency)",
         _fmt(service["instrumented_over_disabled_p50"], 3, "×") + f"; {ms('instrumented', 'p50')}",
         "≤ 1.10×", _verdict("instrumented_over_disabled_p50", service["instrumented_over_disabled_p50"]["median"])),
        ("… the same in the service's CPU time per request",
         _fmt(service["instrumented_over_disabled_cpu"], 3, "×") + f"; {ms('instrumented', 'cpu')}", "", ""),
    ]  # fmt: skip


def _markdown(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| measured | result (median of per-round figures) | goal | |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    tracker, memory, reads = results["tracker"], results["memory"], results["reads"]
    service, shutdown = results["service"], results["shutdown"]
    conditions = service["conditions"]

    def ms(name: str, figure: str) -> str:
        return f"{conditions[name][figure]['median']:.2f} ms"

    rows = [
        ("`tracker.track()` with the report processor vs bare `start_as_current_span` (CPU time)",
         _fmt(tracker["tracker_ratio"], unit="×"), "≤ 1.00×",
         _verdict("tracker_ratio", tracker["tracker_ratio"]["median"])),
        ("… per span: bare SDK span / tracker with processor / tracker without processor",
         f"{tracker['us_per_span']['bare']['median']:.2f} / {tracker['us_per_span']['tracker']['median']:.2f} / "
         f"{tracker['us_per_span']['tracker_no_processor']['median']:.2f} µs", "", ""),
        ("… of which the report processor, per span", _fmt(tracker["processor_us_per_span"], unit=" µs"), "", ""),
        ("… the tracker without a processor vs bare", _fmt(tracker["no_processor_ratio"], unit="×"), "", ""),
        ("… the tracker with a processor that only keeps each span's ids, times and attributes vs bare",
         _fmt(tracker["keep_only_ratio"], unit="×"), "", ""),
        *(
            [("… the tracker with a processor that only groups each request's spans and keeps the last "
              "100 requests (no counters, eviction, cap, late spans or store) vs bare",
              _fmt(tracker["group_only_ratio"], unit="×"), "", "")]
            if "group_only_ratio" in tracker else []
        ),
        ("retained memory per finished span (report not read)",
         f"{memory['bytes_per_span_unread']:.0f} B", "≤ 600 B",
         _verdict("bytes_per_span_unread", memory["bytes_per_span_unread"])),
        ("… once the report was read (the folded report is cached)",
         f"{memory['bytes_per_span_read']:.0f} B", "", ""),
        ("repeated `get_reports()` of 100 reports × 11 metrics (CPU time)",
         _fmt(reads["repeated_read_ms"], unit=" ms"), "≤ 1 ms",
         _verdict("repeated_read_ms", reads["repeated_read_ms"]["median"])),
        ("… the first read, which folds the 100 reports", f"{reads['first_read_ms']:.2f} ms", "", ""),
        *serve_rows(service),
        ("`serve` with OTLP export to rotel vs export off, p99 (default batch size)",
         _fmt(service["exporting_over_instrumented_p99"], 3, "×") + f"; {ms('exporting', 'p99')} vs {ms('instrumented', 'p99')}",
         "≤ 1.5×", _verdict("exporting_over_instrumented_p99", service["exporting_over_instrumented_p99"]["median"])),
        ("… the same with `OTEL_BSP_MAX_EXPORT_BATCH_SIZE=512` (the SDK's default)",
         _fmt(service["exporting_512_over_instrumented_p99"], 3, "×") + f"; {ms('exporting_batch_512', 'p99')}", "", ""),
        ("… service CPU per request, exporting vs export off: default batch / 512",
         f"{service['exporting_over_instrumented_cpu']['median']:.3f}× / "
         f"{service['exporting_512_over_instrumented_cpu']['median']:.3f}×", "", ""),
        ("OTLP endpoint unreachable vs reachable (p99)",
         _fmt(service["unreachable_over_exporting_p99"], 3, "×"), "", ""),
        ("`shutdown_tracing()` with a collector that never answers",
         f"{shutdown['elapsed_s']:.2f} s", f"≤ {shutdown['bound_s']:.0f} s",
         "met" if shutdown["elapsed_s"] <= shutdown["bound_s"] + 0.1 else "**missed**"),
    ]  # fmt: skip
    return _markdown(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations: checks that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--only",
        choices=["serve", "tracker", "memory", "reads"],
        help="run these rows alone and print them (nothing is saved)",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds of --only")
    args = parser.parse_args()
    if args.quick:
        rounds, repeat, memory_requests, read_repeat, service_rounds, per_round = 3, 30, 100, 5, 2, 10
    else:
        rounds, repeat, memory_requests, read_repeat, service_rounds, per_round = 21, 300, 2000, 50, 12, 150
    if args.only == "serve":
        with tempfile.TemporaryDirectory() as workdir:
            service = bench_service(args.rounds or service_rounds, per_round, Path(workdir), SERVE_ONLY)
        print(json.dumps({"service": service}, indent=2))
        print(_markdown(serve_rows(service)))
        return 0
    if args.only:
        in_process: dict[str, Callable[[], dict[str, Any]]] = {
            "tracker": lambda: bench_tracker(args.rounds or rounds, repeat),
            "memory": lambda: bench_memory(memory_requests),
            "reads": lambda: bench_reads(args.rounds or rounds, read_repeat),
        }
        print(json.dumps({"load_average": os.getloadavg(), args.only: in_process[args.only]()}, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        results: dict[str, Any] = {
            "quick": args.quick,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "tracker": bench_tracker(rounds, repeat),
            "memory": bench_memory(memory_requests),
            "reads": bench_reads(rounds, read_repeat),
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
