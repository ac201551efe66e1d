"""Tracing configuration: every variable this library reads, in one table.

``load_config()`` resolves the table against the environment (and keyword
overrides, which win) into a frozen :class:`TracingConfig`. Nothing else in
the package reads ``os.environ`` for tracing settings; the SDK's own readers
are bypassed by passing every value explicitly, so that a bad value warns
once here instead of raising deep inside the SDK. Where OpenTelemetry reads a
variable itself whatever it is passed (at import, or the OTLP exporters'
headers), the variable is rewritten to its valid part before it does:
:func:`protect_opentelemetry_imports`, :func:`settle_otlp_headers`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ha_agent_tracing._attributes import VARIANT_ATTRIBUTE
from ha_agent_tracing._settings import (
    InvalidValue,
    Setting,
    SettingsReader,
    boolean,
    choice,
    choices_list,
    encode_http_headers,
    file_path,
    host,
    http_headers,
    key_values,
    logger,
    names,
    non_negative_int,
    optional_limit,
    port,
    positive_float,
    positive_int,
    ratio,
    text,
    url,
    url_patterns,
)
from ha_agent_tracing.telemetry._propagators import DEFAULT_PROPAGATORS, propagator_names

Protocol = Literal["grpc", "http/protobuf"]
Compression = Literal["gzip", "deflate", "none"]
CaptureMode = Literal["no_content", "span_only", "event_only", "span_and_event"]
"""Where GenAI content goes, as in the official GenAI instrumentation."""
CAPTURE_MODES: tuple[CaptureMode, ...] = ("no_content", "span_only", "event_only", "span_and_event")

DEFAULT_SERVICE_NAME = "ha-ai-agent-service"
_EXPORTERS = ("otlp", "console", "none")
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _capture_mode(raw: str) -> CaptureMode:
    lowered = raw.lower()
    if lowered in CAPTURE_MODES:
        return lowered  # type: ignore[return-value]
    if lowered in ("true", "false"):
        return "span_only" if lowered == "true" else "no_content"
    raise InvalidValue("expected one of " + ", ".join(CAPTURE_MODES) + ", true or false")


_DETECTOR_NAME = re.compile(r"^(\*|[a-z0-9_.-]+)$")


def _detector_names(raw: str) -> tuple[str, ...]:
    entries = names(raw)
    good = tuple(entry for entry in entries if _DETECTOR_NAME.match(entry))
    bad = [entry for entry in entries if entry not in good]
    if bad:
        raise InvalidValue(f"{', '.join(map(repr, bad))} cannot be detector names", fallback=good)
    return good


_VARIANT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def variant_name(raw: str) -> str:
    """A variant's name: up to 64 letters, digits, ``.``, ``_`` and ``-``."""
    if not _VARIANT_NAME.match(raw):
        raise InvalidValue("expected up to 64 letters, digits, '.', '_' or '-'")
    return raw


def _protocol(raw: str) -> str:
    parse = choice("grpc", "http/protobuf", aliases={"http/json": "http/protobuf"})
    try:
        return parse(raw)
    except InvalidValue as exc:
        if exc.fallback == "http/protobuf":
            raise InvalidValue(
                "the Python OTLP exporter has no JSON encoding", fallback="http/protobuf"
            ) from None
        raise


