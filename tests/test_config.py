"""Configuration from OTEL_* variables: values, precedence and bad input."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from ha_agent_tracing import load_config
from ha_agent_tracing._config import SETTINGS, instrumentation_enabled
from ha_agent_tracing._settings import InvalidValue, Setting, SettingsReader, key_values, url


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "ha_agent_tracing"
    ]


def test_defaults_run_on_reports_alone() -> None:
    """With nothing set: no exporter, parent-based always-on, the reference's 100 reports."""
    config = load_config({})
    assert config.exporters == ()
    assert config.export_explicit is False
    assert config.sampler == "parentbased_always_on"
    assert config.max_reports == 100
    assert config.otlp_protocol == "http/protobuf"
    assert config.service_name == "ha-ai-agent-service"


def test_an_endpoint_alone_turns_otlp_export_on() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT without OTEL_TRACES_EXPORTER exports over OTLP."""
    config = load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert config.exporters == ("otlp",)
    assert config.otlp_endpoint == "http://collector:4318/v1/traces"


def test_signal_endpoint_is_used_as_is_and_wins() -> None:
    """The traces-specific endpoint is taken verbatim and beats the generic one."""
    config = load_config(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom",
        }
    )
    assert config.otlp_endpoint == "http://b:9999/custom"


def test_grpc_endpoint_gets_no_path() -> None:
    """For gRPC the generic endpoint is the target itself."""
    config = load_config(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert (config.otlp_protocol, config.otlp_endpoint) == ("grpc", "http://c:4317")


def test_specific_protocol_beats_generic() -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL."""
    config = load_config(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    )
    assert config.otlp_protocol == "http/protobuf"


