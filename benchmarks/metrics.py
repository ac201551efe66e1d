"""What metrics and embedded alerting add per request, in CPU time.

    .venv/bin/python benchmarks/metrics.py           # 30 rounds of 300 requests per condition
    .venv/bin/python benchmarks/metrics.py --quick   # a smoke run (no figure to trust)

A "request" is what the reference service records for a chat request: a root
with the operation name, eight tracked metrics (the model call with the GenAI
attributes and token usage, two tool calls), on a real SDK tracer provider
with the report processor. Conditions, each its own provider:

- ``reports``: the report processor alone (metrics and alerts off);
- ``metrics``: plus the span metrics processor recording the four instruments
  on an SDK ``MeterProvider`` (an in-memory reader, collected once a round);
- ``metrics+alerts``: plus the embedded alert evaluator's inbox (built-in rules);
- ``metrics, no exemplars``: ``metrics`` with ``OTEL_METRICS_EXEMPLAR_FILTER=always_off``.

CPU time of this thread (``time.thread_time``), so a busy neighbour cannot
inflate it; conditions alternate within each round, their order rotating; the
added cost is taken per round (condition minus ``reports``, per request) and
reported as the median with its spread (min, quartiles, max).

The SDK's ``Histogram.record`` runs off the request thread (the span metrics
processor queues each measurement and records it on its own thread): its CPU
time, which the process still pays, is the "recording" column, per request
(the processor measures it with ``time.thread_time`` on the thread that records).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from ha_agent_tracing import PerformanceTracker, ReportProcessor, ReportStore
from ha_agent_tracing.analysis import AlertEngine, default_rules
from ha_agent_tracing.telemetry._metrics import SpanMetricsProcessor, meter_for

GEN_AI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 64,
    "iteration": 1,
}


def make(condition: str) -> tuple[Callable[[], None], Callable[[], float]]:
    """One condition: a function recording one request, and one run at the end of a round.

    The end of a round records what is still queued and returns the CPU seconds
    spent recording so far.
    """
    provider = TracerProvider(shutdown_on_exit=False)
    store = ReportStore(100)
    provider.add_span_processor(ReportProcessor(store))
    tracker = PerformanceTracker(provider, store)
    reader: InMemoryMetricReader | None = None
    engine: AlertEngine | None = None
    metrics: SpanMetricsProcessor | None = None
    if condition != "reports":
        reader = InMemoryMetricReader()
        exemplars = condition != "metrics, no exemplars"
        meters = MeterProvider(
            metric_readers=[reader],
            shutdown_on_exit=False,
            exemplar_filter=TraceBasedExemplarFilter() if exemplars else AlwaysOffExemplarFilter(),
        )
        sinks = []
        if condition == "metrics+alerts":
            engine = AlertEngine(default_rules())
            sinks.append(engine.observe)
        metrics = SpanMetricsProcessor(meter_for(meters), sinks, exemplars=exemplars)
        provider.add_span_processor(metrics)

    def request() -> None:
        with tracker.operation("chat_request"):
            with tracker.track("rate_limit_check", exceeded=False):
                pass
            with tracker.track("conversation_management", is_new=True):
                pass
            with tracker.track("message_assembly", message_count=4), tracker.track("context_refresh"):
                pass
            with tracker.track("openai_api_call", **GEN_AI):
                pass
            for name in ("get_entity_states", "call_service"):
                with tracker.track("tool_execution", tool_name=name):
                    pass
            with tracker.track("token_count_retrieval", tokens_used=876):
                pass

    def end_of_round() -> float:
        if reader is not None:
            reader.get_metrics_data()  # records what is still queued first
        if engine is not None:
            engine.evaluate()
        store.clear()
        return metrics.recording_cpu_s if metrics is not None else 0.0

    return request, end_of_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds of 20 requests")
    args = parser.parse_args()
    rounds, per_round = (3, 20) if args.quick else (30, 300)
    conditions = ["reports", "metrics", "metrics+alerts", "metrics, no exemplars"]
    made = {c: make(c) for c in conditions}
    for request, _ in made.values():  # warm up
        for _ in range(50):
            request()
    per_request: dict[str, list[float]] = {c: [] for c in conditions}
    recording: dict[str, list[float]] = {c: [] for c in conditions}
    recorded_before = {c: end_of_round() for c, (_, end_of_round) in made.items()}
    for index in range(rounds):
        shift = index % len(conditions)
        order = conditions[shift:] + conditions[:shift]
        for condition in order:
            request, end_of_round = made[condition]
            gc.collect()
            started = time.thread_time()
            for _ in range(per_round):
                request()
            per_request[condition].append((time.thread_time() - started) / per_round * 1e6)
            recorded = end_of_round()
            recording[condition].append((recorded - recorded_before[condition]) / per_round * 1e6)
            recorded_before[condition] = recorded
    print(f"CPU time per request (µs), {rounds} rounds of {per_round} requests, conditions alternating\n")
    print(
        "condition               request thread   added (median, per round)   spread of added: "
        "min  q1  q3  max   recording (off the request thread), median"
    )
    base = per_request["reports"]
    for condition in conditions:
        values = per_request[condition]
        added = [v - b for v, b in zip(values, base, strict=True)]
        q1, _, q3 = statistics.quantiles(added, n=4) if len(added) > 1 else (added[0],) * 3
        print(
            f"{condition:<22} {statistics.median(values):7.1f}          {statistics.median(added):+7.1f}"
            f"                     {min(added):+6.1f} {q1:+6.1f} {q3:+6.1f} {max(added):+6.1f}"
            f"   {statistics.median(recording[condition]):7.1f}"
        )


if __name__ == "__main__":
    main()
