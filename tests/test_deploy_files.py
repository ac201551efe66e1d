"""The compose stack's files, validated without Docker.

docker-compose.yml, the Dockerfile, collector-config.yaml, jaeger-config.yaml,
prometheus/prometheus.yml and alertmanager/alertmanager.yml. A broken edit to
any of them must fail here: each check is shown to catch a typical mistake on a
mutated copy. Prometheus's and Alertmanager's own checkers (promtool, amtool,
from Debian's packages) validate their files.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploy_checks import (
    ROOT,
    Files,
    collector_problems,
    commented_block,
    compose_problems,
    jaeger_problems,
    load,
    stack_problems,
    tool,
)

COLLECTOR_TEXT = (ROOT / "collector-config.yaml").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dclint() -> str:
    """The dclint binary that scripts/test installs (or DCLINT); a missing one fails, never skips."""
    found = os.environ.get("DCLINT") or shutil.which(
        "dclint", path=str(ROOT / ".tools" / "node_modules" / ".bin")
    )
    assert found, "dclint is not installed: run ./scripts/test, which installs it with npm into .tools/"
    return found


def run_dclint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([dclint(), str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_the_compose_file_passes_dclint_against_the_current_schema() -> None:
    """dclint (schema and best practices) reports nothing."""
    result = run_dclint(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["services"]["jaeger"].update({"restart_policy": "always"}), "invalid-schema"),
        (lambda c: c["services"]["agent"].update({"ports": ["8000:8000"]}), "no-unbound-port-interfaces"),
        (
            lambda c: c["services"]["otel-collector"]["depends_on"]["jaeger"].update(
                {"condition": "eventually"}
            ),
            "invalid-schema",
        ),
    ],
)
def test_dclint_catches_a_broken_compose_edit(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    """A schema violation or an unsafe port binding fails the lint."""
    compose = load("docker-compose.yml")
    edit(compose)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose, sort_keys=False))
    result = run_dclint(broken)
    assert result.returncode != 0
    assert expected in result.stdout


def test_the_collector_config_is_consistent() -> None:
    """Every pipeline component is defined under a current name; memory_limiter first, batch last; CORS named."""
    assert collector_problems(load("collector-config.yaml")) == []


def test_the_collector_config_exports_to_jaeger_and_keeps_debug_off() -> None:
    """Traces go to Jaeger and span_metrics; metrics (ours and span_metrics') to the prometheus exporter."""
    config = load("collector-config.yaml")
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger", "span_metrics"]
    assert pipelines["metrics"]["receivers"] == ["otlp", "span_metrics"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert "debug" in config["exporters"]
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "${env:JAEGER_OTLP_ENDPOINT:-jaeger:4317}"
    assert "health_check" in config["service"]["extensions"]


@pytest.mark.parametrize("tier", ["tier-1", "tier-2"])
def test_the_scale_out_tiers_in_the_comments_are_valid_configs(tier: str) -> None:
    """The commented load_balancing and tail_sampling tiers pass the same checks."""
    config = commented_block(COLLECTOR_TEXT, tier)
    assert collector_problems(config) == []
    kinds = {name.split("/")[0] for name in [*config["exporters"], *config["processors"]]}
    assert ("load_balancing" if tier == "tier-1" else "tail_sampling") in kinds
    if tier == "tier-1":
        assert config["exporters"]["load_balancing"]["routing_key"] == "traceID"
    else:
        policies = {p["type"] for p in config["processors"]["tail_sampling"]["policies"]}
        assert {"status_code", "latency"} <= policies


def _mutated(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = copy.deepcopy(load("collector-config.yaml"))
    edit(config)
    return config


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c: c["processors"].pop("batch"), "names processor 'batch', which is not defined"),
        (
            lambda c: c["exporters"].update({"otlp/jaeger": c["exporters"].pop("otlp_grpc/jaeger")}),
            "use 'otlp_grpc'",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"].update({"processors": ["batch", "memory_limiter"]}),
            "memory_limiter must come first",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"]["exporters"].append("otlp_http/nowhere"),
            "not defined",
        ),
        (
            lambda c: c["receivers"]["otlp"]["protocols"]["http"]["cors"].update({"allowed_origins": ["*"]}),
            "not '*'",
        ),
        (
            lambda c: c["service"].update({"extensions": ["health_check", "pprof"]}),
            "'pprof', which is not defined",
        ),
        (
            lambda c: c["connectors"].update({"spanmetrics": c["connectors"].pop("span_metrics")}),
            "use 'span_metrics'",
        ),
        (
            lambda c: c["service"]["pipelines"]["traces"]["exporters"].remove("span_metrics"),
            "connector 'span_metrics' must be an exporter of one pipeline and a receiver of another",
        ),
        (
            lambda c: c["service"]["pipelines"]["metrics"]["receivers"].append("span_metrcs"),
            "names receiver 'span_metrcs', which is not defined",
        ),
    ],
)
def test_a_broken_collector_edit_is_caught(edit: Callable[[dict[str, Any]], None], problem: str) -> None:
    """Undefined components, deprecated names, wrong processor order and open CORS are each reported."""
    problems = collector_problems(_mutated(edit))
    assert any(problem in p for p in problems), problems


