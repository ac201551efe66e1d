"""The Home Assistant tools the model may call, with their OpenAI schemas."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ha_agent_tracing.agent._conversations import Conversation
from ha_agent_tracing.agent._home import Home, HomeError

__all__ = ["TOOL_SCHEMAS", "ToolError", "run_tool"]


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
        "Draft an automation for the user to review; nothing is created until they confirm.",
        {
            "alias": {"type": "string"},
            "trigger": {"type": "string", "description": "when it runs, e.g. 'sunset'"},
            "action": {"type": "string", "description": "what it does, e.g. 'turn on light.porch'"},
        },
        ["alias", "trigger", "action"],
    ),
]


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


async def _get_entity_states(home: Home, conversation: Conversation, args: dict[str, Any]) -> Any:
    states = await home.states()
    if entity_id := args.get("entity_id"):
        found = [s for s in states if s["entity_id"] == entity_id]
        if not found:
            raise ToolError(f"entity {entity_id} does not exist")
        return [_summary(s) for s in found]
    domain = args.get("domain")
    return [_summary(s) for s in states if not domain or s["entity_id"].split(".", 1)[0] == domain]


async def _call_service(home: Home, conversation: Conversation, args: dict[str, Any]) -> Any:
    data = dict(args.get("data") or {})
    data["entity_id"] = args["entity_id"]
    try:
        changed = await home.call_service(args["domain"], args["service"], data)
    except HomeError as exc:
        raise ToolError(str(exc)) from exc
    return {"changed": [_summary(s) for s in changed]}


async def _preview_automation(home: Home, conversation: Conversation, args: dict[str, Any]) -> Any:
    preview = {"alias": args["alias"], "trigger": args["trigger"], "action": args["action"]}
    conversation.pending_preview = preview
    return {"preview": preview, "status": "awaiting confirmation"}


_TOOLS: dict[str, tuple[Callable[[Home, Conversation, dict[str, Any]], Awaitable[Any]], tuple[str, ...]]] = {
    "get_entity_states": (_get_entity_states, ()),
    "call_service": (_call_service, ("domain", "service", "entity_id")),
    "preview_automation": (_preview_automation, ("alias", "trigger", "action")),
}


async def run_tool(home: Home, conversation: Conversation, call: ToolCall) -> str:
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
    return json.dumps(await function(home, conversation, args))
