"""The Home Assistant the tools act on: embedded in memory, or a real one over REST.

:class:`EmbeddedHome` is a small house whose devices change state when
services are called, so the whole flow runs offline. :class:`RestHome` talks
to a real Home Assistant through its REST API (``/api/states``,
``/api/services/<domain>/<service>``, and
``/api/config/automation/config/<id>`` to create an automation) with a
long-lived access token; it is used when ``HA_URL`` and ``HA_TOKEN`` are set.
The embedded home validates and keeps automations the same way, so a
confirmed automation exists afterwards in either.
"""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx2

__all__ = ["EmbeddedHome", "Home", "HomeError", "RestHome"]

State = dict[str, Any]


class HomeError(Exception):
    """A Home Assistant request failed; the message is safe to show the model."""


class Home(Protocol):
    """What the tools need from Home Assistant."""

    async def states(self) -> list[State]:
        """Every entity's state."""
        ...

    async def call_service(self, domain: str, service: str, data: dict[str, Any]) -> list[State]:
        """Call a service; returns the states it changed."""
        ...

    async def create_automation(self, automation_id: str, config: dict[str, Any]) -> None:
        """Create (or replace) the automation ``automation_id``; raises :class:`HomeError` if refused."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _entity(entity_id: str, state: str, **attributes: Any) -> State:
    return {"entity_id": entity_id, "state": state, "attributes": attributes, "last_changed": _now()}


_SERVICES: dict[str, dict[str, str]] = {
    "light": {"turn_on": "on", "turn_off": "off", "toggle": "toggle"},
    "switch": {"turn_on": "on", "turn_off": "off", "toggle": "toggle"},
    "fan": {"turn_on": "on", "turn_off": "off", "toggle": "toggle"},
    "cover": {"open_cover": "open", "close_cover": "closed"},
    "lock": {"lock": "locked", "unlock": "unlocked"},
    "alarm_control_panel": {
        "alarm_arm_home": "armed_home",
        "alarm_arm_away": "armed_away",
        "alarm_disarm": "disarmed",
    },
    "automation": {"turn_on": "on", "turn_off": "off", "toggle": "toggle"},
}


def automation_problems(config: dict[str, Any]) -> list[str]:
    """What is wrong with an automation config, as Home Assistant would refuse it (empty: valid)."""
    problems: list[str] = []
    if not isinstance(config.get("alias"), str) or not config["alias"].strip():
        problems.append("alias must be a non-empty string")
    checks = (("triggers", "trigger", ("trigger", "platform")), ("actions", "action", None))
    for key, legacy, marker in checks:
        items = config.get(key, config.get(legacy))
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list) or not items:
            problems.append(f"{key} must be a non-empty list")
        elif not all(isinstance(item, dict) and item for item in items):
            problems.append(f"every entry of {key} must be an object")
        elif marker and not all(any(m in item for m in marker) for item in items):
            problems.append("every trigger needs a 'trigger' key (e.g. sun, time, state)")
    return problems


def automation_entity_id(alias: str) -> str:
    """The entity id Home Assistant gives an automation: ``automation.`` and its alias as a slug."""
    return "automation." + (re.sub(r"[^a-z0-9]+", "_", alias.lower()).strip("_") or "unnamed")


class EmbeddedHome:
    """An in-memory home: lights, switches, sensors, a thermostat, a lock."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self._latency = latency_s
        self._lock = asyncio.Lock()
        self._states: dict[str, State] = {
            s["entity_id"]: s
            for s in [
                _entity("light.kitchen", "on", friendly_name="Kitchen Light", brightness=200),
                _entity("light.living_room", "off", friendly_name="Living Room Light"),
                _entity("light.bedroom", "off", friendly_name="Bedroom Light"),
                _entity("light.porch", "on", friendly_name="Porch Light"),
                _entity("switch.coffee_maker", "off", friendly_name="Coffee Maker"),
                _entity("fan.office", "off", friendly_name="Office Fan"),
                _entity("cover.garage_door", "closed", friendly_name="Garage Door"),
                _entity("lock.front_door", "locked", friendly_name="Front Door"),
                _entity("sensor.living_room_temperature", "21.4", friendly_name="Living Room Temperature",
                        unit_of_measurement="°C", device_class="temperature"),
                _entity("sensor.outdoor_temperature", "7.9", friendly_name="Outdoor Temperature",
                        unit_of_measurement="°C", device_class="temperature"),
                _entity("sensor.living_room_humidity", "44", friendly_name="Living Room Humidity",
                        unit_of_measurement="%", device_class="humidity"),
                _entity("climate.thermostat", "heat", friendly_name="Thermostat", temperature=21.0,
                        current_temperature=21.4),
                _entity("binary_sensor.front_door_motion", "off", friendly_name="Front Door Motion",
                        device_class="motion"),
                _entity("alarm_control_panel.home_alarm", "disarmed", friendly_name="Home Alarm"),
            ]
        }  # fmt: skip
        self.automations: dict[str, dict[str, Any]] = {}

    async def _pause(self) -> None:
        if self._latency:
            await asyncio.sleep(self._latency)

    async def states(self) -> list[State]:
        """Copies of every state."""
        await self._pause()
        async with self._lock:
            return copy.deepcopy(list(self._states.values()))

    async def call_service(self, domain: str, service: str, data: dict[str, Any]) -> list[State]:
        """Apply a service to the entities named in ``data['entity_id']``."""
        await self._pause()
        targets = data.get("entity_id")
        ids = [targets] if isinstance(targets, str) else list(targets or [])
        if not ids:
            raise HomeError(f"{domain}.{service} needs an entity_id")
        if domain == "climate" and service == "set_temperature":
            new_state = None
        elif service not in _SERVICES.get(domain, {}):
            raise HomeError(f"service {domain}.{service} does not exist")
        else:
            new_state = _SERVICES[domain][service]
        async with self._lock:
            unknown = [entity_id for entity_id in ids if entity_id not in self._states]
            if unknown:
                raise HomeError(f"entity {', '.join(unknown)} does not exist")
            changed = []
            for entity_id in ids:
                state = self._states[entity_id]
                if new_state is None:
                    state["attributes"]["temperature"] = float(data.get("temperature", 21.0))
                elif new_state == "toggle":
                    state["state"] = "off" if state["state"] == "on" else "on"
                else:
                    state["state"] = new_state
                state["last_changed"] = _now()
                changed.append(copy.deepcopy(state))
            return changed

    async def create_automation(self, automation_id: str, config: dict[str, Any]) -> None:
        """Validate and keep the automation; its entity ``automation.<alias>`` is then on."""
        await self._pause()
        problems = automation_problems(config)
        if problems:
            raise HomeError(f"Home Assistant refused the automation: {'; '.join(problems)}")
        async with self._lock:
            self.automations[automation_id] = copy.deepcopy({**config, "id": automation_id})
            entity_id = automation_entity_id(config["alias"])
            self._states[entity_id] = _entity(
                entity_id, "on", friendly_name=config["alias"], id=automation_id
            )

    async def aclose(self) -> None:
        """Nothing to release."""


class RestHome:
    """A real Home Assistant over its REST API."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        self._client = httpx2.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout_s,
        )

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._client.request(method, path, json=json)
        except httpx2.HTTPError as exc:
            raise HomeError(f"Home Assistant is unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            reason = ""
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("message"), str):
                    reason = f": {body['message']}"
            except ValueError:
                pass
            raise HomeError(f"Home Assistant answered {response.status_code} to {method} {path}{reason}")
        return response.json()

    async def states(self) -> list[State]:
        """``GET /api/states``."""
        return list(await self._request("GET", "/api/states"))

    async def call_service(self, domain: str, service: str, data: dict[str, Any]) -> list[State]:
        """``POST /api/services/<domain>/<service>``."""
        return list(await self._request("POST", f"/api/services/{domain}/{service}", json=data))

    async def create_automation(self, automation_id: str, config: dict[str, Any]) -> None:
        """``POST /api/config/automation/config/<id>``; Home Assistant validates and reloads."""
        await self._request("POST", f"/api/config/automation/config/{automation_id}", json=config)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
