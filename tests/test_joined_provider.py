"""configure_tracing joining a provider that exists says which asked-for settings it cannot apply."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from ha_agent_tracing import configure_tracing, load_config
from ha_agent_tracing._setup import build_provider
from ha_agent_tracing.telemetry._joined_provider import _provider_limits

JOINING = "the tracer provider that is already set up keeps its own settings"


def _theirs() -> TracerProvider:
    """A provider the application built: its own sampler, resource and limits."""
    return TracerProvider(
        sampler=ParentBased(ALWAYS_ON),
        resource=Resource({"service.name": "their-service", "team": "web"}),
        span_limits=SpanLimits(max_attributes=128),
        shutdown_on_exit=False,
    )


def _joining_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if JOINING in r.getMessage()]


def test_every_ignored_setting_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    """Sampler, resource, limits and report_unsampled, each with what the provider does instead."""
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    provider = _theirs()
    configure_tracing(
        tracer_provider=provider,
        sampler="traceidratio",
        sampler_arg=0.25,
        service_name="chat",
        resource_attributes={"team": "web"},  # the same as the provider's: not mentioned
        attribute_count_limit=16,
        report_unsampled=True,
    )
    (warning,) = _joining_warnings(caplog)
    assert "sampler TraceIdRatioBased{0.25} (the provider's: ParentBased{" in warning
    assert "resource service.name='chat' (the provider's: 'their-service')" in warning
    assert "team" not in warning
    assert "max_attributes=16 (the provider's: 128)" in warning
    assert "HA_AGENT_TRACING_REPORT_UNSAMPLED=true (the provider's sampler drops" in warning
    provider.shutdown()


def test_a_setting_from_the_environment_counts_as_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OTEL_TRACES_SAMPLER set in the environment and not applied: said."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    provider = _theirs()
    configure_tracing(tracer_provider=provider)
    (warning,) = _joining_warnings(caplog)
    assert "sampler AlwaysOffSampler" in warning
    assert "resource" not in warning and "limits" not in warning, "defaults nobody asked for are not named"
    provider.shutdown()


def test_nothing_is_said_when_the_provider_does_what_was_asked(caplog: pytest.LogCaptureFixture) -> None:
    """A provider built from the same settings, or settings left at their defaults: no warning."""
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    asked = {"service_name": "chat", "sampler": "always_on", "attribute_count_limit": 16}
    provider = build_provider(load_config(**asked))
    configure_tracing(tracer_provider=provider, report_unsampled=True, **asked)
    assert _joining_warnings(caplog) == []
    provider.shutdown()


def test_joining_the_global_provider_warns() -> None:
    """The case users meet: the application set a global provider first, then calls configure_tracing."""
    script = textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        from ha_agent_tracing import configure_tracing
        configure_tracing(service_name="chat")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if JOINING in line]
    assert line.startswith("WARNING ")
    assert "resource service.name='chat' (the provider's: 'unknown_service:python')" in line


def test_the_providers_limits_are_read_from_the_sdk() -> None:
    """The one SDK-private read here (a provider's span limits) still works with the installed SDK."""
    provider = TracerProvider(span_limits=SpanLimits(max_attributes=7), shutdown_on_exit=False)
    limits = _provider_limits(provider)
    assert limits is not None, "the SDK no longer keeps a provider's limits where they are read"
    assert limits.max_attributes == 7
