"""The scale path: the prometheus/ rules under promtool, and a live Prometheus + Alertmanager.

Debian's ``prometheus`` (with ``promtool``) and ``prometheus-alertmanager`` are
installed by ``scripts/test``; a missing binary is an error, not a skip. Each
test starts its own instances on free loopback ports with their own config and
data directories.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from .agent_harness import Agent, running_agent
from .deploy_checks import tool as binary
from .webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    """`promtool check rules` and `promtool test rules prometheus/rules_test.yml` succeed."""
    promtool = binary("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", str(ROOT / "prometheus" / "rules_test.yml")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_prometheus_alerts_are_the_embedded_defaults() -> None:
    """Same names, thresholds and 'for' as the built-in rules of the embedded evaluator."""
    from ha_agent_tracing.analysis import default_rules

    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert set(alerts) == {rule.name for rule in default_rules()}
    for rule in default_rules():
        expr = alerts[rule.name]["expr"]
        assert alerts[rule.name].get("for", "0s") in (f"{int(rule.for_s // 60)}m", "0s")
        assert f'"{rule.target}"' in expr
        if rule.kind == "percentile":
            assert re.search(rf"> {rule.threshold / 1000:g}\b", expr)
        elif rule.kind == "error_ratio":
            assert re.search(rf"> {rule.threshold:g}\b", expr)
        else:
            assert f">= {rule.threshold:g} *" in expr and "offset 1d" in expr
        assert f">= {rule.min_count}" in expr


@contextmanager
def process(command: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; wait for ``ready_url`` to answer 200 first."""
    with log.open("w") as out:
        started = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert started.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield started
    finally:
        started.terminate()
        try:
            started.wait(15)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait(5)


def live_rules() -> dict[str, Any]:
    """The shipped rules with windows, thresholds and 'for' shrunk to a test's seconds.

    The expressions stay the shipped ones: only ``[5m]`` becomes ``[15s]``, the
    model-call threshold 3 s becomes 30 ms, the minimum count 5 becomes 1 and
    ``for`` 0s.
    """
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule["expr"] = rule["expr"].replace("[5m]", "[15s]")
            if rule.get("alert") == "openai_api_call_slow":
                rule["expr"] = rule["expr"].replace("> 3", "> 0.03").replace(">= 5", ">= 1")
                rule["for"] = "0s"
    return {"groups": groups}


def shipped_alertmanager(webhook: str) -> dict[str, Any]:
    """alertmanager/alertmanager.yml as shipped, its webhook pointed at ``webhook``, grouping in seconds."""
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    (receiver,) = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    receiver["webhook_configs"][0]["url"] = webhook
    config["route"].update({"group_wait": "1s", "group_interval": "1s"})
    return config


def shipped_prometheus(service: str, alertmanager: str, own_port: int) -> dict[str, Any]:
    """prometheus/prometheus.yml as shipped, with the compose hosts replaced by loopback ports.

    The collector's job scrapes the service's own endpoint instead (the same names);
    ``rule_files`` stays relative, resolved next to the file as in the container.
    """
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    targets = {"otel-collector": service, "prometheus": f"127.0.0.1:{own_port}"}
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [targets[job["job_name"]]]
    assert config["rule_files"] == ["rules.yml"]
    return config


def test_a_real_prometheus_fires_on_slow_requests_and_alertmanager_delivers_it(tmp_path: Path) -> None:
    """service /metrics -> Prometheus scrape -> shipped alert rule -> Alertmanager -> webhook receiver.

    Prometheus and Alertmanager run the shipped configs (their hosts replaced by loopback ports).
    """
    prometheus, alertmanager = binary("prometheus"), binary("prometheus-alertmanager")
    receiver = Receiver()
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(shipped_alertmanager(receiver.url)))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(live_rules()))
    tracing = {"metrics_exporter": "prometheus", "prometheus_port": 0, "alerts": False}
    try:
        with running_agent(model_latency_ms=60, rate_limit=100_000, tracing=tracing) as agent:
            assert agent.runtime.metrics is not None
            metrics_port = agent.runtime.metrics.prometheus_port
            config = shipped_prometheus(f"127.0.0.1:{metrics_port}", f"127.0.0.1:{am_port}", prom_port)
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            am_command = [
                alertmanager,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ]
            prom_command = [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            with (
                process(am_command, tmp_path / "alertmanager.log", f"http://127.0.0.1:{am_port}/-/ready"),
                process(prom_command, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"),
            ):
                firing = drive_until_delivered(agent, receiver, prom_port)
        (alert,) = [a for a in firing["alerts"] if a["labels"]["alertname"] == "openai_api_call_slow"]
        assert alert["status"] == "firing"
        assert alert["labels"]["metric"] == "openai_api_call"
        assert alert["annotations"]["summary"] == "Model calls are slow: p95 over 3 s for 5 minutes"
    finally:
        receiver.close()


def drive_until_delivered(agent: Agent, receiver: Receiver, prom_port: int) -> dict[str, Any]:
    """Send slow chat requests (bounded: 90 s) until the receiver has the firing notification."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert agent.chat("Which lights are on?").status_code == 200
        for payload in receiver.received:
            if payload["status"] == "firing" and any(
                a["labels"]["alertname"] == "openai_api_call_slow" for a in payload["alerts"]
            ):
                return payload
        time.sleep(0.3)
    alerts = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/alerts", timeout=5).json()
    raise AssertionError(f"no notification reached the receiver; Prometheus alerts: {alerts}")
