"""Command line: ``ha-agent-tracing serve`` and ``ha-agent-tracing demo``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ha-agent-tracing`` command."""
    print("usage: ha-agent-tracing {serve,demo}", file=sys.stderr)
    return 2