def test_compose_collector_and_dockerfile_agree() -> None:
    """Ports, endpoints, mounts, pinned images and the agent's OTEL_* variables fit together."""
    assert compose_problems(load("docker-compose.yml"), load("collector-config.yaml"), DOCKERFILE) == []


def test_jaeger_keeps_traces_on_a_volume() -> None:
    """Jaeger v2 with Badger on a named volume: config mounted, storage written and queried, ports agree."""
    assert jaeger_problems(load("docker-compose.yml"), load("jaeger-config.yaml")) == []


def _jaeger_edit(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> list[str]:
    compose = copy.deepcopy(load("docker-compose.yml"))
    config = copy.deepcopy(load("jaeger-config.yaml"))
    edit(compose, config)
    return jaeger_problems(compose, config)


def _badger(config: dict[str, Any]) -> dict[str, Any]:
    return config["extensions"]["jaeger_storage"]["backends"]["traces_on_disk"]["badger"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda compose, config: _badger(config).update({"ephemeral": True}), "would not survive a restart"),
        (
            lambda compose, config: compose["services"]["jaeger"].update(
                {"volumes": ["./jaeger-config.yaml:/etc/jaeger/config.yaml:ro"]}
            ),
            "not on a named volume",
        ),
        (
            lambda compose, config: _badger(config)["directories"].update({"values": "/tmp/values"}),
            "values directory",
        ),
        (
            lambda compose, config: config["exporters"]["jaeger_storage_exporter"].update(
                {"trace_storage": "elsewhere"}
            ),
            "not one defined backend",
        ),
        (
            lambda compose, config: config["extensions"]["jaeger_query"]["storage"].update(
                {"traces": "memstore"}
            ),
            "not one defined backend",
        ),
        (
            lambda compose, config: compose["services"]["jaeger"].update(
                {"command": ["--config=/etc/other.yaml"]}
            ),
            "--config",
        ),
        (
            lambda compose, config: config["service"]["extensions"].remove("jaeger_query"),
            "'jaeger_query' is not enabled",
        ),
        (lambda compose, config: _badger(config)["ttl"].update({"spans": "a week"}), "not a duration"),
        (
            lambda compose, config: config["extensions"]["healthcheckv2"]["http"].update(
                {"endpoint": "0.0.0.0:8080"}
            ),
            "health check",
        ),
    ],
)
def test_a_broken_jaeger_edit_is_caught(
    edit: Callable[[dict[str, Any], dict[str, Any]], None], problem: str
) -> None:
    """Ephemeral storage, directories off the volume, a backend nobody writes or reads, each reported."""
    problems = _jaeger_edit(edit)
    assert any(problem in p for p in problems), problems


def test_the_compose_stack_pins_the_documented_images() -> None:
    """Jaeger v2, the contrib collector, Prometheus, Alertmanager and Grafana at the pinned versions."""
    services = load("docker-compose.yml")["services"]
    assert services["jaeger"]["image"] == "cr.jaegertracing.io/jaegertracing/jaeger:2.20.0"
    assert services["otel-collector"]["image"] == "otel/opentelemetry-collector-contrib:0.159.0"
    assert services["prometheus"]["image"] == "prom/prometheus:v3.15.0"
    assert services["alertmanager"]["image"] == "prom/alertmanager:v0.34.1"
    assert services["grafana"]["image"] == "grafana/grafana:13.3.0"
    assert "/status" in " ".join(services["jaeger"]["healthcheck"]["test"])


