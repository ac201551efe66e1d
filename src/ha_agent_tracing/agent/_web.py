"""The chat page: ``GET /`` and its built assets under ``/static/``, and the conversation it reloads.

The assets are built from ``frontend/`` into ``ha_agent_tracing/web/`` and ship
in the wheel, so serving the page needs no Node. Every URL the page uses is
relative to it (``static/chat/main.js``, ``api/v1/chat``), so it works behind a
reverse proxy or Home Assistant ingress that serves the service under a prefix.
None of these paths is traced: loading the page makes no reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ha_agent_tracing.agent._conversations import CONVERSATION_ID

__all__ = ["WEB_DIR", "install_web", "serve_page"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The built pages: ``<page>/index.html``, ``<page>/main.js``, ``<page>/main.css``."""

# Same-origin everything: the page loads nothing from elsewhere and sends only to its own service.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    """Static files that are revalidated on each load (their names carry no hash) and never sniffed."""

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def serve_page(app: FastAPI, path: str, index: Path, what: str) -> None:
    """``GET path`` answers the built page ``index``, or 503 naming what to build when it is missing."""

    def page() -> Any:  # a file check: run in the thread pool, off the event loop
        if not index.is_file():
            detail = f"{what} is not built: {index} is missing (run `npm run build` in frontend/)"
            return JSONResponse({"detail": detail}, status_code=503)
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def install_web(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Serve the chat page at ``/``, its assets at ``/static/``, and ``GET /api/v1/conversations/{id}``."""
    serve_page(app, "/", web_dir / "chat" / "index.html", "the chat page")

    @app.get("/api/v1/conversations/{conversation_id}", tags=["chat"])
    async def conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        """A conversation's user and assistant messages, oldest first (the page reloads it)."""
        if not CONVERSATION_ID.match(conversation_id):
            raise HTTPException(422, "conversation_id: 1 to 64 of A-Z a-z 0-9 _ -")
        found = request.app.state.chat.conversations.get(conversation_id)
        if found is None:
            raise HTTPException(404, "no such conversation (it may have been pushed out)")
        messages = [
            {"role": m["role"], "content": m.get("content") or ""}
            for m in found.messages
            if m.get("role") in ("user", "assistant")
        ]
        return {"conversation_id": found.id, "messages": messages}

    app.mount("/static", _Assets(directory=web_dir, check_dir=False), name="static")
