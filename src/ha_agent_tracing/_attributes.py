"""Turning metric metadata into OpenTelemetry attribute values.

OTel attributes accept ``str``, ``bool``, ``int``, ``float`` and homogeneous
sequences of those. Metadata handed to the tracker is whatever the caller has,
so every value is converted rather than dropped by the SDK with a warning:
``None`` is left out (OTel has no null), other objects become ``str(value)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any

from opentelemetry.util.types import AttributeValue

__all__ = [
    "NOT_METADATA",
    "RESERVED_PREFIX",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "VARIANT_ATTRIBUTE",
    "keyword_attributes",
    "to_attribute_value",
    "to_attributes",
]

RESERVED_PREFIX = "ha_agent_tracing."
"""Attributes under this prefix are the library's own and stay out of report metadata."""

VARIANT_ATTRIBUTE = RESERVED_PREFIX + "variant"
"""Resource attribute naming the deployment's variant (``HA_AGENT_TRACING_VARIANT``); reports carry it."""

NOT_METADATA = frozenset({"openinference.span.kind"})
"""Attributes for trace viewers that are no metric's metadata either."""

SEMCONV_VERSION = "1.41.0"
"""The semantic-conventions release the spans follow (its GenAI attributes in particular)."""
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
"""The ``schema_url`` of the tracker's tracer."""

_PRIMITIVES = (bool, str, int, float)


def to_attribute_value(value: Any) -> AttributeValue | None:
    """Return ``value`` as a valid attribute value, or ``None`` to leave it out."""
    if value is None:
        return None
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Sequence | Set) and not isinstance(value, str):
        items = [item for item in value if item is not None]
        kinds = {type(item) for item in items}
        if len(kinds) == 1 and kinds.pop() in _PRIMITIVES:
            return tuple(items)
        # Mixed or nested sequences have no OTel encoding: keep every element as text.
        return tuple(str(item) for item in items)
    return str(value)


_PRIMITIVE_TYPES = frozenset(_PRIMITIVES)


def to_attributes(metadata: Mapping[Any, Any]) -> dict[str, AttributeValue]:
    """Convert a metadata mapping; keys become ``str``, ``None`` values are left out."""
    plain_values = _PRIMITIVE_TYPES.issuperset(map(type, metadata.values()))
    if plain_values and all(type(key) is str for key in metadata):
        return dict(metadata)
    return _convert(metadata)


def keyword_attributes(metadata: dict[str, Any]) -> dict[str, AttributeValue]:
    """Convert the ``**metadata`` of a call; the dict is the caller's own, so it is reused when plain.

    The hot path of every tracked metric: keyword arguments always have ``str``
    keys, and a set check over the value types runs in C.
    """
    if _PRIMITIVE_TYPES.issuperset(map(type, metadata.values())):
        return metadata
    return _convert(metadata)


def _convert(metadata: Mapping[Any, Any]) -> dict[str, AttributeValue]:
    result: dict[str, AttributeValue] = {}
    for key, value in metadata.items():
        converted = to_attribute_value(value)
        if converted is not None:
            result[key if isinstance(key, str) else str(key)] = converted
    return result
