"""A faithful Home Assistant agent: confirmed actions really happen, risky ones wait, only exposed entities."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ha_agent_tracing.agent import EmbeddedHome
from ha_agent_tracing.agent._background import BackgroundServer
from ha_agent_tracing.agent._conversations import Conversation
from ha_agent_tracing.agent._exposed import Exposure
from ha_agent_tracing.agent._tokens import _counter_for_encoding, get_counter
from ha_agent_tracing.agent._tools import ToolCall, ToolError, Tools, run_tool

from .agent_harness import running_agent
from .ha_stand_in import home_assistant_stand_in

SUNSET = "When the sun sets turn on the porch light"
SUNSET_ENTITY = "automation.when_the_sun_sets_turn_on_the_porch_light"


def metric(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in report["metrics"] if m["name"] == name]
    return found


def state_of(home: EmbeddedHome, entity_id: str) -> str | None:
    states = asyncio.run(home.states())
    return next((s["state"] for s in states if s["entity_id"] == entity_id), None)


def test_a_confirmed_automation_exists_in_the_embedded_home_afterwards() -> None:
    """Preview creates nothing; 'confirm' creates it in the home, and the answer names what was created."""
    home = EmbeddedHome()
    with running_agent(home=home) as agent:
        draft = agent.chat(SUNSET, "auto").json()
        assert home.automations == {}
        assert state_of(home, SUNSET_ENTITY) is None
        confirmed = agent.chat("confirm", "auto").json()
        reports = agent.reports(2)
    assert "Reply 'confirm'" in draft["message"]
    (config,) = home.automations.values()
    assert config["triggers"] == [{"trigger": "sun", "event": "sunset"}]
    assert config["actions"] == [{"action": "light.turn_on", "target": {"entity_id": "light.porch"}}]
    assert state_of(home, SUNSET_ENTITY) == "on"
    assert f"created {SUNSET_ENTITY}" in confirmed["message"]
    assert confirmed["tool_calls"] == [{"id": "confirmed_preview", "name": "automation", "success": True}]
    check = metric(reports[1], "pending_preview_check")
    assert check["metadata"]["executed"] is True and check["status"] == "ok"


def test_a_confirmed_automation_is_posted_to_home_assistants_rest_api() -> None:
    """With HA_URL: POST /api/config/automation/config/<id> with the previewed config."""
    calls: list[tuple[str, dict[str, Any]]] = []
    automations: dict[str, dict[str, Any]] = {}
    with (
        BackgroundServer(home_assistant_stand_in("ha-secret", calls, automations)) as ha,
        running_agent(ha_url=ha.url, ha_token="ha-secret") as agent,
    ):
        agent.chat("At 7:30 turn on the hall light", "rest")
        assert automations == {}
        answer = agent.chat("confirm", "rest").json()
    ((automation_id, config),) = automations.items()
    assert automation_id.isdigit()
    assert config["triggers"] == [{"trigger": "time", "at": "07:30:00"}]
    assert config["actions"] == [{"action": "light.turn_on", "target": {"entity_id": "light.hall"}}]
    assert f"(id {automation_id})" in answer["message"]


def test_an_automation_home_assistant_refuses_is_reported_as_not_created() -> None:
    """HA answers 400: the answer says it was not created and why; the check is marked failed."""
    calls: list[tuple[str, dict[str, Any]]] = []
    automations: dict[str, dict[str, Any]] = {}
    with (
        BackgroundServer(home_assistant_stand_in("ha-secret", calls, automations, refuse=True)) as ha,
        running_agent(ha_url=ha.url, ha_token="ha-secret") as agent,
    ):
        agent.chat("At 7:30 turn on the hall light", "refused")
        answer = agent.chat("yes", "refused").json()
        (_, report) = agent.reports(2)
    assert automations == {}
    assert answer["message"].startswith("I could not create the automation")
    assert "Message malformed" in answer["message"]
    assert answer["tool_calls"] == [{"id": "confirmed_preview", "name": "automation", "success": False}]
    check = metric(report, "pending_preview_check")
    assert check["metadata"]["executed"] is False and check["status"] == "error"


def test_opening_the_garage_waits_for_confirmation() -> None:
    """A cover service is a preview first: nothing moves until 'confirm'; then the door opens."""
    home = EmbeddedHome()
    with running_agent(home=home) as agent:
        first = agent.chat("Open the garage door", "garage").json()
        assert state_of(home, "cover.garage_door") == "closed"
        other = agent.chat("What's the temperature", "garage").json()
        assert state_of(home, "cover.garage_door") == "closed"
        done = agent.chat("confirm", "garage").json()
        reports = agent.reports(3)
    assert "call cover.open_cover on cover.garage_door" in first["message"]
    assert "Reply 'confirm'" in first["message"]
    assert "Living Room Temperature" in other["message"]
    assert state_of(home, "cover.garage_door") == "open"
    assert "cover.garage_door is now open" in done["message"]
    checks = [metric(r, "pending_preview_check")["metadata"] for r in reports]
    assert [c["has_pending_preview"] for c in checks] == [False, True, True]
    assert [c["confirmed"] for c in checks] == [False, False, True]
    assert checks[2]["preview_kind"] == "service" and checks[2]["executed"] is True


def test_unlocking_over_rest_is_sent_only_after_confirmation() -> None:
    """An exposed lock: no service call reaches Home Assistant before 'confirm', exactly one after."""
    calls: list[tuple[str, dict[str, Any]]] = []
    with (
        BackgroundServer(home_assistant_stand_in("ha-secret", calls)) as ha,
        running_agent(ha_url=ha.url, ha_token="ha-secret", exposed_entities=("*",)) as agent,
    ):
        agent.chat("Unlock the back door", "lock")
        assert calls == []
        answer = agent.chat("confirm", "lock").json()
    assert calls == [("lock.unlock", {"entity_id": "lock.back_door"})]
    assert "lock.back_door is now unlocked" in answer["message"]


def test_the_model_sees_only_exposed_entities() -> None:
    """Assist's default hides the lock and the alarm panel from the context and the tools."""
    with running_agent() as agent:
        everything = agent.chat("What is the status of everything?").json()
        (report,) = agent.reports(1)
    refresh = metric(report, "context_refresh")["metadata"]
    assert refresh["hidden_entity_count"] == 2
    assert refresh["entity_count"] == 12
    assert "Kitchen Light is on" in everything["message"]
    assert "Front Door is" not in everything["message"] and "Home Alarm" not in everything["message"]


