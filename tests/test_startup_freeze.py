"""`serve` freezes its startup objects and collects its youngest generation less often, until it stops."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest

from ha_agent_tracing.agent import create_app, load_agent_settings
from ha_agent_tracing.agent._app import SERVE_YOUNG_GC_THRESHOLD
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
    before = gc.get_threshold()
    with BackgroundServer(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before


def test_an_app_asked_to_collects_its_youngest_generation_less_often_while_it_runs() -> None:
    settings = load_agent_settings({}, model_latency_ms=0, home_latency_ms=0)
    before = gc.get_threshold()
    app = create_app(settings, young_gc_threshold=12_345)
    assert gc.get_threshold() == before
    with BackgroundServer(app) as server:
        assert gc.get_threshold() == (12_345, *before[1:])
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert gc.get_threshold() == before


@pytest.mark.parametrize("threshold", [0, -5])
def test_a_young_gc_threshold_below_one_is_refused(threshold: int) -> None:
    settings = load_agent_settings({}, model_latency_ms=0, home_latency_ms=0)
    with pytest.raises(ValueError, match="young_gc_threshold must be at least 1"):
        create_app(settings, young_gc_threshold=threshold)


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
    assert [kwargs.get("young_gc_threshold") for kwargs in asked] == [SERVE_YOUNG_GC_THRESHOLD] == [10_000]
