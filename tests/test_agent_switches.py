"""The reference service's switches for A/B runs: sequential tool calls and an uncached context."""

from __future__ import annotations

import logging

import pytest

from ha_agent_tracing.agent import load_agent_settings

from .agent_harness import running_agent

TWO_TOOLS = "Switch on the coffee maker and turn on the office fan"


def test_sequential_tool_calls_do_not_overlap() -> None:
    """HA_AGENT_PARALLEL_TOOLS=false: the second tool call starts after the first has ended."""
    with running_agent(home_latency_ms=30, parallel_tools=False) as agent:
        assert agent.chat(TWO_TOOLS).status_code == 200
        (report,) = agent.reports(1)
        first, second = sorted(agent.spans("tool_execution"), key=lambda s: s.start_time or 0)
    assert first.end_time is not None and second.start_time is not None
    assert second.start_time >= first.end_time
    tools = [m for m in report["metrics"] if m["name"] == "tool_execution"]
    assert len(tools) == 2 and all(t["metadata"]["success"] for t in tools)


def test_parallel_tool_calls_are_the_default() -> None:
    assert load_agent_settings(environ={}).parallel_tools is True
    assert load_agent_settings(environ={"HA_AGENT_PARALLEL_TOOLS": "false"}).parallel_tools is False


def test_context_ttl_zero_rebuilds_the_context_for_every_request() -> None:
    """HA_AGENT_CONTEXT_TTL=0: every context_refresh is a cache miss; by default the second is a hit."""
    for ttl, expected in ((0.0, [False, False, False]), (30.0, [False, True, True])):
        with running_agent(context_ttl_s=ttl) as agent:
            for _ in range(3):
                assert agent.chat("Hello").status_code == 200
            reports = agent.reports(3)
        hits = [
            m["metadata"]["cache_hit"]
            for r in reports
            for m in r["metrics"]
            if m["name"] == "context_refresh"
        ]
        assert hits == expected, ttl


def test_a_negative_context_ttl_warns_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ha_agent_tracing")
    assert load_agent_settings(environ={"HA_AGENT_CONTEXT_TTL": "-1"}).context_ttl_s == 30.0
    assert load_agent_settings(environ={"HA_AGENT_CONTEXT_TTL": "0"}).context_ttl_s == 0.0
    assert "HA_AGENT_CONTEXT_TTL" in caplog.text and "-1" in caplog.text