SERVICE_NAME = Setting(
    "service_name",
    ("OTEL_SERVICE_NAME",),
    text,
    None,
    "`service.name` of every span; unset: `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, "
    f"else `{DEFAULT_SERVICE_NAME}`",
)
RESOURCE_ATTRIBUTES = Setting(
    "resource_attributes",
    ("OTEL_RESOURCE_ATTRIBUTES",),
    key_values,
    dict[str, str](),
    "extra resource attributes, `key=value,...`",
)
TRACES_EXPORTER = Setting(
    "traces_exporter",
    ("OTEL_TRACES_EXPORTER",),
    choices_list(*_EXPORTERS),
    None,
    "`otlp`, `console`, `none` or a comma list; unset: `otlp` when an "
    "OTLP endpoint is set, else in-memory reports only",
)
OTLP_TRACES_ENDPOINT = Setting(
    "otlp_traces_endpoint",
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",),
    url,
    None,
    "full traces URL, used as it is",
)
OTLP_ENDPOINT = Setting(
    "otlp_endpoint",
    ("OTEL_EXPORTER_OTLP_ENDPOINT",),
    url,
    None,
    "base URL; `/v1/traces` is appended for HTTP",
)
OTLP_PROTOCOL = Setting(
    "otlp_protocol",
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    _protocol,
    "http/protobuf",
    "`grpc` or `http/protobuf`",
)
OTLP_HEADERS = Setting(
    "otlp_headers",
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    http_headers,
    dict[str, str](),
    "headers sent with each export, `name=value,...`, values percent-encoded (`Bearer%20abc`)",
)
OTLP_TIMEOUT_MS = Setting(
    "otlp_timeout_ms",
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    positive_float,
    10_000.0,
    "export request timeout in milliseconds (the spec's unit)",
)
OTLP_COMPRESSION = Setting(
    "otlp_compression",
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    choice("gzip", "deflate", "none"),
    "none",
    "`gzip`, `deflate` (HTTP) or `none`",
)
OTLP_INSECURE = Setting(
    "otlp_insecure",
    ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
    boolean,
    None,
    "gRPC without TLS; unset: from the endpoint's scheme",
)
SAMPLER = Setting(
    "sampler",
    ("OTEL_TRACES_SAMPLER",),
    choice(*_SAMPLERS),
    "parentbased_always_on",
    "which traces are exported (reports cover every request, see README)",
)
SAMPLER_ARG = Setting(
    "sampler_arg", ("OTEL_TRACES_SAMPLER_ARG",), ratio, 1.0, "ratio for the `traceidratio` samplers"
)
BSP_SCHEDULE_DELAY_MS = Setting(
    "bsp_schedule_delay_ms", ("OTEL_BSP_SCHEDULE_DELAY",), positive_int, 5000, "delay between two exports, ms"
)
BSP_MAX_QUEUE_SIZE = Setting(
    "bsp_max_queue_size",
    ("OTEL_BSP_MAX_QUEUE_SIZE",),
    positive_int,
    2048,
    "spans queued for export before new ones are dropped",
)
BSP_MAX_EXPORT_BATCH_SIZE = Setting(
    "bsp_max_export_batch_size",
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",),
    positive_int,
    64,
    "spans per export request (the SDK's default is 512; smaller batches spare requests' tail latency)",
)
BSP_EXPORT_TIMEOUT_MS = Setting(
    "bsp_export_timeout_ms",
    ("OTEL_BSP_EXPORT_TIMEOUT",),
    positive_int,
    30_000,
    "time allowed for one export, ms",
)
SDK_DISABLED = Setting(
    "sdk_disabled",
    ("OTEL_SDK_DISABLED",),
    boolean,
    False,
    "`true` turns tracing and reports off; the application runs unchanged",
)
ATTRIBUTE_VALUE_LENGTH_LIMIT = Setting(
    "attribute_value_length_limit",
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",),
    optional_limit,
    None,
    "longest string attribute; longer ones are cut",
)
SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT = Setting(
    "span_attribute_value_length_limit",
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",),
    optional_limit,
    None,
    "the same for span attributes only",
)
ATTRIBUTE_COUNT_LIMIT = Setting(
    "attribute_count_limit",
    ("OTEL_ATTRIBUTE_COUNT_LIMIT",),
    optional_limit,
    128,
    "most attributes per span, event or link",
)
SPAN_ATTRIBUTE_COUNT_LIMIT = Setting(
    "span_attribute_count_limit",
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",),
    optional_limit,
    None,
    "most attributes per span",
)
SPAN_EVENT_COUNT_LIMIT = Setting(
    "span_event_count_limit", ("OTEL_SPAN_EVENT_COUNT_LIMIT",), optional_limit, 128, "most events per span"
)
SPAN_LINK_COUNT_LIMIT = Setting(
    "span_link_count_limit", ("OTEL_SPAN_LINK_COUNT_LIMIT",), optional_limit, 128, "most links per span"
)
FASTAPI_EXCLUDED_URLS = Setting(
    "fastapi_excluded_urls",
    ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"),
    url_patterns,
    "",
    "more URL patterns (regular expressions) the server does not trace (performance and health "
    "endpoints never are)",
)
HTTPX_EXCLUDED_URLS = Setting(
    "httpx_excluded_urls",
    ("OTEL_PYTHON_HTTPX_EXCLUDED_URLS",),
    url_patterns,
    "",
    "URL patterns (regular expressions) of outgoing calls that are not traced",
)
DISABLED_INSTRUMENTATIONS = Setting(
    "disabled_instrumentations",
    ("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",),
    names,
    (),
    "instrumentations left off: a comma list of `fastapi`, `httpx`, `httpx2` (the openai client's) "
    "or `*`; other names are ignored here. Tracked metrics stay on",
)
CAPTURE_MESSAGE_CONTENT = Setting(
    "capture_message_content",
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",),
    _capture_mode,
    "no_content",
    "where chat text, tool arguments and results are recorded, as the official GenAI instrumentation "
    "reads it: `span_only`, `event_only`, `span_and_event` or `no_content` (only their lengths); "
    "`true` is `span_only`, `false` `no_content`",
)
RESOURCE_DETECTORS = Setting(
    "resource_detectors",
    ("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS",),
    _detector_names,
    (),
    "resource detectors of the OpenTelemetry SDK to run, a comma list (`process`, `os`, `host`, or any "
    "installed `opentelemetry_resource_detector` entry point); unknown names are ignored with a warning",
)
MAX_REPORTS = Setting(
    "max_reports",
    ("HA_AGENT_TRACING_MAX_REPORTS",),
    positive_int,
    100,
    "reports kept in memory (oldest dropped first)",
)
MAX_PENDING_TRACES = Setting(
    "max_pending_traces",
    ("HA_AGENT_TRACING_MAX_PENDING_TRACES",),
    positive_int,
    10_000,
    "requests still running that are tracked at once",
)
PENDING_TIMEOUT_S = Setting(
    "pending_timeout_s",
    ("HA_AGENT_TRACING_PENDING_TIMEOUT",),
    positive_float,
    300.0,
    "seconds after which a request whose root span never ended is dropped",
)
LATE_SPAN_WINDOW_S = Setting(
    "late_span_window_s",
    ("HA_AGENT_TRACING_LATE_SPAN_WINDOW",),
    positive_float,
    10.0,
    "seconds after a request ends in which its late spans still join its report",
)
MAX_SPANS_PER_REQUEST = Setting(
    "max_spans_per_request",
    ("HA_AGENT_TRACING_MAX_SPANS_PER_REQUEST",),
    positive_int,
    1_000,
    "spans kept per request for its report; more are counted and left out, the report marked `truncated`",
)
SHUTDOWN_TIMEOUT_S = Setting(
    "shutdown_timeout_s",
    ("HA_AGENT_TRACING_SHUTDOWN_TIMEOUT",),
    positive_float,
    5.0,
    "longest `shutdown_tracing()`, `flush_tracing()` and the flush at an app's shutdown wait for the "
    "last export, seconds",
)
PROPAGATORS = Setting(
    "propagators",
    ("OTEL_PROPAGATORS",),
    propagator_names,
    DEFAULT_PROPAGATORS,
    "context propagators for incoming and outgoing requests: `tracecontext`, `baggage`, `b3`, `b3multi`, "
    "`jaeger` (installed from `opentelemetry-propagator-b3`/`-jaeger`) or `none`; names that are not "
    "installed are dropped with a warning",
)
REPORT_UNSAMPLED = Setting(
    "report_unsampled",
    ("HA_AGENT_TRACING_REPORT_UNSAMPLED",),
    boolean,
    True,
    "`true`: a trace the sampler drops is still recorded for its report, only not exported",
)
VARIANT = Setting(
    "variant",
    ("HA_AGENT_TRACING_VARIANT",),
    variant_name,
    None,
    f"a name for this build or setting (resource attribute `{VARIANT_ATTRIBUTE}`, up to 64 letters, digits, "
    "`.`, `_`, `-`), carried by every report so `compare` can tell variants apart",
)

