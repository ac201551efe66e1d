"""Structural checks of the compose stack's files.

No Docker engine, collector, Jaeger or Grafana binary runs here, so the files
are checked by construction: every component a pipeline names is defined under
its current (non-deprecated) name, and the ports, endpoints and mounts that tie
the service, the collector, Jaeger, Prometheus, Alertmanager and Grafana agree;
PromQL in the dashboard is read for the metric and label names it uses.
Each check returns a list of problems; an empty list means the files are
consistent.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

CURRENT = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch", "tail_sampling"},
    "exporters": {"otlp_grpc", "otlp_http", "debug", "load_balancing", "prometheus"},
    "connectors": {"span_metrics"},
    "extensions": {"health_check"},
}
DEPRECATED = {
    "otlp": "otlp_grpc",  # as an exporter
    "otlphttp": "otlp_http",
    "loadbalancing": "load_balancing",
    "spanmetrics": "span_metrics",
    "logging": "debug",
    "memorylimiter": "memory_limiter",
    "tailsampling": "tail_sampling",
    "healthcheck": "health_check",
}
_ENV_DEFAULT = re.compile(r"\$\{env:[A-Z_]+:-([^}]*)\}")
_ENV_NAME = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def tool(name: str) -> str:
    """A binary the test command installs (Debian's prometheus, prometheus-alertmanager); missing fails."""
    found = shutil.which(name)
    assert found is not None, (
        f"{name} is missing: ./scripts/test installs it (apt-get install prometheus ...)"
    )
    return found


def commented_block(text: str, name: str) -> dict[str, Any]:
    """A YAML document kept in comments between ``# BEGIN name`` and ``# END name``."""
    match = re.search(rf"^# BEGIN {name}\n(.*?)^# END {name}$", text, re.S | re.M)
    if match is None:
        raise AssertionError(f"no commented block {name!r}")
    lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in match.group(1).splitlines()]
    return yaml.safe_load("\n".join(lines))


def resolve_default(value: str) -> str:
    """``${env:X:-default}`` → ``default`` (the value compose-less runs get)."""
    return _ENV_DEFAULT.sub(lambda m: m.group(1), value)


