"""Parts of the agent service on their own: the model's decisions, the REST home, the limiter."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ha_agent_tracing.agent._background import BackgroundServer
from ha_agent_tracing.agent._model_server import decide
from ha_agent_tracing.agent._rate_limit import RateLimiter

from .agent_harness import running_agent
from .ha_stand_in import home_assistant_stand_in

SYSTEM = {
    "role": "system",
    "content": "Entities:\n- light.kitchen (Kitchen Light): on\n- light.living_room (Living Room Light): off\n"
    "- lock.front_door (Front Door): locked\n- cover.garage_door (Garage Door): closed",
}


def user(text: str) -> list[dict[str, Any]]:
    return [SYSTEM, {"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        (
            "turn off the kitchen light",
            [("call_service", {"domain": "light", "service": "turn_off", "entity_id": "light.kitchen"})],
        ),
        (
            "Turn on the living room light",
            [("call_service", {"domain": "light", "service": "turn_on", "entity_id": "light.living_room"})],
        ),
        (
            "unlock the front door",
            [("call_service", {"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"})],
        ),
        (
            "turn on the garage light",
            [("call_service", {"domain": "light", "service": "turn_on", "entity_id": "light.garage"})],
        ),
        ("what's the temperature", [("get_entity_states", {"domain": "sensor"})]),
        ("which lights are on?", [("get_entity_states", {"domain": "light"})]),
    ],
)
def test_the_model_picks_tools_from_the_message_and_its_context(text: str, calls: list[Any]) -> None:
    """Entities resolve through the friendly names in the system message; unknown ones are guessed."""
    assert decide(user(text)) == (None, calls)


def test_two_requests_in_one_message_are_two_tool_calls_in_one_turn() -> None:
    """'... and ...' makes one call per clause."""
    content, calls = decide(user("turn off the kitchen light and what's the temperature"))
    assert content is None
    assert [name for name, _ in calls] == ["call_service", "get_entity_states"]


def test_after_tool_results_the_model_answers_in_words() -> None:
    """Tool results, errors included, become one sentence each."""
    messages = [
        *user("x"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "call_service", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "call_service", "arguments": "{}"}},
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "a",
            "content": json.dumps(
                {
                    "changed": [
                        {"entity_id": "light.kitchen", "state": "off", "friendly_name": "Kitchen Light"}
                    ]
                }
            ),
        },
        {
            "role": "tool",
            "tool_call_id": "b",
            "content": json.dumps({"error": "entity light.garage does not exist"}),
        },
    ]
    content, calls = decide(messages)
    assert calls == []
    assert content == "Kitchen Light is now off. I could not do that: entity light.garage does not exist."


def test_small_talk_gets_a_plain_answer() -> None:
    """No intent: text, no tool call."""
    content, calls = decide(user("good morning"))
    assert calls == [] and content and "kitchen light" in content


def test_rate_limiter_slides_its_window() -> None:
    """limit per window per client; the oldest hit leaving the window frees a slot."""
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.check("a") == (True, 0.0)
    now[0] = 4.0
    assert limiter.check("a") == (True, 0.0)
    assert limiter.check("b")[0] is True
    allowed, retry = limiter.check("a")
    assert (allowed, retry) == (False, pytest.approx(6.0))
    now[0] = 10.5
    assert limiter.check("a")[0] is True
    assert RateLimiter.retry_after_header(0.2) == "1"


def test_with_ha_url_and_token_the_tools_use_the_rest_api() -> None:
    """HA_URL + HA_TOKEN: context and tools go to Home Assistant's REST API with the bearer token."""
    calls: list[tuple[str, dict[str, Any]]] = []
    with BackgroundServer(home_assistant_stand_in("ha-secret", calls)) as ha:
        with running_agent(ha_url=ha.url, ha_token="ha-secret") as agent:
            answer = agent.chat("Turn on the hall light and what's the temperature").json()
        with running_agent(ha_url=ha.url, ha_token="wrong") as agent:
            refused = agent.chat("Turn on the hall light").json()
    assert calls == [("light.turn_on", {"entity_id": "light.hall"})]
    assert "Hall Light is now on" in answer["message"]
    assert "Attic Temperature is 30.5°C" in answer["message"]
    assert refused["tool_calls"][0]["success"] is False
    assert "401" in refused["message"]


def test_health_says_which_model_is_used() -> None:
    """/health answers and names the embedded model's URL."""
    with running_agent() as agent:
        body = httpx.get(f"{agent.url}/health").json()
    assert body["status"] == "ok"
    assert body["model"].startswith("http://127.0.0.1:")
