"""The performance dashboard: ``GET /performance``, built from ``frontend/src/dashboard/``.

The page is static (its assets are served under ``/static/dashboard/`` with the
chat page's); everything it shows comes from the reports API with the token a
person enters once per browser session, so it is served exactly when that API
is (``HA_AGENT_TRACING_REPORTS_API=on``). The path is never traced.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ha_agent_tracing.agent._web import WEB_DIR, serve_page

__all__ = ["install_dashboard"]


def install_dashboard(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Serve the dashboard's page at ``/performance``."""
    serve_page(app, "/performance", web_dir / "dashboard" / "index.html", "the dashboard")
