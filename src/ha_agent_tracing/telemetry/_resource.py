"""Resource detection as the SDK offers it (``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS``).

The SDK's detectors are entry points of the group
``opentelemetry_resource_detector`` (``process``, ``os``, ``host``,
``service_instance``, and whatever other packages install). As in the SDK,
``service_instance`` always runs and ``*`` means every installed one. The
``otel`` detector (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``) is not
run here: the configuration reads those variables itself, and they win over
anything detected. A detector that is unknown or fails is skipped with a
warning; the service starts all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.resources import Resource, get_aggregated_resources
from opentelemetry.util._importlib_metadata import entry_points  # type: ignore[attr-defined]

__all__ = ["detect_resource"]

logger = logging.getLogger("ha_agent_tracing")

_GROUP = "opentelemetry_resource_detector"
_HANDLED_BY_CONFIG = "otel"


def detect_resource(names: Iterable[str]) -> dict[str, Any]:
    """Attributes the named detectors find, in order (a later detector wins on a shared key)."""
    wanted = [name for name in names if name != _HANDLED_BY_CONFIG]
    if "service_instance" not in wanted:
        wanted.insert(0, "service_instance")
    installed = {ep.name: ep for ep in entry_points(group=_GROUP)}  # type: ignore[union-attr]
    if "*" in wanted:
        at = wanted.index("*")
        rest = sorted(set(installed) - set(wanted) - {_HANDLED_BY_CONFIG})
        wanted[at : at + 1] = rest
    detectors: list[Any] = []
    for name in dict.fromkeys(wanted):
        entry_point = installed.get(name)
        if entry_point is None:
            logger.warning(
                "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS names %r, which is not installed (installed: %s); "
                "skipping it",
                name,
                ", ".join(sorted(installed)) or "none",
            )
            continue
        try:
            detectors.append(entry_point.load()())
        except Exception:
            logger.warning("resource detector %r could not be loaded; skipping it", name, exc_info=True)
    if not detectors:
        return {}
    try:
        return dict(get_aggregated_resources(detectors, Resource({})).attributes)
    except Exception:
        logger.warning("resource detection failed; the resource has no detected attributes", exc_info=True)
        return {}
