"""Instrumenting FastAPI and the outgoing HTTP clients.

* FastAPI: one server span per request. The ASGI ``http send``/``http
  receive`` spans are left out (they say nothing about where time goes and
  double the span count), and the performance endpoints and health checks are
  never traced, so reading reports does not create reports.
* Outgoing HTTP: both ``httpx`` and ``httpx2``. The openai SDK from version 3
  on sends through ``httpx2``; instrumenting ``httpx`` alone would miss every
  model call. The instrumentation normalises every request and response
  header on each call (one scan of the headers per header name) for the
  headers ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_*`` capture, and
  throws the result away when they capture none (the default);
  :func:`lazy_header_normalisation` makes that work happen only when a header
  is captured, in one pass, with the same result.

FastAPI from 0.165 on also has OpenTelemetry support of its own, on by
default as soon as a global tracer provider is set. It steps aside for an app
that carries the instrumentation above; :func:`fastapi_native_telemetry_off`
turns it off for apps that must not be traced at all (the embedded model
server stands in for an outside service).

Every call here is safe to repeat and undone by :func:`uninstrument`.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ha_agent_tracing.telemetry._sdk_compat import is_instrumented_app

__all__ = [
    "ALWAYS_EXCLUDED_URLS",
    "exclude_under_auto_instrumentation",
    "fastapi_native_telemetry_off",
    "instrument_app",
    "instrument_http_clients",
    "lazy_header_normalisation",
    "uninstrument",
]

logger = logging.getLogger("ha_agent_tracing")

ALWAYS_EXCLUDED_URLS = (
    "/api/v1/performance,/api/v1/telemetry/,/api/v1/conversations/,/static/,://[^/]+/$,"
    "/health,/healthz,/readyz,/livez,/performance$"
)
"""URL patterns (regular expressions searched in the URL) that are never traced.

The performance endpoints (reading reports must not make reports), the browser-span relay
(relayed spans must not make spans), the chat page (``/``), its assets and its conversation reload,
the health checks, and the dashboard's page (``/performance``; it reads the performance endpoints).
"""


def fastapi_native_telemetry_off() -> dict[str, Any]:
    """Keyword arguments for ``FastAPI(...)`` that keep FastAPI's own telemetry off (none before 0.165)."""
    # The class itself: under `opentelemetry-instrument`, `fastapi.FastAPI` is an instrumented
    # subclass whose `__init__(*args, **kwargs)` hides the parameters.
    from fastapi.applications import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def exclude_under_auto_instrumentation(extra_excluded: str = "") -> bool:
    """Under ``opentelemetry-instrument``: FastAPI apps made from now on never trace the excluded URLs.

    The FastAPI instrumentation that the launcher turns on replaces the
    ``FastAPI`` class, and instruments each new app with the keyword arguments
    it keeps on that class; it reads ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``
    itself only when they name no ``excluded_urls``. Adding ours there keeps
    the performance endpoints and health checks out, as :func:`instrument_app`
    does. Returns whether the class was found replaced.
    """
    from opentelemetry.instrumentation import fastapi as fastapi_instrumentation

    patched = getattr(fastapi_instrumentation, "_InstrumentedFastAPI", None)
    import fastapi

    if patched is None or fastapi.FastAPI is not patched:
        return False
    kwargs = dict(getattr(patched, "_instrument_kwargs", None) or {})
    given = kwargs.get("excluded_urls")
    patterns = (ALWAYS_EXCLUDED_URLS, extra_excluded if given is None else str(given))
    kwargs["excluded_urls"] = ",".join(part for part in patterns if part)
    patched._instrument_kwargs = kwargs  # type: ignore[attr-defined]
    return True


