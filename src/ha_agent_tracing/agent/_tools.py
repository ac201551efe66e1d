"""The Home Assistant tools the model may call, with their OpenAI schemas.

The model sees and acts on exposed entities only. Two kinds of action wait
for the user's confirmation instead of running at once: a drafted automation,
and a service of a risky domain (locks, covers such as garage doors, alarm
panels: ``HA_AGENT_CONFIRM_DOMAINS``). Either is kept as the conversation's
pending preview, and :func:`execute_preview` carries it out when the user
confirms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ha_agent_tracing.agent._conversations import Conversation
from ha_agent_tracing.agent._exposed import Exposure
from ha_agent_tracing.agent._home import Home, HomeError, automation_entity_id, automation_problems

__all__ = ["TOOL_SCHEMAS", "ToolError", "Tools", "describe_preview", "execute_preview", "run_tool"]


class ToolError(Exception):
    """A tool call the model got wrong, or one Home Assistant refused; shown to the model."""


def _schema(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _schema(
        "get_entity_states",
        "List Home Assistant entities and their current states, optionally of one domain or one entity.",
        {
            "domain": {"type": "string", "description": "e.g. light, sensor, climate"},
            "entity_id": {"type": "string", "description": "e.g. light.kitchen"},
        },
        [],
    ),
    _schema(
        "call_service",
        "Call a Home Assistant service on an entity, e.g. light.turn_on for light.kitchen.",
        {
            "domain": {"type": "string"},
            "service": {"type": "string"},
            "entity_id": {"type": "string"},
            "data": {"type": "object", "description": "extra service data, e.g. {temperature: 20}"},
        },
        ["domain", "service", "entity_id"],
    ),
    _schema(
        "preview_automation",
        "Draft a Home Assistant automation for the user to review; it is created only when they confirm.",
        {
            "alias": {"type": "string"},
            "description": {"type": "string"},
            "triggers": {
                "type": "array",
                "items": {"type": "object"},
                "description": 'Home Assistant triggers, e.g. [{"trigger": "sun", "event": "sunset"}]',
            },
            "actions": {
                "type": "array",
                "items": {"type": "object"},
                "description": 'e.g. [{"action": "light.turn_on", "target": {"entity_id": "light.porch"}}]',
            },
        },
        ["alias", "triggers", "actions"],
    ),
]


@dataclass(frozen=True)
class Tools:
    """What the tools act on: the home, which entities are exposed, which domains need confirmation."""

    home: Home
    exposure: Exposure
    confirm_domains: tuple[str, ...] = ("lock", "cover", "alarm_control_panel")


@dataclass
class ToolCall:
    """One call the model asked for."""

    id: str
    name: str
    arguments: str


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    attributes = state.get("attributes", {})
    summary = {"entity_id": state["entity_id"], "state": state["state"]}
    for key in ("friendly_name", "unit_of_measurement", "temperature", "current_temperature"):
        if key in attributes:
            summary[key] = attributes[key]
    return summary


async def _exposed_states(tools: Tools) -> list[dict[str, Any]]:
    try:
        return tools.exposure.filter(await tools.home.states())
    except HomeError as exc:
        raise ToolError(str(exc)) from exc


async def _get_entity_states(tools: Tools, conversation: Conversation, args: dict[str, Any]) -> Any:
    states = await _exposed_states(tools)
    if entity_id := args.get("entity_id"):
        found = [s for s in states if s["entity_id"] == entity_id]
        if not found:
            raise ToolError(f"entity {entity_id} does not exist or is not exposed")
        return [_summary(s) for s in found]
    domain = args.get("domain")
    return [_summary(s) for s in states if not domain or s["entity_id"].split(".", 1)[0] == domain]


async def _call_service(tools: Tools, conversation: Conversation, args: dict[str, Any]) -> Any:
    entity_id = args["entity_id"]
    if not any(s["entity_id"] == entity_id for s in await _exposed_states(tools)):
        raise ToolError(f"entity {entity_id} does not exist or is not exposed")
    data = dict(args.get("data") or {})
    data["entity_id"] = entity_id
    domain, service = args["domain"], args["service"]
    if domain in tools.confirm_domains or entity_id.split(".", 1)[0] in tools.confirm_domains:
        preview = {"kind": "service", "domain": domain, "service": service, "data": data}
        conversation.pending_preview = preview
        return {"preview": preview, "status": "awaiting confirmation", "summary": describe_preview(preview)}
    try:
        changed = await tools.home.call_service(domain, service, data)
    except HomeError as exc:
        raise ToolError(str(exc)) from exc
    return {"changed": [_summary(s) for s in changed]}


async def _preview_automation(tools: Tools, conversation: Conversation, args: dict[str, Any]) -> Any:
    config = {
        "alias": args["alias"],
        "description": str(args.get("description") or ""),
        "triggers": args.get("triggers"),
        "conditions": [],
        "actions": args.get("actions"),
        "mode": "single",
    }
    problems = automation_problems(config)
    if problems:
        raise ToolError("; ".join(problems))
    preview = {"kind": "automation", "config": config}
    conversation.pending_preview = preview
    return {"preview": config, "status": "awaiting confirmation", "summary": describe_preview(preview)}


_TOOLS: dict[str, tuple[Callable[[Tools, Conversation, dict[str, Any]], Awaitable[Any]], tuple[str, ...]]] = {
    "get_entity_states": (_get_entity_states, ()),
    "call_service": (_call_service, ("domain", "service", "entity_id")),
    "preview_automation": (_preview_automation, ("alias",)),
}


def describe_preview(preview: dict[str, Any]) -> str:
    """What a pending preview would do, in a few words."""
    if preview.get("kind") == "automation":
        return f"create the automation {json.dumps(preview['config']['alias'])}"
    return f"call {preview['domain']}.{preview['service']} on {preview['data'].get('entity_id')}"


async def execute_preview(tools: Tools, preview: dict[str, Any]) -> str:
    """Carry out a confirmed preview; returns what Home Assistant did. Raises :class:`HomeError`."""
    if preview.get("kind") == "automation":
        config = preview["config"]
        automation_id = str(int(time.time() * 1000))
        await tools.home.create_automation(automation_id, config)
        return f"created {automation_entity_id(config['alias'])} (id {automation_id})"
    changed = await tools.home.call_service(preview["domain"], preview["service"], dict(preview["data"]))
    states = ", ".join(f"{s['entity_id']} is now {s['state']}" for s in changed)
    return f"done: {states}" if states else "done"


async def run_tool(tools: Tools, conversation: Conversation, call: ToolCall) -> str:
    """Run one tool call; returns its JSON result. Raises :class:`ToolError` on failure."""
    if call.name not in _TOOLS:
        raise ToolError(f"there is no tool named {call.name!r}")
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(args, dict):
        raise ToolError("arguments must be a JSON object")
    function, required = _TOOLS[call.name]
    missing = [key for key in required if not isinstance(args.get(key), str) or not args[key]]
    if missing:
        raise ToolError(f"missing argument(s): {', '.join(missing)}")
    return json.dumps(await function(tools, conversation, args))