def test_exporter_list_and_none() -> None:
    """A comma list is honoured; 'none' alone means no exporter even with an endpoint."""
    assert load_config({"OTEL_TRACES_EXPORTER": "otlp, console"}).exporters == ("otlp", "console")
    config = load_config({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"})
    assert config.exporters == ()


def test_headers_and_resource_attributes_are_percent_decoded() -> None:
    """key=value lists, W3C-style percent-encoding decoded."""
    config = load_config(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-team=agents",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ha%2Cagent",
        }
    )
    assert config.otlp_headers == {"authorization": "Bearer abc", "x-team": "agents"}
    assert config.resource_attributes == {"deployment.environment": "prod", "team": "ha,agent"}


def test_overrides_beat_the_environment_and_bad_overrides_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments win; an invalid one raises; an unknown name is a TypeError."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert load_config(service_name="from-arg").service_name == "from-arg"
    assert load_config(exporters=["console"]).exporters == ("console",)
    assert load_config(max_reports="7").max_reports == 7
    with pytest.raises(ValueError, match="max_reports='zero' is not valid"):
        load_config(max_reports="zero")
    with pytest.raises(TypeError, match="unknown tracing setting"):
        load_config(service_nam="typo")


# Every variable, a bad value, and what must be used instead.
BAD_VALUES = [
    ("OTEL_TRACES_EXPORTER", "zipkin", "exporters", ()),
    ("OTEL_TRACES_EXPORTER", "otlp,jaeger", "exporters", ("otlp",)),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url", "otlp_endpoint", None),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x:1", "otlp_endpoint", None),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:99999", "otlp_endpoint", None),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "://", "otlp_endpoint", None),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "otlp_protocol", "http/protobuf"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "otlp_protocol", "http/protobuf"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc2", "otlp_protocol", "http/protobuf"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue,a=b", "otlp_headers", {"a": "b"}),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=x", "otlp_headers", {}),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "otlp_timeout_ms", 10_000.0),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5", "otlp_timeout_ms", 10_000.0),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "nan", "otlp_timeout_ms", 10_000.0),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "otlp_compression", "none"),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zip", "otlp_compression", "none"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "yes", "otlp_insecure", None),
    ("OTEL_TRACES_SAMPLER", "sometimes", "sampler", "parentbased_always_on"),
    ("OTEL_TRACES_SAMPLER_ARG", "1.5", "sampler_arg", 1.0),
    ("OTEL_TRACES_SAMPLER_ARG", "half", "sampler_arg", 1.0),
    ("OTEL_BSP_SCHEDULE_DELAY", "0", "bsp_schedule_delay_ms", 5000),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "bsp_max_queue_size", 2048),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots", "bsp_max_export_batch_size", 64),
    ("OTEL_BSP_EXPORT_TIMEOUT", "1e3", "bsp_export_timeout_ms", 30_000),
    ("OTEL_SDK_DISABLED", "1", "sdk_disabled", False),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-3", "attribute_value_length_limit", None),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "big", "span_attribute_value_length_limit", None),
    ("OTEL_ATTRIBUTE_COUNT_LIMIT", "x", "attribute_count_limit", 128),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "1.5", "span_attribute_count_limit", None),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", "many", "span_event_count_limit", 128),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", "-9", "span_link_count_limit", 128),
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sure", "capture_message_content", "no_content"),
    ("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "host,(((", "resource_detectors", ("host",)),
    ("OTEL_PROPAGATORS", "tracecontext,nonsense", "propagators", "tracecontext"),
    ("OTEL_PROPAGATORS", "xray", "propagators", "tracecontext,baggage"),
    ("HA_AGENT_TRACING_MAX_REPORTS", "0", "max_reports", 100),
    ("HA_AGENT_TRACING_MAX_PENDING_TRACES", "none", "max_pending_traces", 10_000),
    ("HA_AGENT_TRACING_PENDING_TIMEOUT", "-1", "pending_timeout_s", 300.0),
    ("HA_AGENT_TRACING_LATE_SPAN_WINDOW", "inf", "late_span_window_s", 10.0),
    ("HA_AGENT_TRACING_MAX_SPANS_PER_REQUEST", "0", "max_spans_per_request", 1_000),
    ("HA_AGENT_TRACING_SHUTDOWN_TIMEOUT", "0", "shutdown_timeout_s", 5.0),
    ("HA_AGENT_TRACING_REPORT_UNSAMPLED", "maybe", "report_unsampled", True),
    ("HA_AGENT_TRACING_VARIANT", "two words", "variant", None),
    ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "(((unbalanced", "fastapi_excluded_urls", ""),
    ("OTEL_PYTHON_EXCLUDED_URLS", "healthz,[oops", "fastapi_excluded_urls", "healthz"),
    ("OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "*star", "httpx_excluded_urls", ""),
    ("OTEL_METRICS_EXPORTER", "statsd", "metrics_exporters", ()),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "not a url", "otlp_metrics_endpoint", None),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc2", "otlp_metrics_protocol", "http/protobuf"),
    ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "=x", "otlp_metrics_headers", {}),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon", "otlp_metrics_timeout_ms", 10_000.0),
    ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zip", "otlp_metrics_compression", "none"),
    ("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "yes", "otlp_metrics_insecure", None),
    ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "metric_export_interval_ms", 60_000),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "0", "metric_export_timeout_ms", 30_000),
    ("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes", "metrics_exemplar_filter", "trace_based"),
    ("OTEL_EXPORTER_PROMETHEUS_HOST", "local host", "prometheus_host", "127.0.0.1"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000", "prometheus_port", 9464),
    ("HA_AGENT_TRACING_ALERTS", "maybe", "alerts", True),
    ("HA_AGENT_TRACING_ALERT_RULES", "rules\x00.toml", "alert_rules", None),
    ("HA_AGENT_TRACING_ALERT_INTERVAL", "0", "alert_interval_s", 15.0),
    ("HA_AGENT_TRACING_ALERT_WEBHOOK", "not a url", "alert_webhook", None),
    ("HA_AGENT_TRACING_ALERT_WEBHOOK_QUEUE", "0", "alert_webhook_queue", 100),
    ("HA_AGENT_TRACING_ALERT_WEBHOOK_RETRIES", "-1", "alert_webhook_retries", 5),
    ("HA_AGENT_TRACING_HISTORY_RETENTION_DAYS", "forever", "history_retention_days", 30.0),
    ("HA_AGENT_TRACING_HISTORY_MAX_MB", "0", "history_max_mb", 256),
    (
        "HA_AGENT_TRACING_HISTORY_PATH",
        "state\x00.sqlite3",
        "history_path",
        Path.home() / ".local" / "state" / "ha-agent-tracing" / "history.sqlite3",
    ),
]


FREE_TEXT = {
    "OTEL_SERVICE_NAME",  # any name is a valid name
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",  # unknown names are ignored
    "XDG_STATE_HOME",  # a relative one is ignored, as the XDG specification says (test_history.py)
}


@pytest.mark.parametrize(("var", "bad", "field", "used"), BAD_VALUES)
def test_a_bad_value_warns_once_naming_variable_value_and_fallback(
    caplog: pytest.LogCaptureFixture, var: str, bad: str, field: str, used: object
) -> None:
    """One warning names the variable, the bad value and what is used instead; loading carries on."""
    config = load_config({var: bad})
    assert getattr(config, field) == used
    (message,) = warnings_of(caplog)
    assert message.startswith(f"{var}={bad!r} is not valid")
    assert "instead" in message


def test_every_setting_in_the_table_has_a_bad_value_case() -> None:
    """No variable the project reads escapes the bad-value test above."""
    covered = {var for var, *_ in BAD_VALUES}
    free_text = FREE_TEXT
    everything = {var for setting in SETTINGS for var in setting.env}
    assert everything - free_text - covered == {
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE",  # same parser as OTEL_EXPORTER_OTLP_INSECURE
        "OTEL_RESOURCE_ATTRIBUTES",  # covered below: partly bad lists keep their good entries
    }


def test_partly_bad_resource_attributes_keep_the_good_entries(caplog: pytest.LogCaptureFixture) -> None:
    """One bad entry is dropped with a warning; the rest is kept."""
    config = load_config({"OTEL_RESOURCE_ATTRIBUTES": "team=agents,garbage,=x"})
    assert config.resource_attributes == {"team": "agents"}
    (message,) = warnings_of(caplog)
    assert (
        "OTEL_RESOURCE_ATTRIBUTES" in message and "'garbage'" in message and "{'team': 'agents'}" in message
    )


def test_a_bad_specific_variable_falls_back_to_the_generic_one(caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL garbage falls through to OTEL_EXPORTER_OTLP_PROTOCOL."""
    config = load_config(
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "bogus", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert config.otlp_protocol == "grpc"
    (message,) = warnings_of(caplog)
    assert re.search(r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='bogus' .* using 'grpc' instead", message)


def test_inconsistent_batch_sizes_are_clamped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A batch larger than the queue would make the SDK raise; it is clamped instead."""
    config = load_config({"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "500"})
    assert config.bsp_max_export_batch_size == 100
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=500" in warnings_of(caplog)[0]


def test_deflate_over_grpc_becomes_gzip(caplog: pytest.LogCaptureFixture) -> None:
    """gRPC has no deflate: gzip is used and the user is told."""
    config = load_config({"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert config.otlp_compression == "gzip"
    assert "deflate" in warnings_of(caplog)[0]


def test_garbage_everywhere_at_once_still_loads(caplog: pytest.LogCaptureFixture) -> None:
    """Every variable garbage at once: a config comes back, one warning per bad variable."""
    environ = {var: "\x00garbage\u2603(((" for setting in SETTINGS for var in setting.env}
    config = load_config(environ)
    assert config.max_reports == 100
    warned = {m.split("=", 1)[0] for m in warnings_of(caplog)}
    free_text = FREE_TEXT
    assert warned == {var for setting in SETTINGS for var in setting.env} - free_text


def test_reader_warns_once_per_variable_per_load(caplog: pytest.LogCaptureFixture) -> None:
    """Two settings reading one bad variable produce one warning."""
    reader = SettingsReader({"X": "nope"})
    first = Setting("a", ("X",), url, None)
    second = Setting("b", ("X",), url, None)
    assert reader.get(first) is None and reader.get(second) is None
    assert len(warnings_of(caplog)) == 1


def test_key_values_parser_reports_salvage() -> None:
    """The parser hands back what it could keep."""
    with pytest.raises(InvalidValue) as caught:
        key_values("a=1,b")
    assert caught.value.fallback == {"a": "1"}


IMPORT_PROBE = "import ha_agent_tracing, opentelemetry.sdk.trace, opentelemetry.instrumentation.fastapi; print('imported')"


def test_bad_variables_the_sdk_raises_on_at_import_are_fixed_before_it_reads_them() -> None:
    """Importing ha_agent_tracing first cleans them (one warning each); the SDK then imports fine."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "lots",
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "health,(((",
    }
    guarded = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, env=env, check=False
    )
    assert guarded.returncode == 0, guarded.stderr
    assert "imported" in guarded.stdout
    assert "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT='lots' is not valid" in guarded.stderr
    assert "using 'health' instead" in guarded.stderr
    unguarded = subprocess.run(
        [sys.executable, "-c", "import opentelemetry.sdk.trace"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert unguarded.returncode != 0, "without the guard the SDK itself refuses to import"
    assert "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in unguarded.stderr


def test_disabled_instrumentations_are_names_as_the_standard_loader_reads_them() -> None:
    """A comma list, spaces and case ignored; names of other tools' instrumentations are harmless."""
    config = load_config({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": " HTTPX2, requests,,httpx2"})
    assert config.disabled_instrumentations == ("httpx2", "requests")
    assert not instrumentation_enabled(config, "httpx2")
    assert instrumentation_enabled(config, "fastapi")
    everything = load_config({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"})
    assert not any(instrumentation_enabled(everything, name) for name in ("fastapi", "httpx", "httpx2"))
    assert load_config({}).disabled_instrumentations == ()
