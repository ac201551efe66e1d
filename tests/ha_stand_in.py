"""A loopback server speaking the part of Home Assistant's REST API the agent uses."""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

_STATES: dict[str, dict[str, Any]] = {
    "light.hall": {"entity_id": "light.hall", "state": "off", "attributes": {"friendly_name": "Hall Light"}},
    "sensor.attic_temperature": {
        "entity_id": "sensor.attic_temperature",
        "state": "30.5",
        "attributes": {
            "friendly_name": "Attic Temperature",
            "unit_of_measurement": "°C",
            "device_class": "temperature",
        },
    },
    "lock.back_door": {
        "entity_id": "lock.back_door",
        "state": "locked",
        "attributes": {"friendly_name": "Back Door"},
    },
}


def home_assistant_stand_in(
    token: str,
    calls: list[tuple[str, dict[str, Any]]],
    automations: dict[str, dict[str, Any]] | None = None,
    *,
    refuse: bool = False,
) -> FastAPI:
    """States, service calls (recorded in ``calls``) and automation configs (kept in ``automations``).

    Like Home Assistant, it refuses an automation without triggers or actions
    with 400 and ``{"message": "Message malformed: ..."}``; with ``refuse`` it
    refuses every automation that way.
    """
    app = FastAPI()
    states = {key: {**value, "attributes": dict(value["attributes"])} for key, value in _STATES.items()}
    kept = automations if automations is not None else {}

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {token}":
            raise HTTPException(401, "unauthorized")

    @app.get("/api/states")
    async def get_states(authorization: str | None = Header(default=None)) -> list[dict[str, Any]]:
        check(authorization)
        return list(states.values())

    @app.post("/api/services/{domain}/{service}")
    async def call(
        domain: str, service: str, data: dict[str, Any], authorization: str | None = Header(default=None)
    ) -> list[dict[str, Any]]:
        check(authorization)
        calls.append((f"{domain}.{service}", data))
        entity = states[data["entity_id"]]
        entity["state"] = {"turn_on": "on", "turn_off": "off", "lock": "locked", "unlock": "unlocked"}[
            service
        ]
        return [entity]

    @app.post("/api/config/automation/config/{automation_id}")
    async def create_automation(
        automation_id: str,
        config: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take a whole JSON body
        authorization: str | None = Header(default=None),
    ) -> Any:
        check(authorization)
        if refuse or not config.get("triggers") or not config.get("actions"):
            return JSONResponse({"message": "Message malformed: triggers and actions are required"}, 400)
        kept[automation_id] = config
        return {"result": "ok"}

    return app