def _compose_edit(edit: Callable[[dict[str, Any]], None]) -> list[str]:
    compose = copy.deepcopy(load("docker-compose.yml"))
    edit(compose)
    return compose_problems(compose, load("collector-config.yaml"), DOCKERFILE)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda c: c["services"]["agent"]["environment"].update(
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}
            ),
            "the collector listens elsewhere",
        ),
        (
            lambda c: c["services"]["agent"]["environment"].update(
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
            ),
            "not the otel-collector service",
        ),
        (
            lambda c: c["services"]["agent"]["environment"].update({"OTEL_EXPORTER_OTLP_ENDPIONT": "x"}),
            "does not read",
        ),
        (
            lambda c: c["services"]["otel-collector"]["environment"].update(
                {"JAEGER_OTLP_ENDPOINT": "jaeger:4318"}
            ),
            "JAEGER_OTLP_ENDPOINT",
        ),
        (
            lambda c: c["services"]["otel-collector"].update(
                {"volumes": ["./other.yaml:/etc/otelcol-contrib/config.yaml:ro"]}
            ),
            "--config",
        ),
        (
            lambda c: c["services"]["otel-collector"].update({"ports": ["127.0.0.1:4318:4318"]}),
            "OTLP/grpc port is not published",
        ),
        (
            lambda c: c["services"]["jaeger"].update(
                {"image": "cr.jaegertracing.io/jaegertracing/jaeger:latest"}
            ),
            "not pinned",
        ),
        (lambda c: c["services"]["jaeger"].pop("healthcheck"), "has no healthcheck"),
        (lambda c: c["services"]["agent"]["environment"].update({"HA_AGENT_PORT": "9000"}), "EXPOSE"),
        (
            lambda c: c["services"]["otel-collector"]["environment"].pop("COLLECTOR_DEBUG_VERBOSITY"),
            "reads COLLECTOR_DEBUG_VERBOSITY, which compose does not pass",
        ),
        (
            lambda c: c["services"]["otel-collector"]["environment"].pop("COLLECTOR_MEMORY_LIMIT_MIB"),
            "reads COLLECTOR_MEMORY_LIMIT_MIB, which compose does not pass",
        ),
        (
            lambda c: c["services"]["otel-collector"]["environment"].update({"COLLECTOR_DEBUG": "1"}),
            "passes COLLECTOR_DEBUG to the collector, whose config does not read it",
        ),
        (lambda c: c["services"]["agent"].pop("volumes"), "history (/data) is not on a named volume"),
        (
            lambda c: c["services"]["agent"]["environment"].update(
                {"HA_AGENT_TRACING_HISTORY_PATH": "/tmp/h"}
            ),
            "not on a named volume",
        ),
    ],
)
def test_a_broken_compose_wiring_is_caught(edit: Callable[[dict[str, Any]], None], problem: str) -> None:
    """Mismatched ports, misspelled variables, unpinned images and wrong mounts are each reported."""
    problems = _compose_edit(edit)
    assert any(problem in p for p in problems), problems


# ---------------------------------------------------------------- Prometheus, Alertmanager, Monitor tab


def test_prometheus_alertmanager_and_the_monitor_tab_are_wired() -> None:
    """Mounted configs and rule files, scrape and alert targets, exemplars, volumes, Jaeger's metric backend."""
    assert stack_problems(load("docker-compose.yml")) == []


def _stack_edit(path: str, edit: Callable[[Any], None]) -> list[str]:
    """stack_problems with one file (compose or a mounted config) edited."""
    compose = copy.deepcopy(load("docker-compose.yml"))
    if path == "docker-compose.yml":
        edit(compose)
        return stack_problems(compose)
    files = Files()
    content = copy.deepcopy(files.load(path))
    edit(content)
    return stack_problems(compose, Files({path: content}))


def _prometheus(c: dict[str, Any]) -> dict[str, Any]:
    return c["services"]["prometheus"]


def _metric_backend(c: dict[str, Any]) -> dict[str, Any]:
    return c["extensions"]["jaeger_storage"]["metric_backends"]["span_metrics_in_prometheus"]["prometheus"]


