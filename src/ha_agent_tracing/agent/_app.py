"""The reference agent service: a FastAPI app around :class:`ChatService`.

``create_app()`` builds it from :class:`AgentSettings`. Tracing is not set up
here: ``ha-agent-tracing serve`` calls ``configure_tracing(app)``, and tests
and embedding applications do so with their own provider.

With no OpenAI key and no base URL the app starts the embedded model on a
free loopback port during its lifespan and points the real ``AsyncOpenAI``
client at it, so the whole flow runs offline over real HTTP.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field

from ha_agent_tracing._setup import get_tracker
from ha_agent_tracing._tracker import PerformanceTracker
from ha_agent_tracing.agent._background import BackgroundServer
from ha_agent_tracing.agent._chat import ChatResult, ChatService, ModelError, RateLimited
from ha_agent_tracing.agent._conversations import CONVERSATION_ID
from ha_agent_tracing.agent._dashboard import install_dashboard
from ha_agent_tracing.agent._errors import invalid_request
from ha_agent_tracing.agent._home import EmbeddedHome, Home, RestHome
from ha_agent_tracing.agent._model_server import create_model_app
from ha_agent_tracing.agent._rate_limit import RateLimiter
from ha_agent_tracing.agent._relay import install_relay
from ha_agent_tracing.agent._reports_api import reports_router
from ha_agent_tracing.agent._settings import AgentSettings, load_agent_settings
from ha_agent_tracing.agent._web import install_web
from ha_agent_tracing.telemetry._instrumentation import fastapi_native_telemetry_off

__all__ = ["SERVE_YOUNG_GC_THRESHOLD", "ChatRequest", "ChatResponse", "create_app"]

logger = logging.getLogger("ha_agent_tracing.agent")

SERVE_YOUNG_GC_THRESHOLD = 10_000
"""The youngest generation's collection threshold ``ha-agent-tracing serve`` runs with (Python's: 700)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ChatRequest(BaseModel):
    """``POST /api/v1/chat`` body."""

    model_config = ConfigDict(extra="ignore")

    message: Annotated[str, Field(min_length=1, description="the user's message")]
    conversation_id: Annotated[
        str | None,
        Field(default=None, pattern=CONVERSATION_ID.pattern, description="continue this conversation"),
    ] = None


ChatResponse = ChatResult
"""``POST /api/v1/chat`` answer: the chat service's result as it is."""


