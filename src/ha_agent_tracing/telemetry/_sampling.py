"""Samplers from configuration, and the choice made for reports.

Sampling decides what is *exported*. By default it does not decide what is
*reported*: :class:`RecordUnsampled` turns the wrapped sampler's DROP into
RECORD_ONLY, so every request is recorded, folded and kept in the in-memory
reports, while only sampled traces reach the exporters (the SDK's batch
processor skips spans whose sampled flag is off). Reports then describe every
request, not a sample of them, at the cost of recording spans that are not
shipped. ``HA_AGENT_TRACING_REPORT_UNSAMPLED=false`` makes dropped traces
cost nothing and leaves them out of the reports too.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = ["RecordUnsampled", "build_sampler"]


def build_sampler(name: str, ratio: float) -> sampling.Sampler:
    """The SDK sampler that ``OTEL_TRACES_SAMPLER`` names (already validated)."""
    if name == "always_on":
        return sampling.ALWAYS_ON
    if name == "always_off":
        return sampling.ALWAYS_OFF
    if name == "traceidratio":
        return sampling.TraceIdRatioBased(ratio)
    if name == "parentbased_always_off":
        return sampling.ParentBased(sampling.ALWAYS_OFF)
    if name == "parentbased_traceidratio":
        return sampling.ParentBased(sampling.TraceIdRatioBased(ratio))
    return sampling.ParentBased(sampling.ALWAYS_ON)


class RecordUnsampled(sampling.Sampler):
    """Wraps a sampler so that traces it drops are recorded but not exported."""

    def __init__(self, delegate: sampling.Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> sampling.SamplingResult:
        """Ask the delegate; turn its DROP into RECORD_ONLY."""
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is sampling.Decision.DROP:
            return sampling.SamplingResult(
                sampling.Decision.RECORD_ONLY, result.attributes, result.trace_state
            )
        return result

    def get_description(self) -> str:
        """The delegate's description, marked."""
        return f"RecordUnsampled{{{self.delegate.get_description()}}}"
