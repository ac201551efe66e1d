"""Settings of the reference agent service, in one table.

Read with the same reader as the tracing settings (``_settings``): explicit
argument, then environment, then default; a bad value warns and falls back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ha_agent_tracing._config import CAPTURE_MESSAGE_CONTENT, CaptureMode
from ha_agent_tracing._settings import (
    InvalidValue,
    Setting,
    SettingsReader,
    boolean,
    choice,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    text,
    url,
)

__all__ = ["AGENT_SETTINGS", "AgentSettings", "load_agent_settings"]


def _names_matching(pattern: str, what: str) -> Callable[[str], tuple[str, ...]]:
    """A comma list whose entries all match ``pattern``; bad entries are dropped with a warning."""
    valid = re.compile(pattern)

    def parse(raw: str) -> tuple[str, ...]:
        entries = [entry.strip().lower() for entry in raw.split(",") if entry.strip()]
        good = tuple(dict.fromkeys(entry for entry in entries if valid.fullmatch(entry)))
        bad = [entry for entry in entries if not valid.fullmatch(entry)]
        if bad:
            raise InvalidValue(f"{', '.join(map(repr, bad))} not {what}", fallback=good)
        return good

    return parse


_entity_patterns = _names_matching(
    r"\*|[a-z0-9_*?]+\.[a-z0-9_*?]+", "an entity id or pattern (light.kitchen, light.*)"
)
_domains = _names_matching(r"[a-z0-9_]+", "a domain (lock, cover)")

AGENT_SETTINGS: tuple[Setting[Any], ...] = (
    Setting("host", ("HA_AGENT_HOST",), text, "127.0.0.1",
            "address `serve` listens on (`0.0.0.0` in a container)"),
    Setting("port", ("HA_AGENT_PORT",), positive_int, 8000, "port `serve` listens on"),
    Setting("openai_api_key", ("OPENAI_API_KEY",), text, None,
            "set: talk to the OpenAI API; unset (and no base URL): start the embedded model"),
    Setting("openai_base_url", ("OPENAI_BASE_URL",), url, None, "an OpenAI-compatible endpoint"),
    Setting("model", ("HA_AGENT_MODEL",), text, "gpt-4o-mini", "model name sent to the API"),
    Setting("openai_timeout_s", ("HA_AGENT_OPENAI_TIMEOUT",), positive_float, 30.0,
            "longest one model call may take, seconds, its retries and `Retry-After` waits included"),
    Setting("openai_max_retries", ("HA_AGENT_OPENAI_MAX_RETRIES",), non_negative_int, 2,
            "retries of a model call that failed with 408, 409, 429, 5xx or no connection, "
            "within `HA_AGENT_OPENAI_TIMEOUT`"),
    Setting("chat_timeout_s", ("HA_AGENT_CHAT_TIMEOUT",), positive_float, 60.0,
            "longest one chat request may take, seconds (over it: 504)"),
    Setting("stream", ("HA_AGENT_STREAM",), boolean, False,
            "`true`: ask the model for streamed responses (usage via `stream_options.include_usage`)"),
    Setting("model_latency_ms", ("HA_AGENT_MODEL_LATENCY_MS",), non_negative_int, 25,
            "latency of the embedded model per call, ms"),
    Setting("home_latency_ms", ("HA_AGENT_HOME_LATENCY_MS",), non_negative_int, 10,
            "latency of the embedded home per call, ms"),
    Setting("ha_url", ("HA_URL",), url, None, "Home Assistant base URL; unset: the embedded in-memory home"),
    Setting("ha_token", ("HA_TOKEN",), text, None, "Home Assistant long-lived access token"),
    Setting("exposed_entities", ("HA_AGENT_EXPOSED_ENTITIES",), _entity_patterns, None,
            "entities the model may see and act on: comma list of entity ids or patterns (`light.*`, "
            "`*`); unset: Assist's default set (lights, switches, covers, climate, fans, ..., "
            "temperature and humidity sensors, motion and door sensors; no locks or alarm panels)"),
    Setting("confirm_domains", ("HA_AGENT_CONFIRM_DOMAINS",), _domains,
            ("lock", "cover", "alarm_control_panel"),
            "domains whose services run only after the user confirms a preview"),
    Setting("rate_limit", ("HA_AGENT_RATE_LIMIT",), positive_int, 30, "chat requests per client per window"),
    Setting("rate_limit_window_s", ("HA_AGENT_RATE_LIMIT_WINDOW",), positive_float, 60.0,
            "rate-limit window, seconds"),
    Setting("max_iterations", ("HA_AGENT_MAX_ITERATIONS",), positive_int, 5,
            "model calls per chat request at most"),
    Setting("history_token_budget", ("HA_AGENT_HISTORY_TOKEN_BUDGET",), positive_int, 3000,
            "tokens of conversation history sent to the model; older turns are left out"),
    Setting("context_ttl_s", ("HA_AGENT_CONTEXT_TTL",), non_negative_float, 30.0,
            "how long the Home Assistant context is cached, seconds; `0` rebuilds it for every request"),
    Setting("parallel_tools", ("HA_AGENT_PARALLEL_TOOLS",), boolean, True,
            "`true`: the tool calls of one model turn run concurrently; `false`: one after another"),
    Setting("max_message_chars", ("HA_AGENT_MAX_MESSAGE_CHARS",), positive_int, 4000,
            "longest chat message accepted (longer: 413)"),
    Setting("max_body_bytes", ("HA_AGENT_MAX_BODY_BYTES",), positive_int, 65536,
            "largest request body accepted (larger: 413)"),
    Setting("reports_api", ("HA_AGENT_TRACING_REPORTS_API",), choice("off", "on"), "off",
            "`on` serves /api/v1/performance/*"),
    Setting("api_token", ("HA_AGENT_TRACING_API_TOKEN",), text, None,
            "bearer token the performance endpoints require"),
    Setting("api_allow_loopback", ("HA_AGENT_TRACING_API_ALLOW_LOOPBACK",), boolean, False,
            "`true`: loopback clients may read the performance endpoints without a token (development)"),
    Setting("telemetry_relay", ("HA_AGENT_TELEMETRY_RELAY",), choice("off", "on"), "on",
            "`on` serves POST /api/v1/telemetry/traces, the chat page's span relay"),
    Setting("telemetry_service_name", ("HA_AGENT_TELEMETRY_SERVICE_NAME",), text, "ai-automation-ui",
            "the only `service.name` whose spans the relay accepts (the chat page's)"),
    Setting("telemetry_max_spans", ("HA_AGENT_TELEMETRY_MAX_SPANS",), positive_int, 256,
            "spans per relay request at most (more: 413); bodies are bounded by `HA_AGENT_MAX_BODY_BYTES`"),
    Setting("telemetry_rate_limit", ("HA_AGENT_TELEMETRY_RATE_LIMIT",), positive_int, 120,
            "relay requests per client per `HA_AGENT_RATE_LIMIT_WINDOW` (more: 429)"),
    Setting("jaeger_url", ("HA_AGENT_TRACING_JAEGER_URL",), url, None,
            "Jaeger UI the dashboard links each trace to (`http://localhost:16686`); unset: no link"),
    CAPTURE_MESSAGE_CONTENT,
)  # fmt: skip


@dataclass(frozen=True)
class AgentSettings:
    """Resolved settings of the agent service; build with :func:`load_agent_settings`."""

    host: str
    port: int
    openai_api_key: str | None
    openai_base_url: str | None
    model: str
    openai_timeout_s: float
    openai_max_retries: int
    chat_timeout_s: float
    stream: bool
    model_latency_ms: int
    home_latency_ms: int
    ha_url: str | None
    ha_token: str | None
    exposed_entities: tuple[str, ...] | None
    confirm_domains: tuple[str, ...]
    rate_limit: int
    rate_limit_window_s: float
    max_iterations: int
    history_token_budget: int
    context_ttl_s: float
    parallel_tools: bool
    max_message_chars: int
    max_body_bytes: int
    reports_api: str
    api_token: str | None
    api_allow_loopback: bool
    telemetry_relay: str
    telemetry_service_name: str
    telemetry_max_spans: int
    telemetry_rate_limit: int
    jaeger_url: str | None
    capture_message_content: CaptureMode

    @property
    def embedded_model(self) -> bool:
        """Whether the service runs its own offline model (no key and no base URL)."""
        return self.openai_api_key is None and self.openai_base_url is None


def load_agent_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> AgentSettings:
    """Resolve the agent's settings: keyword override, then environment, then default."""
    names = {f.name for f in fields(AgentSettings)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown agent setting(s): {', '.join(sorted(unknown))}")
    reader = SettingsReader(os.environ if environ is None else environ, overrides)
    return AgentSettings(**{setting.name: reader.get(setting) for setting in AGENT_SETTINGS})