class BodyLimit:
    """Answers 413 to request bodies over ``max_bytes``, declared or streamed, before the app runs.

    The body is read here (at most ``max_bytes`` of it) and replayed to the
    app, so an oversized chunked upload is refused without being parsed.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await self._reject(send, 400, "Content-Length is not a number")
                return
            if too_large:
                await self._reject(send, 413, f"request body over {self.max_bytes} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(send, 413, f"request body over {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    @staticmethod
    async def _reject(send: Send, status: int, detail: str) -> None:
        body = JSONResponse({"detail": detail}).body
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def create_app(
    settings: AgentSettings | None = None,
    *,
    tracker: PerformanceTracker | None = None,
    home: Home | None = None,
    freeze_startup_objects: bool = False,
    young_gc_threshold: int | None = None,
) -> FastAPI:
    """The agent service. ``settings`` default to the environment; ``tracker`` to ``get_tracker()``.

    With ``freeze_startup_objects`` (what ``ha-agent-tracing serve`` asks for) the
    objects alive once the service has started (modules, classes, the libraries'
    tables: most of the heap) are moved out of the garbage collector's sight
    (``gc.freeze()``) until it stops. A full collection then walks only what
    requests made; without it, each one walked the whole startup heap, ≈0.2 s
    every thousand traced requests here, because the spans, records and reports
    that tracing keeps for a while trigger full collections far more often than
    an untraced request does. Not for a process that starts many apps (tests):
    each freeze keeps what was alive then out of every later collection.

    With ``young_gc_threshold`` (``serve`` asks for :data:`SERVE_YOUNG_GC_THRESHOLD`)
    the youngest generation is collected after that many net allocations of
    container objects instead of Python's 700, until the service stops. A traced
    request allocates thousands (spans, attribute dicts, records), so at 700 the
    collector ran several times a request, walked the spans of every request in
    flight and promoted them to older generations, whose collections then walked
    them again: ≈75 µs of CPU a request with tracked metrics, ≈105 µs fully
    instrumented, against ≈25 µs at 10 000 (≈1 µs untraced either way).
    """
    if young_gc_threshold is not None and young_gc_threshold < 1:
        raise ValueError(f"young_gc_threshold must be at least 1, not {young_gc_threshold}")
    settings = settings or load_agent_settings()
    tracker = tracker or get_tracker()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_server: BackgroundServer | None = None
        if settings.embedded_model:
            model_server = BackgroundServer(create_model_app(settings.model_latency_ms)).start()
            client = AsyncOpenAI(
                api_key="embedded-model",
                base_url=f"{model_server.url}/v1",
                timeout=settings.openai_timeout_s,
                max_retries=0,  # the chat service retries itself, within HA_AGENT_OPENAI_TIMEOUT
            )
            logger.info("no OPENAI_API_KEY: using the embedded model at %s", model_server.url)
        else:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key or "not-needed",
                base_url=settings.openai_base_url,
                timeout=settings.openai_timeout_s,
                max_retries=0,
            )
        used_home = home
        if used_home is None:
            used_home = (
                RestHome(settings.ha_url, settings.ha_token)
                if settings.ha_url and settings.ha_token
                else EmbeddedHome(latency_s=settings.home_latency_ms / 1000)
            )
        app.state.chat = ChatService(settings, tracker, used_home, client)
        app.state.model_url = model_server.url if model_server else settings.openai_base_url or "OpenAI API"
        if freeze_startup_objects:
            gc.collect()  # the garbage of the start first: frozen objects are never collected
            gc.freeze()
        thresholds = gc.get_threshold()
        if young_gc_threshold is not None:
            gc.set_threshold(young_gc_threshold, *thresholds[1:])
        try:
            yield
        finally:
            if young_gc_threshold is not None:
                gc.set_threshold(*thresholds)
            if freeze_startup_objects:
                gc.unfreeze()
            await client.close()
            if home is None:
                await used_home.aclose()
            if model_server is not None:
                model_server.stop()

    # Traced by configure_tracing() alone, so that OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi
    # leaves it without server spans rather than handing it to FastAPI's own telemetry.
    app = FastAPI(
        title="Home Assistant agent (reference service)", lifespan=lifespan, **fastapi_native_telemetry_off()
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.post("/api/v1/chat", response_model=ChatResponse)
    async def chat(body: ChatRequest, request: Request) -> Any:
        """Answer a chat message."""
        limit = settings.max_message_chars
        if len(body.message) > limit:
            detail = f"message is {len(body.message)} characters; at most {limit} are accepted"
            raise HTTPException(413, detail)
        if not body.message.strip():
            raise HTTPException(422, "message must not be blank")
        service: ChatService = request.app.state.chat
        client = request.client.host if request.client else "unknown"
        try:
            result = await service.chat(body.message, body.conversation_id, client)
        except RateLimited as exc:
            return JSONResponse(
                {"detail": str(exc)},
                status_code=429,
                headers={"Retry-After": RateLimiter.retry_after_header(exc.retry_after_s)},
            )
        except ModelError as exc:
            # A plain sentence; 429/503 pass the provider's Retry-After on (see ModelError).
            headers = None
            if exc.retry_after_s is not None:
                headers = {"Retry-After": RateLimiter.retry_after_header(exc.retry_after_s)}
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
        return result

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        """Liveness: the service answers."""
        return {"status": "ok", "model": str(getattr(request.app.state, "model_url", "starting"))}

    if settings.reports_api == "on":
        if not settings.api_token and not settings.api_allow_loopback:
            logger.warning(
                "HA_AGENT_TRACING_REPORTS_API=on without HA_AGENT_TRACING_API_TOKEN: the performance "
                "endpoints will answer 503 until a token is set"
            )
        app.include_router(reports_router(settings, tracker))
        install_dashboard(app)
    install_web(app)
    install_relay(app, settings)
    return app
