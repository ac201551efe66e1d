"""The compact record of one finished span: what a report is folded from.

The processor keeps one :class:`SpanRecord` per finished span instead of the
SDK's span object, and every other source of spans (the browser relay's OTLP
JSON, a trace read back from Jaeger) is turned into the same records, so one
fold serves them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SpanRecord", "SpanSource"]

SpanSource = Literal["server", "browser"]
"""Where a span was recorded: in this process (or another server), or in the chat page."""


@dataclass(slots=True)
class SpanRecord:
    """One finished span, reduced to what a report needs.

    Ids are integers as OpenTelemetry carries them (``trace_id`` 128 bits,
    ``span_id`` and ``parent_id`` 64 bits); times are epoch nanoseconds.
    ``parent_id`` is ``None`` for a span without a parent. ``is_metric`` says
    whether the span is a tracked metric of the report (one the tracker, or the
    browser's tracker, created) rather than, say, an HTTP client span.
    """

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    is_metric: bool
    failed: bool = False
    error: str | None = None
    kind: str = "internal"
    parent_is_remote: bool = False
    source: SpanSource = "server"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        """End minus start, never negative."""
        return max(self.end_ns - self.start_ns, 0)
