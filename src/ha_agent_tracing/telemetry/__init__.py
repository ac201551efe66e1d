"""What leaves the process and what feeds it: exporters, samplers, instrumentation.

Export branches off after recording and never feeds back into reports.
"""

from __future__ import annotations

from ha_agent_tracing.telemetry._forward import forward_spans, to_readable_span

__all__ = ["forward_spans", "to_readable_span"]
