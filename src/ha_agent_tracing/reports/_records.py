"""The compact record of one finished span: what a report is folded from.

The processor keeps one :class:`SpanRecord` per finished span instead of the
SDK's span object, and every other source of spans (the browser relay's OTLP
JSON, a trace read back from Jaeger) is turned into the same records, so one
fold serves them all::

    from ha_agent_tracing.reports import SpanRecord, fold

    root = SpanRecord("POST /api/v1/chat", trace_id, 0x1, None, t0, t0 + 90_000_000, {}, False,
                      kind="server")
    step = SpanRecord("rate_limit_check", trace_id, 0x2, 0x1, t0 + 1_000_000, t0 + 1_500_000,
                      {"exceeded": False}, True)
    report = fold(root, [step])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SpanRecord", "SpanSource"]

SpanSource = Literal["server", "browser"]
"""Where a span was recorded: in this process (or another server), or in the chat page."""


class _NoExtra(Mapping[str, Any]):
    """The shared, read-only, empty ``extra`` of records that have none (hashable, so a plain default)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_EXTRA: Mapping[str, Any] = _NoExtra()


@dataclass(slots=True)
class SpanRecord:
    """One finished span, reduced to what a report needs.

    Ids are integers as OpenTelemetry carries them (``trace_id`` 128 bits,
    ``span_id`` and ``parent_id`` 64 bits); times are epoch nanoseconds.
    ``parent_id`` is ``None`` for a span without a parent. ``is_metric`` says
    whether the span is a tracked metric of the report (one the tracker, or the
    browser's tracker, created) rather than, say, an HTTP client span.
    ``attributes`` is read, never changed: the processor hands over the SDK's
    own (finished, read-only) mapping rather than a copy. ``sampled`` is the
    span's sampled flag (a report shows its root's). ``extra`` holds whatever
    else a source wants to keep; by default one shared, read-only empty mapping
    (a dict per span would cost 64 bytes each): pass your own dict to fill it.
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
    extra: Mapping[str, Any] = NO_EXTRA
    sampled: bool = True

    @property
    def duration_ns(self) -> int:
        """End minus start, never negative."""
        return max(self.end_ns - self.start_ns, 0)

    @property
    def is_local_root(self) -> bool:
        """Whether the span starts a request here: no parent, or a parent in another process."""
        return self.parent_id is None or self.parent_is_remote
