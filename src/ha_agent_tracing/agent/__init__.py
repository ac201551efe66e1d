"""The reference agent service, instrumented with ha_agent_tracing.

    from ha_agent_tracing import configure_tracing
    from ha_agent_tracing.agent import create_app

    app = create_app()          # settings from the environment
    configure_tracing(app)      # tracing from OTEL_* variables

Run it with ``ha-agent-tracing serve``; see it work with ``ha-agent-tracing demo``.
"""

from __future__ import annotations

from ha_agent_tracing.agent._app import ChatRequest, ChatResponse, create_app
from ha_agent_tracing.agent._home import EmbeddedHome, Home, HomeError, RestHome
from ha_agent_tracing.agent._model_server import ModelFaults, create_model_app
from ha_agent_tracing.agent._settings import AgentSettings, load_agent_settings

__all__ = [
    "AgentSettings",
    "ChatRequest",
    "ChatResponse",
    "EmbeddedHome",
    "Home",
    "HomeError",
    "ModelFaults",
    "RestHome",
    "create_app",
    "create_model_app",
    "load_agent_settings",
]