def instrument_app(
    app: Any,
    provider: TracerProvider | None,
    extra_excluded: str = "",
    meter_provider: MeterProvider | None = None,
) -> bool:
    """Instrument a FastAPI app once; returns whether this call instrumented it.

    With ``meter_provider`` the instrumentation's HTTP server metrics go there.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if is_instrumented_app(app):
        return False
    excluded = ",".join(part for part in (ALWAYS_EXCLUDED_URLS, extra_excluded) if part)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=meter_provider,
        excluded_urls=excluded,
        exclude_spans=["send", "receive"],
    )
    return True


class _NormalisedHeaders(Mapping[str, list[str]]):
    """The contrib instrumentation's normalised headers, worked out on first use only.

    Its ``_normalize_headers`` gives ``{lower-case name: [values, split at commas]}``
    for ``get_custom_header_attributes``, which looks no further than
    ``not headers`` when no header is captured. Truth comes from the source
    headers (no work); anything else normalises them once, in one pass.
    """

    __slots__ = ("_module", "_normalise", "_result", "_source")

    def __init__(
        self, source: Any, module: Any, normalise: Callable[[Any, Any], dict[str, list[str]]]
    ) -> None:
        self._source = source
        self._module = module
        self._normalise = normalise
        self._result: dict[str, list[str]] | None = None

    def _normalised(self) -> dict[str, list[str]]:
        result = self._result
        if result is None:
            result = self._result = _normalise_headers(self._source, self._module, self._normalise)
        return result

    def __bool__(self) -> bool:
        return bool(self._source)

    def __getitem__(self, key: str) -> list[str]:
        return self._normalised()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._normalised())

    def __len__(self) -> int:
        return len(self._normalised())


def _normalise_headers(
    headers: Any, module: Any, original: Callable[[Any, Any], dict[str, list[str]]]
) -> dict[str, list[str]]:
    """What the instrumentation's ``_normalize_headers`` returns, in one pass over ``Headers``.

    Its own asks ``get_list`` for every name, each a scan of all the headers.
    Other inputs (dicts, raw lists), and names that are not ASCII (which
    ``str.lower`` and ``bytes.lower`` treat differently), are left to it.
    """
    if not isinstance(headers, module.Headers):
        return original(headers, module)
    normalised: dict[str, list[str]] = {}
    for name, value in headers.multi_items():
        if not name.isascii():
            return original(headers, module)
        normalised.setdefault(name.lower(), []).extend(part.strip() for part in value.split(","))
    return normalised


def lazy_header_normalisation() -> bool:
    """Make the httpx/httpx2 instrumentation normalise headers only when it captures some.

    Replaces ``opentelemetry.instrumentation.httpx._normalize_headers`` (a
    private function of the contrib package, pinned by a test) with one that
    returns the same mapping, worked out on first use. Safe to repeat; returns
    whether the function is (now) replaced.
    """
    try:
        from opentelemetry.instrumentation import httpx as httpx_instrumentation
    except ImportError:
        return False
    current = getattr(httpx_instrumentation, "_normalize_headers", None)
    if current is None:
        logger.debug("the httpx instrumentation has no _normalize_headers; headers stay normalised eagerly")
        return False
    if getattr(current, "_ha_agent_tracing_lazy", False):
        return True
    original: Callable[[Any, Any], dict[str, list[str]]] = current

    def normalize_headers(headers: Any, module: Any) -> Mapping[str, list[str]]:
        return _NormalisedHeaders(headers, module, original)

    normalize_headers._ha_agent_tracing_lazy = True  # type: ignore[attr-defined]
    normalize_headers.__wrapped__ = original  # type: ignore[attr-defined]
    httpx_instrumentation._normalize_headers = normalize_headers  # type: ignore[attr-defined]
    return True


def _client_instrumentors(wanted: Callable[[str], bool]) -> list[BaseInstrumentor]:
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

    found: list[BaseInstrumentor] = []
    if wanted("httpx") and importlib.util.find_spec("httpx") is not None:
        found.append(HTTPXClientInstrumentor())
    if wanted("httpx2") and importlib.util.find_spec("httpx2") is not None:
        found.append(HTTPX2ClientInstrumentor())
    return found


def instrument_http_clients(
    provider: TracerProvider | None,
    wanted: Callable[[str], bool] = lambda name: True,
    meter_provider: MeterProvider | None = None,
) -> list[BaseInstrumentor]:
    """Instrument httpx and httpx2 where installed and ``wanted`` (by entry-point name).

    Returns the instrumentors this call turned on. With ``meter_provider`` their
    HTTP client metrics go there.
    """
    turned_on: list[BaseInstrumentor] = []
    instrumentors = _client_instrumentors(wanted)
    if instrumentors:
        lazy_header_normalisation()
    for instrumentor in instrumentors:
        if instrumentor.is_instrumented_by_opentelemetry:
            continue
        if meter_provider is None:
            instrumentor.instrument(tracer_provider=provider)
        else:
            instrumentor.instrument(tracer_provider=provider, meter_provider=meter_provider)
        turned_on.append(instrumentor)
    return turned_on


def uninstrument(apps: list[Any], instrumentors: list[BaseInstrumentor]) -> None:
    """Undo what :func:`instrument_app` and :func:`instrument_http_clients` did."""
    if apps:  # imported only when needed: this also runs at interpreter exit, when imports may fail
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        for app in apps:
            try:
                FastAPIInstrumentor.uninstrument_app(app)
            except Exception:
                logger.debug("could not uninstrument %r", app, exc_info=True)
    for instrumentor in instrumentors:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
