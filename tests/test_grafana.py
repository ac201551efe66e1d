"""Grafana's provisioning and dashboard, validated without Grafana; the rules' metric names.

Grafana has no package that runs here, so its files are checked statically: the
compose service and its mounts, the data sources (Prometheus with exemplar links
to Jaeger), the dashboard JSON (layout, data sources, variables), every panel
query parsed by Prometheus's own parser (``promtool check rules``), and every
metric and label a query reads looked up in what the real service exports: the
service runs with the Prometheus exporter on loopback, answers real chat
requests from its embedded model, and its ``/metrics`` is scraped.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .agent_harness import running_agent
from .deploy_checks import (
    ROOT,
    Files,
    dashboard_queries,
    exposition_series,
    grafana_expr,
    grafana_problems,
    load,
    panel_query_problems,
    promql_names,
    tool,
)

DASHBOARD = "grafana/dashboards/ha-agent-tracing.json"
DATASOURCES = "grafana/provisioning/datasources/datasources.yml"


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample names and their labels, scraped from the real service after real chat requests."""
    tracing = {"metrics_exporter": "prometheus", "prometheus_port": 0, "alerts": False}
    with running_agent(rate_limit=100_000, tracing=tracing) as agent:
        for message in ("Which lights are on?", "Turn off the kitchen light and tell me the temperature"):
            assert agent.chat(message).status_code == 200
        agent.reports(2)
        assert agent.runtime.metrics is not None
        port = agent.runtime.metrics.prometheus_port
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return exposition_series(body)


def dashboard() -> dict[str, Any]:
    return Files().load(DASHBOARD)


def test_the_scrape_has_the_instruments_the_readme_documents(exported: dict[str, set[str]]) -> None:
    """The derived set is the real one: histograms of every documented instrument, with their labels."""
    for family in (
        "ha_agent_tracing_metric_duration_seconds",
        "ha_agent_tracing_operation_duration_seconds",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_token_usage",
        "http_server_duration_milliseconds",
        "http_client_duration_milliseconds",
    ):
        assert {f"{family}_bucket", f"{family}_sum", f"{family}_count"} <= set(exported), family
    assert {"metric", "operation", "status", "le"} <= exported[
        "ha_agent_tracing_metric_duration_seconds_bucket"
    ]
    assert "gen_ai_token_type" in exported["gen_ai_client_token_usage_sum"]


