"""Every report carries its deployment's service.version and variant, so two variants compare from one set."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ha_agent_tracing import load_config
from ha_agent_tracing._cli import main
from ha_agent_tracing._version import __version__

from .agent_harness import running_agent


def test_reports_carry_the_variant_and_the_version() -> None:
    """HA_AGENT_TRACING_VARIANT becomes a resource attribute and a report key; service.version too."""
    with running_agent(tracing={"variant": "sequential"}, parallel_tools=False) as agent:
        assert agent.chat("Hello").status_code == 200
        (report,) = agent.reports(1)
        (server,) = [s for s in agent.spans() if s.name == "POST /api/v1/chat"]
    assert (report["variant"], report["service_version"]) == ("sequential", __version__)
    assert server.resource.attributes["ha_agent_tracing.variant"] == "sequential"


def test_without_a_variant_the_key_is_none_and_the_version_can_be_set() -> None:
    with running_agent(tracing={"resource_attributes": "service.version=2.1.0"}) as agent:
        assert agent.chat("Hello").status_code == 200
        (report,) = agent.reports(1)
    assert (report["variant"], report["service_version"]) == (None, "2.1.0")


def test_a_bad_variant_name_warns_and_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    assert load_config({"HA_AGENT_TRACING_VARIANT": "two words"}).variant is None
    assert "HA_AGENT_TRACING_VARIANT='two words' is not valid" in caplog.text
    assert load_config({"HA_AGENT_TRACING_VARIANT": "canary-2.a_b"}).variant == "canary-2.a_b"


def test_two_variants_compare_from_one_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reports of two variants in one file: each side of compare picks its variant."""
    reports = []
    for variant, parallel in (("parallel", True), ("sequential", False)):
        with running_agent(
            tracing={"variant": variant}, parallel_tools=parallel, home_latency_ms=30
        ) as agent:
            for _ in range(4):
                assert agent.chat("Switch on the coffee maker and turn on the office fan").status_code == 200
            reports += agent.reports(4)
    path = tmp_path / "both.json"
    path.write_text(json.dumps(reports))
    assert main(["compare", f"{path}#variant=parallel", f"{path}#variant=sequential", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    total = document["operations"]["chat_request"]["measures"][0]
    assert (total["n_a"], total["n_b"]) == (4, 4)
    assert total["p50_b"] > total["p50_a"] + 20, "one home round trip (30 ms) more when sequential"
