"""`serve` moves the objects alive at start out of the garbage collector's sight, until it stops."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest

from ha_agent_tracing.agent import create_app, load_agent_settings
from ha_agent_tracing.agent._background import BackgroundServer


@pytest.fixture(autouse=True)
def _nothing_frozen() -> Any:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_an_app_asked_to_freezes_its_startup_objects_while_it_runs() -> None:
    settings = load_agent_settings({}, model_latency_ms=0, home_latency_ms=0)
    app = create_app(settings, freeze_startup_objects=True)
    assert gc.get_freeze_count() == 0
    with BackgroundServer(app) as server:
        assert gc.get_freeze_count() > 10_000  # the modules, classes and tables loaded by then
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert gc.get_freeze_count() == 0


def test_an_app_freezes_nothing_by_default() -> None:
    settings = load_agent_settings({}, model_latency_ms=0, home_latency_ms=0)
    with BackgroundServer(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert gc.get_freeze_count() == 0


def test_serve_asks_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from ha_agent_tracing import _cli, agent

    asked: list[dict[str, Any]] = []
    real = agent.create_app

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(agent, "create_app", recording)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    assert _cli.main(["serve", "--port", "1"]) == 0
    assert [kwargs.get("freeze_startup_objects") for kwargs in asked] == [True]