def test_an_exposed_set_narrows_what_the_model_sees() -> None:
    """HA_AGENT_EXPOSED_ENTITIES=light.kitchen: one entity in the context and in the tools' answers."""
    with running_agent(exposed_entities=("light.kitchen",)) as agent:
        answer = agent.chat("What is the status of everything?").json()
        (report,) = agent.reports(1)
    assert metric(report, "context_refresh")["metadata"]["entity_count"] == 1
    assert answer["message"] == "Kitchen Light is on."


async def test_a_service_on_an_unexposed_entity_is_refused_and_nothing_changes() -> None:
    """Even a model that names a hidden entity cannot act on it."""
    home = EmbeddedHome()
    tools = Tools(home, Exposure())
    call = ToolCall(
        "c1", "call_service", '{"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}'
    )
    with pytest.raises(ToolError, match="not exposed"):
        await run_tool(tools, Conversation("x"), call)
    states = {s["entity_id"]: s["state"] for s in await home.states()}
    assert states["lock.front_door"] == "locked"


def test_gpt_4o_models_are_counted_with_o200k_base() -> None:
    """The model's own encoding: o200k_base for the gpt-4o family, cl100k_base for gpt-4."""
    o200k, cl100k = get_counter("gpt-4o-mini"), get_counter("gpt-4")
    assert (o200k.method, cl100k.method) == ("o200k_base", "cl100k_base")
    assert o200k.count("hello world") == 2
    russian = "Привет! Какая сегодня погода в Москве и нужно ли взять зонт?"
    assert o200k.count(russian) < cl100k.count(russian)


def test_the_report_names_the_encoding_used() -> None:
    """message_assembly says token_count_method=o200k_base for gpt-4o-mini."""
    with running_agent() as agent:
        agent.chat("Hello")
        (report,) = agent.reports(1)
    assert metric(report, "message_assembly")["metadata"]["token_count_method"] == "o200k_base"


def test_a_damaged_o200k_copy_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A data file whose hash is not tiktoken's is not used: the counter says cl100k_base instead."""
    import ha_agent_tracing.agent._tokens as tokens

    monkeypatch.setattr(tokens, "_O200K_SHA256", "0" * 64)
    _counter_for_encoding.cache_clear()
    try:
        assert get_counter("gpt-4o").method == "cl100k_base"
    finally:
        _counter_for_encoding.cache_clear()


def test_bad_exposure_and_confirmation_settings_warn_and_keep_the_safe_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Garbage never widens what the model may do: bad entries are dropped, nothing valid means the default."""
    from ha_agent_tracing.agent import load_agent_settings

    settings = load_agent_settings(
        {"HA_AGENT_CONFIRM_DOMAINS": "☃ ,=", "HA_AGENT_EXPOSED_ENTITIES": "light.*, not an entity"}
    )
    assert settings.confirm_domains == ("lock", "cover", "alarm_control_panel")
    assert settings.exposed_entities == ("light.*",)
    assert "HA_AGENT_CONFIRM_DOMAINS" in caplog.text and "'not an entity'" in caplog.text
