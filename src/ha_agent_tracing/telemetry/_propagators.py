"""``OTEL_PROPAGATORS``: which context propagators OpenTelemetry installs, checked before it does.

OpenTelemetry reads the variable when ``opentelemetry.propagate`` is first
imported (FastAPI 0.165 and later import it with ``import fastapi``) and
raises on any name it cannot load, which stops the application before it
starts. :func:`propagator_names` is the setting's parser: it keeps the names
whose ``opentelemetry_propagator`` entry point is installed and loads, and
rejects the rest, so that the package can rewrite the variable to its usable
part (one warning) before OpenTelemetry reads it.

It imports no part of OpenTelemetry: it runs before the SDK is imported.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ha_agent_tracing._settings import InvalidValue

__all__ = ["DEFAULT_PROPAGATORS", "propagator_names"]

DEFAULT_PROPAGATORS = "tracecontext,baggage"
"""What OpenTelemetry uses when the variable is unset (W3C Trace Context and Baggage)."""

GROUP = "opentelemetry_propagator"

# Where the propagators OpenTelemetry documents come from, for the warning.
PACKAGES = {
    "b3": "opentelemetry-propagator-b3",
    "b3multi": "opentelemetry-propagator-b3",
    "jaeger": "opentelemetry-propagator-jaeger",
    "xray": "opentelemetry-propagator-aws-xray",
    "ottrace": "opentelemetry-propagator-ot-trace",
}


def _problem(name: str) -> str | None:
    """Why OpenTelemetry could not make the propagator ``name``, or ``None`` when it can."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        return "not installed" + (f" (pip install {PACKAGES[name]})" if name in PACKAGES else "")
    try:
        next(iter(found)).load()()
    except Exception as exc:  # noqa: BLE001 - a broken third-party package must not stop the app
        return f"installed but failing: {type(exc).__name__}: {exc}"
    return None


def propagator_names(raw: str) -> str:
    """A comma list of installed propagator names (lower case), or ``none``."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if any(entry.lower() == "none" for entry in entries):
        if entries != ["none"]:
            raise InvalidValue("'none' turns every propagator off and stands alone", fallback="none")
        return "none"
    good: list[str] = []
    bad: list[str] = []
    for entry in entries:
        name = entry.lower()
        if name in good:
            continue
        problem = _problem(name)
        if problem is None:
            good.append(name)
        else:
            bad.append(f"{entry!r} {problem}")
    canonical = ",".join(good)
    if bad:
        installed = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP)))
        raise InvalidValue(f"propagator {'; '.join(bad)}; installed: {installed}", fallback=canonical)
    if canonical != ",".join(entries):
        raise InvalidValue("propagator names are lower case, each named once", fallback=canonical)
    return canonical
