"""The performance dashboard: ``GET /performance``, built from ``frontend/src/dashboard/``.

The page is static (its assets are served under ``/static/dashboard/`` with the
chat page's); everything it shows comes from the reports API with the token a
person enters once per browser session, so it is served exactly when that API
is (``HA_AGENT_TRACING_REPORTS_API=on``). The path is never traced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from ha_agent_tracing.agent._web import _PAGE_HEADERS, WEB_DIR

__all__ = ["install_dashboard"]


def install_dashboard(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Serve the dashboard's page at ``/performance``."""
    index = web_dir / "dashboard" / "index.html"

    @app.get("/performance", include_in_schema=False)
    async def dashboard_page() -> Any:
        if not index.is_file():
            detail = f"the dashboard is not built: {index} is missing (run `npm run build` in frontend/)"
            return JSONResponse({"detail": detail}, status_code=503)
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)