def env_references(value: Any) -> set[str]:
    """Every variable a collector config reads with ``${env:NAME...}``, however deep."""
    if isinstance(value, dict):
        return {name for item in value.values() for name in env_references(item)}
    if isinstance(value, list):
        return {name for item in value for name in env_references(item)}
    return set(_ENV_NAME.findall(value)) if isinstance(value, str) else set()


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def collector_problems(config: dict[str, Any]) -> list[str]:
    """What is wrong with one collector configuration."""
    problems: list[str] = []
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines is empty")
    for section in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for component in config.get(section) or {}:
            kind = _type(component)
            if kind not in CURRENT[section]:
                hint = f" (use {DEPRECATED[kind]!r})" if kind in DEPRECATED else ""
                problems.append(f"{section}: {component!r} is not a current component name{hint}")
    for extension in (config.get("service") or {}).get("extensions") or []:
        if extension not in (config.get("extensions") or {}):
            problems.append(f"service.extensions names {extension!r}, which is not defined")
    connectors = config.get("connectors") or {}
    for name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section) or []:
                defined = config.get(section) or {}
                if component not in defined and (section == "processors" or component not in connectors):
                    problems.append(
                        f"pipeline {name} names {section[:-1]} {component!r}, which is not defined"
                    )
        processors = pipeline.get("processors") or []
        if not processors or processors[0] != "memory_limiter":
            problems.append(f"pipeline {name}: memory_limiter must come first")
        if "batch" in processors and processors.index("batch") != len(processors) - 1:
            problems.append(f"pipeline {name}: batch must come last")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"pipeline {name} needs receivers and exporters")
    # A connector joins two pipelines: it must end one (as an exporter) and start another.
    for connector in connectors:
        ends = [n for n, p in pipelines.items() if connector in (p.get("exporters") or [])]
        starts = [n for n, p in pipelines.items() if connector in (p.get("receivers") or [])]
        if not ends or not starts:
            problems.append(
                f"connector {connector!r} must be an exporter of one pipeline and a receiver of another"
            )
    http = (((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http") or {}
    origins = (http.get("cors") or {}).get("allowed_origins")
    if http and not origins:
        problems.append("the OTLP/HTTP receiver has no CORS allowed_origins")
    if origins and any("*" in resolve_default(str(o)) for o in origins):
        problems.append("CORS must name origins, not '*'")
    return problems


def receiver_port(config: dict[str, Any], protocol: str) -> int:
    endpoint = config["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
    return int(resolve_default(endpoint).rsplit(":", 1)[1])


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[1]) for p in service.get("ports") or []}


def compose_problems(compose: dict[str, Any], collector: dict[str, Any], dockerfile: str) -> list[str]:
    """What does not fit together between the compose file, the collector config and the Dockerfile."""
    from ha_agent_tracing._config import SETTINGS
    from ha_agent_tracing.agent._settings import AGENT_SETTINGS

    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    for name in ("jaeger", "otel-collector", "agent"):
        if name not in services:
            problems.append(f"service {name!r} is missing")
    if problems:
        return problems
    for name, service in services.items():
        image = service.get("image")
        if image is not None and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
        for dependency, rule in (service.get("depends_on") or {}).items():
            if dependency not in services:
                problems.append(f"{name} depends on {dependency!r}, which is not a service")
            elif rule.get("condition") == "service_healthy" and "healthcheck" not in services[dependency]:
                problems.append(f"{name} waits for {dependency} to be healthy, but it has no healthcheck")

    jaeger, otelcol, agent = services["jaeger"], services["otel-collector"], services["agent"]
    if 16686 not in _container_ports(jaeger):
        problems.append("the Jaeger UI (16686) is not published")

    config_arg = next((a for a in otelcol.get("command") or [] if str(a).startswith("--config=")), None)
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in otelcol.get("volumes") or []}
    if config_arg is None or mounts.get(config_arg.removeprefix("--config=")) != "./collector-config.yaml":
        problems.append("the collector's --config is not ./collector-config.yaml mounted at that path")

    published = _container_ports(otelcol)
    for protocol in ("grpc", "http"):
        if receiver_port(collector, protocol) not in published:
            problems.append(f"the collector's OTLP/{protocol} port is not published")
    health = int(resolve_default(collector["extensions"]["health_check"]["endpoint"]).rsplit(":", 1)[1])
    if health not in published:
        problems.append("the collector's health_check port is not published")

    jaeger_endpoint = (otelcol.get("environment") or {}).get("JAEGER_OTLP_ENDPOINT") or resolve_default(
        collector["exporters"]["otlp_grpc/jaeger"]["endpoint"]
    )
    host, _, port = str(jaeger_endpoint).rpartition(":")
    if host not in services or port != "4317":
        problems.append(
            f"JAEGER_OTLP_ENDPOINT {jaeger_endpoint!r} is not Jaeger's OTLP/gRPC port on a service"
        )

    # The collector sees only the variables compose passes it: one the config reads but compose
    # leaves out silently takes its default, whatever the user exports in the shell.
    passed = set(otelcol.get("environment") or {})
    for var in sorted(env_references(collector) - passed):
        problems.append(f"the collector config reads {var}, which compose does not pass to the collector")
    for var in sorted(passed - env_references(collector)):
        problems.append(f"compose passes {var} to the collector, whose config does not read it")

    env = {k: str(v) for k, v in (agent.get("environment") or {}).items()}
    known = {var for setting in (*SETTINGS, *AGENT_SETTINGS) for var in setting.env}
    for var in env:
        if var.startswith(("OTEL_", "HA_AGENT_")) and var not in known:
            problems.append(f"agent sets {var}, which the service does not read")
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    match = re.match(r"^https?://([^:/]+):(\d+)", endpoint)
    protocol = "grpc" if env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc" else "http"
    if match is None or match.group(1) != "otel-collector":
        problems.append(f"the agent exports to {endpoint!r}, not the otel-collector service")
    elif int(match.group(2)) != receiver_port(collector, protocol):
        problems.append(
            f"the agent exports OTLP/{protocol} to port {match.group(2)}, the collector listens elsewhere"
        )

    history = env.get("HA_AGENT_TRACING_HISTORY_PATH", "")
    agent_mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in agent.get("volumes") or []}
    named = set(compose.get("volumes") or {})
    if not any(
        (history == target or history.startswith(target.rstrip("/") + "/")) and source in named
        for target, source in agent_mounts.items()
    ):
        problems.append(f"the agent's history ({history or 'unset'}) is not on a named volume")
    if (
        not re.search(r"HA_AGENT_TRACING_HISTORY_PATH=/data\b", dockerfile)
        or 'VOLUME ["/data"]' not in dockerfile
    ):
        problems.append("the Dockerfile does not keep the history in its /data volume")

    agent_port = int(env.get("HA_AGENT_PORT", "8000"))
    exposed = {int(p) for p in re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)}
    if agent_port not in exposed or agent_port not in _container_ports(agent):
        problems.append(f"HA_AGENT_PORT {agent_port} is not the Dockerfile's EXPOSE and the published port")
    if (agent.get("build") or {}).get("dockerfile", "Dockerfile") != "Dockerfile":
        problems.append("the agent is not built from ./Dockerfile")
    return problems


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def jaeger_problems(compose: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Jaeger v2 keeps traces on disk: its config, its volume and the stack's wiring agree."""
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    jaeger = services.get("jaeger") or {}
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in jaeger.get("volumes") or []}
    config_arg = next((a for a in jaeger.get("command") or [] if str(a).startswith("--config=")), None)
    if config_arg is None or mounts.get(config_arg.removeprefix("--config=")) != "./jaeger-config.yaml":
        problems.append("jaeger's --config is not ./jaeger-config.yaml mounted at that path")

    extensions: dict[str, Any] = config.get("extensions") or {}
    service = config.get("service") or {}
    for name in service.get("extensions") or []:
        if name not in extensions:
            problems.append(f"extension {name!r} is enabled but not configured")
    for needed in ("jaeger_storage", "jaeger_query", "healthcheckv2"):
        if needed not in (service.get("extensions") or []):
            problems.append(f"extension {needed!r} is not enabled")
    pipeline = ((service.get("pipelines") or {}).get("traces")) or {}
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline.get(kind) or []:
            if name not in (config.get(kind) or {}):
                problems.append(f"the traces pipeline uses {kind[:-1]} {name!r}, which is not defined")

    backends: dict[str, Any] = ((extensions.get("jaeger_storage") or {}).get("backends")) or {}
    written = str(((config.get("exporters") or {}).get("jaeger_storage_exporter") or {}).get("trace_storage"))
    queried = (((extensions.get("jaeger_query") or {}).get("storage")) or {}).get("traces")
    if written not in backends or queried != written:
        problems.append(
            f"spans are written to {written!r} and queried from {queried!r}: not one defined backend"
        )
    badger = (backends.get(written) or {}).get("badger") if written in backends else None
    if badger is None:
        problems.append("the trace storage is not Badger")
        return problems
    if badger.get("ephemeral", True):
        problems.append("Badger is ephemeral: traces would not survive a restart")
    named = set(compose.get("volumes") or {})
    for kind in ("keys", "values"):
        directory = str((badger.get("directories") or {}).get(kind, ""))
        if not any(
            directory.startswith(target.rstrip("/") + "/") and source in named
            for target, source in mounts.items()
        ):
            problems.append(f"Badger's {kind} directory {directory!r} is not on a named volume")
    ttl = resolve_default(str((badger.get("ttl") or {}).get("spans", "")))
    if not _DURATION.match(ttl):
        problems.append(f"Badger's ttl.spans {ttl!r} is not a duration")

    otlp_grpc = (((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("grpc") or {}
    if not str(otlp_grpc.get("endpoint", "")).endswith(":4317"):
        problems.append("jaeger does not receive OTLP/gRPC on 4317, where the collector sends")
    health = str(((extensions.get("healthcheckv2") or {}).get("http") or {}).get("endpoint", ""))
    if not health.endswith(":13133") or "13133/status" not in " ".join(
        map(str, (jaeger.get("healthcheck") or {}).get("test") or [])
    ):
        problems.append("jaeger's health check and its healthcheckv2 endpoint do not agree")
    ui = str((((extensions.get("jaeger_query") or {}).get("http")) or {}).get("endpoint", ""))
    if not ui.endswith(":16686") or 16686 not in _container_ports(jaeger):
        problems.append("the Jaeger UI is not served on the published 16686")
    return problems


# ---------------------------------------------------------------- the metrics and alerting stack


class Files:
    """The repository's files as a container sees them: parsed on demand, or replaced by a test."""

    def __init__(self, replaced: dict[str, Any] | None = None) -> None:
        self._replaced = dict(replaced or {})

    def exists(self, path: str) -> bool:
        return path in self._replaced or (ROOT / path).is_file()

    def load(self, path: str) -> Any:
        if path in self._replaced:
            return self._replaced[path]
        text = (ROOT / path).read_text()
        return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(container path, source) of each mount; a source starting with . is a bind mount."""
    found = []
    for volume in service.get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        found.append((target, source))
    return found


def host_path(service: dict[str, Any], container_path: str) -> str | None:
    """The repository path a bind mount shows at ``container_path`` (the longest mount wins)."""
    best: tuple[str, str] | None = None
    for target, source in _volumes(service):
        inside = container_path == target or container_path.startswith(target.rstrip("/") + "/")
        if inside and (best is None or len(target) > len(best[0])):
            best = (target, source)
    if best is None or not best[1].startswith("."):
        return None
    rest = container_path[len(best[0]) :].lstrip("/")
    return str(PurePosixPath(best[1].removeprefix("./")) / rest) if rest else best[1].removeprefix("./")


def _on_named_volume(service: dict[str, Any], container_path: str, named: set[str]) -> bool:
    return any(
        (container_path == target or container_path.startswith(target.rstrip("/") + "/")) and source in named
        for target, source in _volumes(service)
    )


def _flag(service: dict[str, Any], name: str) -> str | None:
    for arg in service.get("command") or []:
        if str(arg).startswith(f"{name}="):
            return str(arg).split("=", 1)[1]
    return None


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = resolve_default(str(address)).removeprefix("http://").rstrip("/").rpartition(":")
    return host, int(port) if port.isdigit() else -1


def stack_problems(compose: dict[str, Any], files: Files | None = None) -> list[str]:
    """Prometheus, Alertmanager, the collector's metrics path and Jaeger's Monitor tab, wired together."""
    files = files or Files()
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    named = set(compose.get("volumes") or {})
    for name in ("prometheus", "alertmanager", "otel-collector", "jaeger"):
        if name not in services:
            problems.append(f"service {name!r} is missing")
    if problems:
        return problems
    prometheus, alertmanager, otelcol, jaeger = (
        services[n] for n in ("prometheus", "alertmanager", "otel-collector", "jaeger")
    )
    collector = files.load("collector-config.yaml")

    # Prometheus: its config and every rule file it names are the repository's, mounted.
    config_path = _flag(prometheus, "--config.file") or "/etc/prometheus/prometheus.yml"
    config_file = host_path(prometheus, config_path)
    if config_file != "prometheus/prometheus.yml":
        problems.append(f"prometheus reads {config_path}, which is not ./prometheus/prometheus.yml mounted")
        return problems
    config = files.load(config_file)
    for rule_file in config.get("rule_files") or []:
        in_container = str(PurePosixPath(config_path).parent / rule_file)
        local = host_path(prometheus, in_container)
        if local is None or not files.exists(local):
            problems.append(
                f"prometheus.yml names rule file {rule_file!r}; {in_container} is not a mounted file"
            )
    if not (config.get("rule_files") or []):
        problems.append("prometheus.yml loads no rule files")
    if not _on_named_volume(prometheus, _flag(prometheus, "--storage.tsdb.path") or "/prometheus", named):
        problems.append(
            "prometheus keeps its data off a named volume: the 1-day offset of the regression rule needs it"
        )
    if "exemplar-storage" not in (_flag(prometheus, "--enable-feature") or ""):
        problems.append("prometheus runs without --enable-feature=exemplar-storage: exemplars are dropped")
    if 9090 not in _container_ports(prometheus):
        problems.append("the Prometheus UI (9090) is not published")

    # Prometheus -> Alertmanager.
    am_listen = _host_port(_flag(alertmanager, "--web.listen-address") or ":9093")[1]
    am_targets = [
        target
        for group in (config.get("alerting") or {}).get("alertmanagers") or []
        for static in group.get("static_configs") or []
        for target in static.get("targets") or []
    ]
    if f"alertmanager:{am_listen}" not in am_targets:
        problems.append(f"prometheus sends alerts to {am_targets}, not alertmanager:{am_listen}")

    # Prometheus scrapes the collector's prometheus exporter, keeping the exported job/instance.
    exporter = (collector.get("exporters") or {}).get("prometheus") or {}
    exporter_port = _host_port(exporter.get("endpoint", ""))[1]
    scrape = [
        job
        for job in config.get("scrape_configs") or []
        for static in job.get("static_configs") or []
        if f"otel-collector:{exporter_port}" in (static.get("targets") or [])
    ]
    if not scrape:
        problems.append(
            f"prometheus does not scrape the collector's prometheus exporter (otel-collector:{exporter_port})"
        )
    elif not all(job.get("honor_labels") for job in scrape):
        problems.append(
            "the collector's scrape job needs honor_labels: true (job and instance name the service)"
        )
    if not exporter.get("enable_open_metrics"):
        problems.append("the collector's prometheus exporter serves no OpenMetrics: exemplars are lost")
    pipelines = (collector.get("service") or {}).get("pipelines") or {}
    metrics_pipelines = [p for n, p in pipelines.items() if n.split("/")[0] == "metrics"]
    if not any(
        "prometheus" in (p.get("exporters") or []) and "otlp" in (p.get("receivers") or [])
        for p in metrics_pipelines
    ):
        problems.append("no metrics pipeline takes the service's OTLP metrics to the prometheus exporter")
    agent_env = {k: str(v) for k, v in ((services.get("agent") or {}).get("environment") or {}).items()}
    if agent_env.get("OTEL_METRICS_EXPORTER", "otlp") != "otlp":
        problems.append("the agent does not export its metrics over OTLP to the collector")

    # Alertmanager: its config mounted, its route's receiver defined, state on a volume.
    am_config_path = _flag(alertmanager, "--config.file") or "/etc/alertmanager/alertmanager.yml"
    am_file = host_path(alertmanager, am_config_path)
    if am_file is None or not files.exists(am_file):
        problems.append(f"alertmanager reads {am_config_path}, which is not a mounted repository file")
    else:
        am = files.load(am_file)
        receivers = {r.get("name") for r in am.get("receivers") or []}
        if (am.get("route") or {}).get("receiver") not in receivers:
            problems.append("alertmanager's route sends to a receiver that is not defined")
        if not any(r.get("webhook_configs") for r in am.get("receivers") or []):
            problems.append("alertmanager has no webhook receiver")
    if not _on_named_volume(alertmanager, _flag(alertmanager, "--storage.path") or "/alertmanager", named):
        problems.append("alertmanager keeps silences and notification state off a named volume")
    problems.extend(_monitor_problems(jaeger, otelcol, collector, files))
    return problems


def _monitor_problems(
    jaeger: dict[str, Any], otelcol: dict[str, Any], collector: dict[str, Any], files: Files
) -> list[str]:
    """Jaeger's Monitor tab reads the span_metrics connector's output from Prometheus."""
    problems: list[str] = []
    config = files.load("jaeger-config.yaml")
    extensions = config.get("extensions") or {}
    query = extensions.get("jaeger_query") or {}
    backends = (extensions.get("jaeger_storage") or {}).get("metric_backends") or {}
    metrics_store = (query.get("storage") or {}).get("metrics")
    backend = (backends.get(metrics_store) or {}).get("prometheus") if metrics_store in backends else None
    if backend is None:
        problems.append(
            f"jaeger_query reads metrics from {metrics_store!r}, not a defined prometheus metric backend"
        )
        return problems
    endpoint = (jaeger.get("environment") or {}).get("PROMETHEUS_ENDPOINT") or resolve_default(
        backend["endpoint"]
    )
    if _host_port(str(endpoint)) != ("prometheus", 9090):
        problems.append(f"jaeger queries Prometheus at {endpoint!r}, not the prometheus service's 9090")
    passed = set(jaeger.get("environment") or {})
    for var in sorted(env_references(config) - passed):
        problems.append(f"the jaeger config reads {var}, which compose does not pass to jaeger")
    for var in sorted(passed - env_references(config)):
        problems.append(f"compose passes {var} to jaeger, whose config does not read it")

    connector = (collector.get("connectors") or {}).get("span_metrics")
    if connector is None:
        problems.append("the collector has no span_metrics connector")
        return problems
    namespace = str(connector.get("namespace", "traces.span.metrics")).replace(".", "_")
    if backend.get("metric_namespace", "traces_span_metrics") != namespace:
        problems.append(
            f"jaeger reads metric_namespace {backend.get('metric_namespace')!r}, the connector writes {namespace!r}"
        )
    unit = str((connector.get("histogram") or {}).get("unit", "ms"))
    if backend.get("latency_unit", "ms") != unit:
        problems.append(
            f"jaeger reads latency_unit {backend.get('latency_unit')!r}, the connector records {unit!r}"
        )
    translation = ((collector.get("exporters") or {}).get("prometheus") or {}).get(
        "translation_strategy", "UnderscoreEscapingWithSuffixes"
    )
    suffixes = translation.endswith("WithSuffixes")
    if (
        bool(backend.get("normalize_calls")) != suffixes
        or bool(backend.get("normalize_duration")) != suffixes
    ):
        problems.append(
            "jaeger's normalize_calls/normalize_duration do not match the collector's metric names "
            f"({translation}: _total and unit suffixes {'added' if suffixes else 'left off'})"
        )
    pipelines = (collector.get("service") or {}).get("pipelines") or {}
    traced = any(
        "span_metrics" in (p.get("exporters") or []) for n, p in pipelines.items() if n.startswith("traces")
    )
    exported = any(
        "span_metrics" in (p.get("receivers") or []) and "prometheus" in (p.get("exporters") or [])
        for n, p in pipelines.items()
        if n.startswith("metrics")
    )
    if not (traced and exported):
        problems.append("span_metrics does not take the traces pipeline's spans to the prometheus exporter")

    ui_path = str((query.get("ui") or {}).get("config_file", ""))
    ui_file = host_path(jaeger, ui_path) if ui_path else None
    if ui_file is None or not files.exists(ui_file):
        problems.append(f"jaeger's UI config {ui_path or '(none)'} is not a mounted repository file")
    elif not (files.load(ui_file).get("monitor") or {}).get("menuEnabled"):
        problems.append("the Jaeger UI config leaves the Monitor tab off (monitor.menuEnabled)")
    return problems


# ---------------------------------------------------------------- Grafana


PANEL_TYPES = {"row", "stat", "timeseries"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?:[:.][^}]*)?\}|\$([A-Za-z0-9_]+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s")
_SAMPLE_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=\"")
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series


def grafana_expr(expr: str) -> str:
    """A panel query as Prometheus would get it: Grafana's variables replaced by sample values."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return _VARIABLE.sub("x", expr)


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression reads (a ``label_values(...)`` query too)."""
    labels: set[str] = set()
    values = _LABEL_VALUES.match(expr)
    if values is not None:
        labels.add(values.group(2))
        expr = values.group(1) or ""
    text = _STRING.sub('""', expr)
    for match in _MATCHERS.finditer(text):
        labels |= set(_MATCHER_LABEL.findall(match.group(1)))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        labels |= set(_IDENT.findall(match.group(1)))
    text = _NUMBER.sub(" ", _OFFSET.sub(" ", _GROUPING.sub(" ", text)))
    metrics = {
        m.group(0)
        for m in _IDENT.finditer(text)
        if m.group(0) not in _KEYWORDS and not text[m.end() :].lstrip().startswith("(")
    }
    return metrics, labels


def exposition_series(text: str) -> dict[str, set[str]]:
    """Each sample name of a Prometheus text exposition, with the label names it carries."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line) if line and not line.startswith("#") else None
        if match is not None:
            found.setdefault(match.group(1), set()).update(_SAMPLE_LABEL.findall(match.group(2) or ""))
    return found


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of a dashboard."""
    found = []
    for panel in _panels(dashboard):
        for target in panel.get("targets") or []:
            found.append((f"panel {panel.get('title')!r} {target.get('refId')}", str(target.get("expr", ""))))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            found.append(
                (
                    f"variable {variable.get('name')!r}",
                    str(query.get("query") if isinstance(query, dict) else query),
                )
            )
    return found


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard.get("panels") or []:
        panels.append(panel)
        panels.extend(panel.get("panels") or [])  # a collapsed row keeps its panels inside
    return panels


def panel_query_problems(dashboard: dict[str, Any], exported: dict[str, set[str]]) -> list[str]:
    """Every query names series the service exports, and labels those series carry."""
    problems = []
    for where, expr in dashboard_queries(dashboard):
        metrics, labels = promql_names(grafana_expr(expr))
        if not metrics:
            problems.append(f"{where} reads no metric: {expr}")
        for name in sorted(metrics - set(exported)):
            problems.append(f"{where} reads {name}, which the service does not export")
        known = SCRAPE_LABELS.union(*(exported.get(m, set()) for m in metrics))
        for label in sorted(labels - known):
            problems.append(f"{where} uses label {label!r}, which {sorted(metrics)} do not carry")
    return problems


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def grafana_problems(compose: dict[str, Any], files: Files | None = None) -> list[str]:
    """Grafana's service, provisioning and dashboard: mounted, pointing at the stack, a sane dashboard."""
    files = files or Files()
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    grafana = services.get("grafana")
    if grafana is None:
        return ["service 'grafana' is missing"]
    named = set(compose.get("volumes") or {})
    if host_path(grafana, "/etc/grafana/provisioning") != "grafana/provisioning":
        problems.append("./grafana/provisioning is not mounted at /etc/grafana/provisioning")
    if not _on_named_volume(grafana, "/var/lib/grafana", named):
        problems.append("Grafana's own state (/var/lib/grafana) is not on a named volume")
    if 3000 not in _container_ports(grafana):
        problems.append("Grafana (3000) is not published")
    for needed in ("prometheus", "jaeger"):
        if needed not in (grafana.get("depends_on") or {}):
            problems.append(f"grafana does not wait for {needed}")

    sources = files.load("grafana/provisioning/datasources/datasources.yml")
    by_uid: dict[str, dict[str, Any]] = {}
    for source in sources.get("datasources") or []:
        if source.get("uid") in by_uid:
            problems.append(f"data source uid {source.get('uid')!r} is defined twice")
        by_uid[str(source.get("uid"))] = source
    if sources.get("apiVersion") != 1:
        problems.append("the data sources file is not apiVersion 1")
    expected = {"prometheus": ("prometheus", 9090), "jaeger": ("jaeger", 16686)}
    for kind, (service, port) in expected.items():
        found = [s for s in by_uid.values() if s.get("type") == kind]
        if len(found) != 1:
            problems.append(f"expected one {kind} data source, found {len(found)}")
        elif _host_port(str(found[0].get("url", ""))) != (service, port):
            problems.append(
                f"the {kind} data source points at {found[0].get('url')!r}, not http://{service}:{port}"
            )
    prometheus_uids = {uid for uid, s in by_uid.items() if s.get("type") == "prometheus"}
    jaeger_uids = {uid for uid, s in by_uid.items() if s.get("type") == "jaeger"}
    destinations = [
        d
        for uid in prometheus_uids
        for d in (by_uid[uid].get("jsonData") or {}).get("exemplarTraceIdDestinations") or []
    ]
    if not any(d.get("name") == "trace_id" and d.get("datasourceUid") in jaeger_uids for d in destinations):
        problems.append("exemplars (label trace_id) do not link to the Jaeger data source")

    provider_file = files.load("grafana/provisioning/dashboards/dashboards.yml")
    paths = [str((p.get("options") or {}).get("path", "")) for p in provider_file.get("providers") or []]
    dashboards = [host_path(grafana, path) for path in paths]
    if not dashboards or None in dashboards:
        problems.append(f"the dashboard provider reads {paths}, not a mounted repository folder")
        return problems
    home = (grafana.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    home_file = host_path(grafana, str(home)) if home else None
    if home and (home_file is None or not files.exists(home_file)):
        problems.append(f"the home dashboard {home} is not a mounted repository file")
    dashboard_file = f"{dashboards[0]}/ha-agent-tracing.json"
    if not files.exists(dashboard_file):
        problems.append(f"{dashboard_file} is missing")
        return problems
    problems.extend(dashboard_problems(files.load(dashboard_file), prometheus_uids))
    return problems


def dashboard_problems(dashboard: dict[str, Any], prometheus_uids: set[str]) -> list[str]:
    """The dashboard JSON is one Grafana can load: ids, layout, data sources, variables, exemplars."""
    problems: list[str] = []
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not 0 < len(uid) <= 40:
        problems.append(f"the dashboard uid {uid!r} is not a string of 1 to 40 characters")
    if not dashboard.get("title"):
        problems.append("the dashboard has no title")
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append(
            f"schemaVersion {dashboard.get('schemaVersion')!r} is not a current one (36 or later)"
        )
    variables = {str(v.get("name")) for v in (dashboard.get("templating") or {}).get("list") or []}
    panels = _panels(dashboard)
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
        problems.append(f"panel ids {ids} are not unique integers")
    placed: list[tuple[str, dict[str, int]]] = []
    for panel in panels:
        title = panel.get("title")
        if panel.get("type") not in PANEL_TYPES:
            problems.append(
                f"panel {title!r} has type {panel.get('type')!r}, not one of {sorted(PANEL_TYPES)}"
            )
        grid = panel.get("gridPos") or {}
        if (
            not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h"))
            or grid["x"] < 0
            or grid["x"] + grid["w"] > 24
        ):
            problems.append(f"panel {title!r} has gridPos {grid} outside the 24 columns")
            continue
        for other, other_grid in placed:
            if _overlap(grid, other_grid):
                problems.append(f"panel {title!r} overlaps panel {other!r}")
        placed.append((str(title), grid))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        refs = [t.get("refId") for t in targets]
        if not targets or len(set(refs)) != len(refs):
            problems.append(f"panel {title!r} has no targets or repeats a refId")
        for source in [panel.get("datasource") or {}] + [t.get("datasource") or {} for t in targets]:
            if source.get("uid") not in prometheus_uids:
                problems.append(
                    f"panel {title!r} uses data source {source.get('uid')!r}, not a provisioned Prometheus"
                )
        texts = [str(t.get("expr", "")) for t in targets] + [
            str(link.get("url", ""))
            for link in ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("links") or []
        ]
        for text in texts:
            for a, b in _VARIABLE.findall(text):
                name = a or b
                if not name.startswith("__") and name not in variables:
                    problems.append(f"panel {title!r} uses ${name}, which the dashboard does not define")
    if not any(t.get("exemplar") for p in panels for t in p.get("targets") or []):
        problems.append("no panel shows exemplars: nothing links a point to its trace")
    return problems
