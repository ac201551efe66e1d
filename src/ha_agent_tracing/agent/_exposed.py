"""Which entities the model may see and act on, as Home Assistant's Assist exposes a chosen set.

Unset (``HA_AGENT_EXPOSED_ENTITIES``), the rule is Assist's default for new
entities: the domains a voice assistant is meant to control, and sensors of
the device classes it is meant to read; locks, alarm panels and everything
else stay hidden until the user exposes them. Set, it is a comma list of
entity ids or shell-style patterns (``light.*``, ``sensor.*_temperature``,
``*``).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["Exposure"]

_DEFAULT_DOMAINS = frozenset(
    {
        "climate",
        "cover",
        "fan",
        "humidifier",
        "light",
        "media_player",
        "scene",
        "switch",
        "todo",
        "vacuum",
        "water_heater",
    }
)
_DEFAULT_DEVICE_CLASSES = {
    "binary_sensor": frozenset(
        {
            "carbon_monoxide",
            "door",
            "garage_door",
            "gas",
            "moisture",
            "motion",
            "occupancy",
            "opening",
            "presence",
            "safety",
            "smoke",
            "window",
        }
    ),
    "sensor": frozenset(
        {
            "aqi",
            "carbon_dioxide",
            "carbon_monoxide",
            "humidity",
            "pm10",
            "pm25",
            "temperature",
            "volatile_organic_compounds",
        }
    ),
}


class Exposure:
    """Decides per entity state whether the model sees it; ``patterns=None`` is Assist's default."""

    def __init__(self, patterns: Iterable[str] | None = None) -> None:
        self.patterns = None if patterns is None else tuple(p.lower() for p in patterns)

    def __call__(self, state: dict[str, Any]) -> bool:
        """Whether this entity is exposed."""
        entity_id = str(state.get("entity_id", "")).lower()
        if self.patterns is not None:
            return any(fnmatchcase(entity_id, pattern) for pattern in self.patterns)
        domain = entity_id.split(".", 1)[0]
        if domain in _DEFAULT_DOMAINS:
            return True
        device_class = (state.get("attributes") or {}).get("device_class")
        return device_class in _DEFAULT_DEVICE_CLASSES.get(domain, frozenset())

    def filter(self, states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The exposed states, in order."""
        return [state for state in states if self(state)]

    @property
    def description(self) -> str:
        """How the exposed set is chosen, for logs and metadata."""
        return "assist_default" if self.patterns is None else ",".join(self.patterns)