# ---------------------------------------------------------------- metrics

_METRICS_EXPORTERS = ("otlp", "prometheus", "console", "none")

METRICS_EXPORTER = Setting(
    "metrics_exporter",
    ("OTEL_METRICS_EXPORTER",),
    choices_list(*_METRICS_EXPORTERS),
    None,
    "`otlp`, `prometheus`, `console`, `none` or a comma list; unset: `otlp` when an OTLP endpoint "
    "is set, else no metrics",
)
OTLP_METRICS_ENDPOINT = Setting(
    "otlp_metrics_endpoint",
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",),
    url,
    None,
    "full metrics URL, used as it is; unset: `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/metrics` for HTTP)",
)
OTLP_METRICS_PROTOCOL = Setting(
    "otlp_metrics_protocol",
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    _protocol,
    "http/protobuf",
    "`grpc` or `http/protobuf`, for metrics",
)
OTLP_METRICS_HEADERS = Setting(
    "otlp_metrics_headers",
    ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    http_headers,
    dict[str, str](),
    "headers sent with each metrics export, `name=value,...`, values percent-encoded",
)
OTLP_METRICS_TIMEOUT_MS = Setting(
    "otlp_metrics_timeout_ms",
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    positive_float,
    10_000.0,
    "metrics export request timeout, ms",
)
OTLP_METRICS_COMPRESSION = Setting(
    "otlp_metrics_compression",
    ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    choice("gzip", "deflate", "none"),
    "none",
    "`gzip`, `deflate` (HTTP) or `none`, for metrics",
)
OTLP_METRICS_INSECURE = Setting(
    "otlp_metrics_insecure",
    ("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
    boolean,
    None,
    "gRPC metrics without TLS; unset: from the endpoint's scheme",
)
METRIC_EXPORT_INTERVAL_MS = Setting(
    "metric_export_interval_ms",
    ("OTEL_METRIC_EXPORT_INTERVAL",),
    positive_int,
    60_000,
    "time between two metric exports (`otlp`, `console`), ms",
)
METRIC_EXPORT_TIMEOUT_MS = Setting(
    "metric_export_timeout_ms",
    ("OTEL_METRIC_EXPORT_TIMEOUT",),
    positive_int,
    30_000,
    "time allowed for one metric export, ms",
)
METRICS_EXEMPLAR_FILTER = Setting(
    "metrics_exemplar_filter",
    ("OTEL_METRICS_EXEMPLAR_FILTER",),
    choice("trace_based", "always_on", "always_off"),
    "trace_based",
    "which measurements keep an exemplar (trace and span id): `trace_based` (sampled traces), "
    "`always_on`, `always_off`",
)
PROMETHEUS_HOST = Setting(
    "prometheus_host",
    ("OTEL_EXPORTER_PROMETHEUS_HOST",),
    host,
    "127.0.0.1",
    "address of the `prometheus` scrape endpoint: loopback unless you open it (`0.0.0.0` in a container)",
)
PROMETHEUS_PORT = Setting(
    "prometheus_port",
    ("OTEL_EXPORTER_PROMETHEUS_PORT",),
    port,
    9464,
    "port of the `prometheus` scrape endpoint (`/metrics`); `0` picks a free one",
)

METRICS_SETTINGS: tuple[Setting[Any], ...] = (
    METRICS_EXPORTER, OTLP_METRICS_ENDPOINT, OTLP_METRICS_PROTOCOL, OTLP_METRICS_HEADERS,
    OTLP_METRICS_TIMEOUT_MS, OTLP_METRICS_COMPRESSION, OTLP_METRICS_INSECURE, METRIC_EXPORT_INTERVAL_MS,
    METRIC_EXPORT_TIMEOUT_MS, METRICS_EXEMPLAR_FILTER, PROMETHEUS_HOST, PROMETHEUS_PORT,
)  # fmt: skip

# ---------------------------------------------------------------- alerting

ALERTS = Setting(
    "alerts",
    ("HA_AGENT_TRACING_ALERTS",),
    boolean,
    True,
    "`false` turns the embedded alert evaluator off",
)
ALERT_RULES = Setting(
    "alert_rules",
    ("HA_AGENT_TRACING_ALERT_RULES",),
    file_path,
    None,
    "a TOML file of alert rules; unset: the built-in rules (see Alerting)",
)
ALERT_INTERVAL_S = Setting(
    "alert_interval_s",
    ("HA_AGENT_TRACING_ALERT_INTERVAL",),
    positive_float,
    15.0,
    "seconds between two evaluations of the alert rules",
)
ALERT_WEBHOOK = Setting(
    "alert_webhook",
    ("HA_AGENT_TRACING_ALERT_WEBHOOK",),
    url,
    None,
    "URL that receives each firing and resolving in Alertmanager's webhook format",
)
ALERT_WEBHOOK_QUEUE = Setting(
    "alert_webhook_queue",
    ("HA_AGENT_TRACING_ALERT_WEBHOOK_QUEUE",),
    positive_int,
    100,
    "notifications waiting for the webhook at most; more are dropped and counted",
)
ALERT_WEBHOOK_RETRIES = Setting(
    "alert_webhook_retries",
    ("HA_AGENT_TRACING_ALERT_WEBHOOK_RETRIES",),
    non_negative_int,
    5,
    "retries of a failed webhook delivery, with exponential backoff from 1 s",
)

ALERT_SETTINGS: tuple[Setting[Any], ...] = (
    ALERTS, ALERT_RULES, ALERT_INTERVAL_S, ALERT_WEBHOOK, ALERT_WEBHOOK_QUEUE, ALERT_WEBHOOK_RETRIES,
)  # fmt: skip


def _history_path(raw: str) -> str:
    if "\x00" in raw:
        raise InvalidValue("a path cannot contain a NUL character")
    return "off" if raw.lower() == "off" else raw


HISTORY_PATH = Setting(
    "history_path",
    ("HA_AGENT_TRACING_HISTORY_PATH",),
    _history_path,
    None,
    "SQLite file that keeps every report (a directory: `history.sqlite3` in it); `off` turns history "
    "off; unset: `ha-agent-tracing/history.sqlite3` under `XDG_STATE_HOME`",
)
STATE_HOME = Setting(
    "state_home",
    ("XDG_STATE_HOME",),
    text,
    None,
    "per-user state directory (the history's default home); unset: `~/.local/state`",
)
HISTORY_RETENTION_DAYS = Setting(
    "history_retention_days",
    ("HA_AGENT_TRACING_HISTORY_RETENTION_DAYS",),
    positive_float,
    30.0,
    "reports older than this many days are deleted from history",
)
HISTORY_MAX_MB = Setting(
    "history_max_mb",
    ("HA_AGENT_TRACING_HISTORY_MAX_MB",),
    positive_int,
    256,
    "size cap of the history, MB; past it the oldest reports are deleted first",
)

SETTINGS: tuple[Setting[Any], ...] = (
    SERVICE_NAME, RESOURCE_ATTRIBUTES, TRACES_EXPORTER, OTLP_TRACES_ENDPOINT, OTLP_ENDPOINT, OTLP_PROTOCOL,
    OTLP_HEADERS, OTLP_TIMEOUT_MS, OTLP_COMPRESSION, OTLP_INSECURE, SAMPLER, SAMPLER_ARG,
    BSP_SCHEDULE_DELAY_MS, BSP_MAX_QUEUE_SIZE, BSP_MAX_EXPORT_BATCH_SIZE, BSP_EXPORT_TIMEOUT_MS,
    SDK_DISABLED, ATTRIBUTE_VALUE_LENGTH_LIMIT, SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, ATTRIBUTE_COUNT_LIMIT,
    SPAN_ATTRIBUTE_COUNT_LIMIT, SPAN_EVENT_COUNT_LIMIT, SPAN_LINK_COUNT_LIMIT, FASTAPI_EXCLUDED_URLS,
    CAPTURE_MESSAGE_CONTENT, MAX_REPORTS, MAX_PENDING_TRACES, PENDING_TIMEOUT_S, LATE_SPAN_WINDOW_S,
    MAX_SPANS_PER_REQUEST, SHUTDOWN_TIMEOUT_S, REPORT_UNSAMPLED, HTTPX_EXCLUDED_URLS,
    DISABLED_INSTRUMENTATIONS, RESOURCE_DETECTORS, PROPAGATORS, VARIANT,
    *METRICS_SETTINGS, *ALERT_SETTINGS,
    HISTORY_PATH, STATE_HOME, HISTORY_RETENTION_DAYS, HISTORY_MAX_MB,
)  # fmt: skip

# Read by OpenTelemetry itself, and fatal when bad, before load_config() could
# warn: the SDK at import time (SpanLimits), the FastAPI instrumentation at
# import time and the httpx one when instrumenting (regular expressions).
READ_BY_OPENTELEMETRY_AT_IMPORT: tuple[Setting[Any], ...] = (
    SPAN_ATTRIBUTE_COUNT_LIMIT,
    FASTAPI_EXCLUDED_URLS,
    HTTPX_EXCLUDED_URLS,
    PROPAGATORS,  # read by `import opentelemetry.propagate`, which `import fastapi` does (>= 0.165)
)


def protect_opentelemetry_imports(environ: MutableMapping[str, str] | None = None) -> None:
    """Fix the variables OpenTelemetry would raise on before it reads them.

    Called when ``ha_agent_tracing`` is imported, before it imports the SDK: a
    bad value is replaced by what can be salvaged from it, or removed, with
    the same one warning as any other bad value. (An application that imports
    the SDK before this package is on its own there.)
    """
    environ = os.environ if environ is None else environ
    reader = SettingsReader(environ)
    for setting in READ_BY_OPENTELEMETRY_AT_IMPORT:
        reader.sanitize(setting, environ)


def settle_otlp_headers(environ: MutableMapping[str, str] | None = None) -> None:
    """Rewrite the OTLP header variables to their valid part, encoded as the SDK's reader expects.

    The SDK's OTLP exporters read these variables themselves, whatever they
    are passed (the HTTP exporter merges them into the headers it is given),
    and warn about every entry they cannot parse. :func:`load_config` has
    already warned once about a bad value; called before an exporter is made,
    this leaves the SDK only what was kept, so it sends the same headers and
    says nothing more.
    """
    environ = os.environ if environ is None else environ
    for var in dict.fromkeys((*OTLP_HEADERS.env, *OTLP_METRICS_HEADERS.env)):
        raw = environ.get(var)
        if raw is None:
            continue
        try:
            kept = http_headers(raw)
        except InvalidValue as exc:
            kept = exc.fallback
        encoded = encode_http_headers(kept)
        if not encoded:
            del environ[var]
        elif encoded != raw:
            environ[var] = encoded


@dataclass(frozen=True)
class TracingConfig:
    """Every tracing setting, resolved. Build it with :func:`load_config`."""

    service_name: str
    resource_attributes: Mapping[str, str]
    exporters: tuple[str, ...]
    otlp_endpoint: str | None
    otlp_protocol: Protocol
    otlp_headers: Mapping[str, str]
    otlp_timeout_ms: float
    otlp_compression: Compression
    otlp_insecure: bool | None
    sampler: str
    sampler_arg: float
    bsp_schedule_delay_ms: int
    bsp_max_queue_size: int
    bsp_max_export_batch_size: int
    bsp_export_timeout_ms: int
    sdk_disabled: bool
    attribute_value_length_limit: int | None
    span_attribute_value_length_limit: int | None
    attribute_count_limit: int | None
    span_attribute_count_limit: int | None
    span_event_count_limit: int | None
    span_link_count_limit: int | None
    fastapi_excluded_urls: str
    httpx_excluded_urls: str
    disabled_instrumentations: tuple[str, ...]
    capture_message_content: CaptureMode
    resource_detectors: tuple[str, ...]
    propagators: str
    """``OTEL_PROPAGATORS`` as OpenTelemetry applies it (read by it at import; see ``_propagators``)."""
    max_reports: int
    max_pending_traces: int
    pending_timeout_s: float
    late_span_window_s: float
    max_spans_per_request: int
    shutdown_timeout_s: float
    report_unsampled: bool
    variant: str | None
    history_path: Path | None
    """The history's SQLite file; ``None`` when history is off."""
    history_retention_days: float
    history_max_mb: int
    export_explicit: bool
    """Whether export was asked for (an exporter named or an endpoint set)."""
    metrics_exporters: tuple[str, ...]
    otlp_metrics_endpoint: str | None
    otlp_metrics_protocol: Protocol
    otlp_metrics_headers: Mapping[str, str]
    otlp_metrics_timeout_ms: float
    otlp_metrics_compression: Compression
    otlp_metrics_insecure: bool | None
    metric_export_interval_ms: int
    metric_export_timeout_ms: int
    metrics_exemplar_filter: str
    prometheus_host: str
    prometheus_port: int
    alerts: bool
    alert_rules: str | None
    alert_interval_s: float
    alert_webhook: str | None
    alert_webhook_queue: int
    alert_webhook_retries: int


_OVERRIDABLE = {s.name for s in SETTINGS} | {"exporters"}


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> TracingConfig:
    """Resolve every setting: keyword override, then environment, then default.

    Unknown keyword names raise ``TypeError``; an invalid override value
    raises ``ValueError``; a bad environment value warns and falls back.
    """
    unknown = set(overrides) - _OVERRIDABLE
    if unknown:
        raise TypeError(f"unknown tracing setting(s): {', '.join(sorted(unknown))}")
    if "exporters" in overrides:
        overrides["traces_exporter"] = overrides.pop("exporters")
    for key in ("traces_exporter", "metrics_exporter"):
        if isinstance(overrides.get(key), list | tuple):
            overrides[key] = ",".join(overrides[key]) or "none"
    reader = SettingsReader(os.environ if environ is None else environ, overrides)
    values: dict[str, Any] = {s.name: reader.get(s) for s in SETTINGS}
    # The specification's order: OTEL_SERVICE_NAME, then service.name in
    # OTEL_RESOURCE_ATTRIBUTES, then the default.
    values["service_name"] = (
        values["service_name"] or values["resource_attributes"].get("service.name") or DEFAULT_SERVICE_NAME
    )

    protocol: Protocol = values["otlp_protocol"]
    endpoint = values.pop("otlp_traces_endpoint")
    base = values["otlp_endpoint"]
    if endpoint is None and base is not None:
        endpoint = base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"
    values["otlp_endpoint"] = endpoint

    named: tuple[str, ...] | None = values.pop("traces_exporter")
    if named is None:
        exporters: tuple[str, ...] = ("otlp",) if endpoint is not None else ()
    else:
        exporters = tuple(e for e in named if e != "none")
    values["exporters"] = exporters
    values["export_explicit"] = bool(named) or endpoint is not None

    metrics_protocol: Protocol = values["otlp_metrics_protocol"]
    metrics_endpoint = values["otlp_metrics_endpoint"]
    if metrics_endpoint is None and base is not None:
        metrics_endpoint = base if metrics_protocol == "grpc" else base.rstrip("/") + "/v1/metrics"
    values["otlp_metrics_endpoint"] = metrics_endpoint
    named_metrics: tuple[str, ...] | None = values.pop("metrics_exporter")
    if named_metrics is None:
        values["metrics_exporters"] = ("otlp",) if metrics_endpoint is not None else ()
    else:
        values["metrics_exporters"] = tuple(e for e in named_metrics if e != "none")
    if values["otlp_metrics_compression"] == "deflate" and metrics_protocol == "grpc":
        logger.warning("OTLP compression 'deflate' is not available over gRPC; using 'gzip' for metrics")
        values["otlp_metrics_compression"] = "gzip"

    if values["otlp_compression"] == "deflate" and protocol == "grpc":
        logger.warning("OTLP compression 'deflate' is not available over gRPC; using 'gzip' instead")
        values["otlp_compression"] = "gzip"
    if values["bsp_max_export_batch_size"] > values["bsp_max_queue_size"]:
        logger.warning(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%s is larger than OTEL_BSP_MAX_QUEUE_SIZE=%s; using %s instead",
            values["bsp_max_export_batch_size"],
            values["bsp_max_queue_size"],
            values["bsp_max_queue_size"],
        )
        values["bsp_max_export_batch_size"] = values["bsp_max_queue_size"]
    values["history_path"] = history_file(values["history_path"], values.pop("state_home"))
    names = {f.name for f in fields(TracingConfig)}
    return TracingConfig(**{k: v for k, v in values.items() if k in names})


def asked_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> set[str]:
    """Names of the settings given as ``overrides`` or set (not blank) in the environment."""
    environ = os.environ if environ is None else environ
    named = {"traces_exporter" if name == "exporters" else name for name in overrides}
    return named | {s.name for s in SETTINGS if any((environ.get(var) or "").strip() for var in s.env)}


HISTORY_FILE_NAME = "history.sqlite3"


def history_file(configured: str | Path | None, state_home: str | None) -> Path | None:
    """Where history lives: ``configured`` (a file, or a directory for ``history.sqlite3``), else the default.

    The default is ``$XDG_STATE_HOME/ha-agent-tracing/history.sqlite3``
    (``~/.local/state/...`` when that is unset or not absolute, as the XDG
    specification says). ``"off"`` gives ``None``.
    """
    if configured == "off":
        return None
    if configured is not None:
        path = Path(configured).expanduser()
        if path.is_dir() or str(configured).endswith(("/", "\\")):
            path = path / HISTORY_FILE_NAME
        return path
    base = Path(state_home) if state_home and Path(state_home).is_absolute() else None
    if base is None:
        try:
            base = Path.home() / ".local" / "state"
        except RuntimeError:  # no home directory at all
            logger.warning(
                "no home directory and no XDG_STATE_HOME: report history is off; "
                "set HA_AGENT_TRACING_HISTORY_PATH to keep it"
            )
            return None
    return base / "ha-agent-tracing" / HISTORY_FILE_NAME


def instrumentation_enabled(config: TracingConfig, name: str) -> bool:
    """Whether the instrumentation ``name`` (its entry-point name) is on."""
    disabled = config.disabled_instrumentations
    return name not in disabled and "*" not in disabled


def default_otlp_endpoint(protocol: Protocol, signal: Literal["traces", "metrics"] = "traces") -> str:
    """The spec's default endpoint for each protocol."""
    return "http://localhost:4317" if protocol == "grpc" else f"http://localhost:4318/v1/{signal}"