def test_every_exported_metric_is_documented_in_the_readme(exported: dict[str, set[str]]) -> None:
    """Each metric family of the real scrape is named, as Prometheus sees it, in the README's metrics table."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Metrics from the same spans") : readme.index("### Embedded alerting")]
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported} - {"target_info"}
    assert len(families) >= 9
    assert sorted(f for f in families if f"`{f}`" not in section) == []


def test_the_prometheus_rules_read_what_the_service_exports(exported: dict[str, set[str]]) -> None:
    """Every series prometheus/rules.yml reads is exported (or recorded by an earlier rule), with its labels."""
    groups = load("prometheus/rules.yml")["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    problems = []
    for group in groups:
        for rule in group["rules"]:
            metrics, labels = promql_names(rule["expr"])
            name = rule.get("record") or rule.get("alert")
            problems += [f"{name} reads {m}" for m in sorted(metrics - set(exported) - recorded)]
            carried = set().union(*(exported.get(m, set()) for m in metrics - recorded))
            if not metrics & recorded:
                problems += [f"{name} uses label {label}" for label in sorted(labels - carried)]
    assert problems == []
    assert len(recorded) >= 7


def test_every_panel_query_reads_what_the_service_exports(exported: dict[str, set[str]]) -> None:
    """Each query's metric names and labels are in the real scrape (names with Prometheus's unit suffixes)."""
    assert len(dashboard_queries(dashboard())) >= 15
    assert panel_query_problems(dashboard(), exported) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (  # the unit suffix of a seconds histogram is _seconds, not _milliseconds
            "ha_agent_tracing_metric_duration_seconds_bucket",
            "ha_agent_tracing_metric_duration_milliseconds_bucket",
            "reads ha_agent_tracing_metric_duration_milliseconds_bucket, which the service does not export",
        ),
        (  # the stable HTTP conventions' name; the service exports the older http.server.duration
            "http_server_duration_milliseconds_bucket",
            "http_server_request_duration_seconds_bucket",
            "reads http_server_request_duration_seconds_bucket",
        ),
        (
            "sum by (gen_ai_token_type, gen_ai_request_model)",
            "sum by (gen_ai_token_kind, gen_ai_request_model)",
            "'gen_ai_token_kind'",
        ),
        (
            "gen_ai_client_token_usage_sum",
            "gen_ai_client_token_usage_total",
            "gen_ai_client_token_usage_total",
        ),
    ],
)
def test_a_query_naming_something_not_exported_is_caught(
    exported: dict[str, set[str]], old: str, new: str, problem: str
) -> None:
    broken = Files().load(DASHBOARD)
    text = yaml.safe_dump(broken)  # replace in every query at once
    assert old in text
    broken = yaml.safe_load(text.replace(old, new))
    problems = panel_query_problems(broken, exported)
    assert any(problem in p for p in problems), problems


def test_promql_names_reads_metrics_and_labels() -> None:
    """The extractor used above, on fixed expressions (functions, grouping, matchers, ranges, numbers)."""
    metrics, labels = promql_names(
        'histogram_quantile(0.95, sum by (le, metric) (rate(a_seconds_bucket{job="x",metric=~"a|b"}[5m])))'
        " / on (metric) group_left b_total offset 1d > 1e-3"
    )
    assert metrics == {"a_seconds_bucket", "b_total"}
    assert labels == {"le", "metric", "job"}
    assert promql_names('label_values(c_count{operation=~"x"}, job)') == ({"c_count"}, {"operation", "job"})


def test_every_panel_query_parses_in_prometheus(tmp_path: Path) -> None:
    """Every query (Grafana's variables filled in) is valid PromQL to promtool, as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_expr(expr)}
        for i, (_, expr) in enumerate(dashboard_queries(dashboard()))
        if not expr.startswith("label_values(")
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules[0]["expr"] = rules[0]["expr"].replace("(rate(", "(rate(((", 1)
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    broken = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert broken.returncode != 0


def test_grafana_is_provisioned_and_the_dashboard_is_sane() -> None:
    """Mounts, data sources (exemplars link to Jaeger), provider path, home dashboard, panels, variables."""
    assert grafana_problems(load("docker-compose.yml")) == []


def _panel(d: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in d["panels"] if p.get("title") == title]
    return found


def _grafana_edit(path: str, edit: Callable[[Any], None]) -> list[str]:
    compose = copy.deepcopy(load("docker-compose.yml"))
    if path == "docker-compose.yml":
        edit(compose)
        return grafana_problems(compose)
    content = copy.deepcopy(Files().load(path))
    edit(content)
    return grafana_problems(compose, Files({path: content}))


@pytest.mark.parametrize(
    ("path", "edit", "problem"),
    [
        (DASHBOARD, lambda d: _panel(d, "p50 per metric")["gridPos"].update({"x": 6}), "overlaps"),
        (
            DASHBOARD,
            lambda d: _panel(d, "p50 per metric")["gridPos"].update({"w": 20}),
            "outside the 24 columns",
        ),
        (DASHBOARD, lambda d: _panel(d, "p50 per metric").update({"id": 1}), "not unique"),
        (DASHBOARD, lambda d: _panel(d, "p50 per metric").update({"type": "graph"}), "has type 'graph'"),
        (
            DASHBOARD,
            lambda d: _panel(d, "p50 per metric")["datasource"].update({"uid": "prom"}),
            "not a provisioned Prometheus",
        ),
        (
            DASHBOARD,
            lambda d: _panel(d, "p50 per metric")["targets"][0].update(
                {"expr": 'sum(rate(x{job="$svc"}[1m]))'}
            ),
            "uses $svc",
        ),
        (DASHBOARD, lambda d: d.update({"schemaVersion": "41"}), "schemaVersion"),
        (
            DASHBOARD,
            lambda d: [t.pop("exemplar", None) for p in d["panels"] for t in p.get("targets") or []],
            "no panel shows exemplars",
        ),
        (
            DATASOURCES,
            lambda s: s["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"][0].update(
                {"datasourceUid": "tempo"}
            ),
            "do not link to the Jaeger data source",
        ),
        (
            DATASOURCES,
            lambda s: s["datasources"][0].update({"url": "http://localhost:9090"}),
            "not http://prometheus:9090",
        ),
        (
            DATASOURCES,
            lambda s: s["datasources"][1].update({"url": "http://jaeger:16685"}),
            "not http://jaeger:16686",
        ),
        (
            "grafana/provisioning/dashboards/dashboards.yml",
            lambda s: s["providers"][0]["options"].update({"path": "/var/lib/grafana/dashboards"}),
            "not a mounted repository folder",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["grafana"]["volumes"].remove(
                "./grafana/dashboards:/etc/grafana/dashboards:ro"
            ),
            "not a mounted repository folder",
        ),
        (
            "docker-compose.yml",
            lambda c: c["services"]["grafana"]["volumes"].remove("grafana-data:/var/lib/grafana"),
            "not on a named volume",
        ),
    ],
)
def test_a_broken_grafana_edit_is_caught(path: str, edit: Callable[[Any], None], problem: str) -> None:
    problems = _grafana_edit(path, edit)
    assert any(problem in p for p in problems), problems
