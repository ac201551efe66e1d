"""The performance dashboard at /performance and the endpoints it needs, against a real service.

The service runs on loopback with its history on; real chat requests against
the embedded model make the reports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ha_agent_tracing.agent import load_agent_settings

from .agent_harness import Agent, running_agent

MESSAGES = [
    "Which lights are on?",
    "Turn off the kitchen light and tell me the temperature",
    "Turn on the garage light",
    "Hello there",
    "Switch on the coffee maker and turn on the office fan",
]


def busy_agent(tmp_path: Path, **overrides: Any) -> Any:
    """The service with history in ``tmp_path`` and the Jaeger link set."""
    options: dict[str, Any] = {
        "tracing": {"history_path": str(tmp_path / "history.sqlite3")},
        "jaeger_url": "http://localhost:16686",
        "rate_limit": 1000,
    }
    options.update(overrides)
    return running_agent(**options)


def chat_some(agent: Agent) -> list[dict[str, Any]]:
    """Real chat requests; their reports as the tracker holds them."""
    for n, message in enumerate(MESSAGES):
        assert agent.chat(message, f"dash_{n}").status_code == 200
    return agent.reports(len(MESSAGES))


def test_access_answers_anyone_and_reveals_only_whether_a_token_is_needed(tmp_path: Path) -> None:
    """GET /access needs no token (the page asks it before showing its form); every other endpoint does."""
    with busy_agent(tmp_path) as agent:
        without = agent.api("/access", token=None)
        wrong = agent.api("/access", token="not-the-token")
        refused = {
            path: agent.api(path, token=None).status_code for path in ("/config", "/reports", "/alerts")
        }
    with busy_agent(tmp_path, api_token=None, api_allow_loopback=True) as agent:
        open_access = agent.api("/access", token=None).json()
    assert without.status_code == 200 and without.json() == {"token_required": True}
    assert wrong.status_code == 200 and wrong.json() == {"token_required": True}
    assert refused == {"/config": 401, "/reports": 401, "/alerts": 401}
    assert open_access == {"token_required": False}


def test_config_names_the_jaeger_ui_and_the_history_state(tmp_path: Path) -> None:
    """/config: HA_AGENT_TRACING_JAEGER_URL as set (or null) and history's state (or off)."""
    with busy_agent(tmp_path) as agent:
        chat_some(agent)
        deadline = time.monotonic() + 10
        while (config := agent.api("/config").json())["history"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
    with busy_agent(tmp_path, jaeger_url=None, tracing={"history_path": "off"}) as agent:
        bare = agent.api("/config").json()
    assert config == {"jaeger_url": "http://localhost:16686", "history": "ok"}
    assert bare == {"jaeger_url": None, "history": "off"}


def test_a_bad_jaeger_url_warns_and_leaves_no_link(caplog: pytest.LogCaptureFixture) -> None:
    """Not an http(s) URL (a javascript: link would run in the page): one warning, no link."""
    with caplog.at_level("WARNING"):
        settings = load_agent_settings({"HA_AGENT_TRACING_JAEGER_URL": "javascript:alert(1)"})
    assert settings.jaeger_url is None
    warned = [r.getMessage() for r in caplog.records if "HA_AGENT_TRACING_JAEGER_URL" in r.getMessage()]
    assert len(warned) == 1 and "javascript:alert(1)" in warned[0]