@pytest.mark.parametrize(
    ("path", "edit", "problem"),
    [
        (
            "docker-compose.yml",
            lambda c: _prometheus(c).update(
                {
                    "volumes": [
                        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                        "prometheus-data:/prometheus",
                    ]
                }
            ),
            "/etc/prometheus/rules.yml is not a mounted file",
        ),
        ("prometheus/prometheus.yml", lambda c: c.update({"rule_files": ["alerts.yml"]}), "'alerts.yml'"),
        ("prometheus/prometheus.yml", lambda c: c.update({"rule_files": []}), "loads no rule files"),
        (
            "docker-compose.yml",
            lambda c: (
                _prometheus(c)["command"].remove("--config.file=/etc/prometheus/prometheus.yml")
                or _prometheus(c)["command"].append("--config.file=/etc/prometheus.yml")
            ),
            "not ./prometheus/prometheus.yml mounted",
        ),
        (
            "docker-compose.yml",
            lambda c: _prometheus(c)["command"].remove("--enable-feature=exemplar-storage"),
            "exemplar-storage",
        ),
        (
            "docker-compose.yml",
            lambda c: _prometheus(c).update({"volumes": ["./prometheus:/etc/prometheus:ro"]}),
            "off a named volume",
        ),
        (
            "prometheus/prometheus.yml",
            lambda c: c["alerting"]["alertmanagers"][0]["static_configs"][0].update(
                {"targets": ["alertmanager:9094"]}
            ),
            "not alertmanager:9093",
        ),
        (
            "prometheus/prometheus.yml",
            lambda c: c["scrape_configs"][0]["static_configs"][0].update(
                {"targets": ["otel-collector:8888"]}
            ),
            "does not scrape the collector's prometheus exporter",
        ),
        ("prometheus/prometheus.yml", lambda c: c["scrape_configs"][0].pop("honor_labels"), "honor_labels"),
        (
            "collector-config.yaml",
            lambda c: c["exporters"]["prometheus"].update({"enable_open_metrics": False}),
            "exemplars are lost",
        ),
        (
            "collector-config.yaml",
            lambda c: c["service"]["pipelines"]["metrics"]["receivers"].remove("otlp"),
            "takes the service's OTLP metrics",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["agent"]["environment"].update({"OTEL_METRICS_EXPORTER": "none"}),
            "does not export its metrics over OTLP",
        ),
        (
            "alertmanager/alertmanager.yml",
            lambda c: c["route"].update({"receiver": "pager"}),
            "receiver that is not defined",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["alertmanager"]["volumes"].pop(),
            "off a named volume",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["jaeger"]["environment"].pop("PROMETHEUS_ENDPOINT"),
            "reads PROMETHEUS_ENDPOINT, which compose does not pass",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["jaeger"]["environment"].update(
                {"PROMETHEUS_ENDPOINT": "http://localhost:9090"}
            ),
            "not the prometheus service's 9090",
        ),
        (
            "jaeger-config.yaml",
            lambda c: _metric_backend(c).update({"metric_namespace": "span_metrics"}),
            "the connector writes 'traces_span_metrics'",
        ),
        ("jaeger-config.yaml", lambda c: _metric_backend(c).update({"latency_unit": "s"}), "latency_unit"),
        (
            "jaeger-config.yaml",
            lambda c: _metric_backend(c).update({"normalize_calls": False}),
            "normalize_calls",
        ),
        (
            "jaeger-config.yaml",
            lambda c: c["extensions"]["jaeger_query"]["storage"].pop("metrics"),
            "not a defined prometheus metric backend",
        ),
        ("jaeger-ui.json", lambda c: c["monitor"].update({"menuEnabled": False}), "Monitor tab off"),
        (
            "docker-compose.yml",
            lambda c: c["services"]["jaeger"]["volumes"].remove(
                "./jaeger-ui.json:/etc/jaeger/ui-config.json:ro"
            ),
            "not a mounted repository file",
        ),
        (
            "collector-config.yaml",
            lambda c: c["service"]["pipelines"]["metrics"]["receivers"].remove("span_metrics"),
            "span_metrics does not take the traces pipeline's spans",
        ),
    ],
)
def test_a_broken_stack_edit_is_caught(path: str, edit: Callable[[Any], None], problem: str) -> None:
    """Unmounted rule files, wrong targets and ports, lost exemplars, a Monitor tab reading nothing: each reported."""
    problems = _stack_edit(path, edit)
    assert any(problem in p for p in problems), problems


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    """`promtool check config prometheus/prometheus.yml` (which also checks the rule files it loads)."""
    result = _run([tool("promtool"), "check", "config", str(ROOT / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_promtool_catches_a_broken_prometheus_config(tmp_path: Path) -> None:
    """A rule file that is not there, and an unknown key, fail promtool."""
    config = load("prometheus/prometheus.yml")
    shutil.copy(ROOT / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    config["rule_files"] = ["rulez.yml"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode != 0 and "rulez.yml" in result.stdout + result.stderr
    config = load("prometheus/prometheus.yml")
    config["global"]["scrape_intervall"] = "15s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode != 0 and "scrape_intervall" in result.stdout + result.stderr


def test_amtool_accepts_the_alertmanager_config() -> None:
    """`amtool check-config alertmanager/alertmanager.yml` (amtool ships in Debian's prometheus-alertmanager)."""
    result = _run([tool("amtool"), "check-config", str(ROOT / "alertmanager" / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_catches_a_broken_alertmanager_config(tmp_path: Path) -> None:
    """A route to an undefined receiver, and a webhook without a URL, fail amtool."""
    for edit in (
        lambda c: c["route"].update({"receiver": "pager"}),
        lambda c: c["receivers"][0]["webhook_configs"][0].pop("url"),
    ):
        config = load("alertmanager/alertmanager.yml")
        edit(config)
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
        result = _run([tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")])
        assert result.returncode != 0, result.stdout
