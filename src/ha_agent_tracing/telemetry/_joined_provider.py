"""What a tracer provider someone else built ignores of the configuration asked for.

``configure_tracing`` joins a provider that already exists (the global one
``opentelemetry-instrument`` or the application set up, or one passed in)
instead of replacing it: OpenTelemetry allows one global provider, and a
provider's sampler, resource and span limits are fixed when it is built. The
settings that shape those are then ignored. :func:`ignored_settings` names
each one that was asked for (set in the environment or as an argument) and
differs from what the provider does, so that ``configure_tracing`` can say
so instead of dropping them silently.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import Sampler

from ha_agent_tracing._config import TracingConfig
from ha_agent_tracing.telemetry._sampling import RecordUnsampled

__all__ = ["ignored_settings"]

_LIMIT_SETTINGS = {
    "attribute_value_length_limit",
    "span_attribute_value_length_limit",
    "attribute_count_limit",
    "span_attribute_count_limit",
    "span_event_count_limit",
    "span_link_count_limit",
}
_LIMIT_FIELDS = (
    "max_attributes",
    "max_events",
    "max_links",
    "max_span_attributes",
    "max_event_attributes",
    "max_link_attributes",
    "max_attribute_length",
    "max_span_attribute_length",
)


def _provider_limits(provider: SdkTracerProvider) -> SpanLimits | None:
    # The SDK keeps a provider's limits only behind an underscore; None if that changes.
    limits = getattr(provider, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else None


def ignored_settings(
    provider: SdkTracerProvider,
    config: TracingConfig,
    asked: Collection[str],
    sampler: Sampler,
    limits: SpanLimits,
) -> list[str]:
    """Each setting in ``asked`` (setting names) that ``provider`` does otherwise, described.

    ``sampler`` and ``limits`` are what the configuration would have built
    (the sampler before :class:`RecordUnsampled`).
    """
    ignored: list[str] = []
    theirs = provider.sampler
    base = theirs.delegate if isinstance(theirs, RecordUnsampled) else theirs
    if {"sampler", "sampler_arg"} & set(asked) and base.get_description() != sampler.get_description():
        ignored.append(f"sampler {sampler.get_description()} (the provider's: {base.get_description()})")
    if "report_unsampled" in asked:
        records = isinstance(theirs, RecordUnsampled) or base.get_description() == "AlwaysOnSampler"
        if records != config.report_unsampled:
            ignored.append(
                f"HA_AGENT_TRACING_REPORT_UNSAMPLED={str(config.report_unsampled).lower()} (the provider's "
                f"sampler {'records' if records else 'drops'} the traces it does not sample)"
            )
    wanted: dict[str, Any] = {}
    if "resource_attributes" in asked:
        wanted.update(config.resource_attributes)
    if "service_name" in asked:
        wanted["service.name"] = config.service_name
    attributes = provider.resource.attributes
    differing = {key: value for key, value in wanted.items() if attributes.get(key) != value}
    if differing:
        described = ", ".join(
            f"{k}={v!r} (the provider's: {attributes.get(k)!r})" for k, v in differing.items()
        )
        ignored.append(f"resource {described}")
    current = _provider_limits(provider)
    if _LIMIT_SETTINGS & set(asked) and current is not None:
        changed = [
            f"{name}={getattr(limits, name)} (the provider's: {getattr(current, name)})"
            for name in _LIMIT_FIELDS
            if getattr(limits, name) != getattr(current, name)
        ]
        if changed:
            ignored.append("span limits " + ", ".join(changed))
    return ignored
