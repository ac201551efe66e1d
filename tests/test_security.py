"""Nothing secret leaks into telemetry: not the API key, not message text, not tool arguments."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ha_agent_tracing.agent import create_model_app
from ha_agent_tracing.agent._background import BackgroundServer

from .agent_harness import running_agent
from .receivers import Rotel

FAKE_KEY = "sk-test-FAKEKEY-9f8e7d6c5b4a39281706"
SECRET = "door-code-4711-PLEASE-DO-NOT-LEAK"
MESSAGES = [
    f"When the sun sets turn on the porch light, my {SECRET}",
    f"Turn off the kitchen light and tell me the temperature ({SECRET})",
]


def _everything_recorded(capture: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> str:
    """Every exported span (as rotel printed it and in memory), every report, every log line."""
    caplog.set_level(logging.DEBUG, logger="ha_agent_tracing")
    caplog.set_level(logging.INFO)
    with BackgroundServer(create_model_app(0)) as model, Rotel(tmp_path) as rotel:
        tracing = {
            "exporters": "otlp",
            "otlp_traces_endpoint": rotel.http_endpoint,
            "bsp_schedule_delay_ms": 50,
        }
        with running_agent(
            openai_api_key=FAKE_KEY,
            openai_base_url=f"{model.url}/v1",
            capture_message_content=capture,
            tracing=tracing,
        ) as agent:
            for message in MESSAGES:
                assert agent.chat(message).status_code == 200
            reports = agent.reports(len(MESSAGES))
            rotel.wait_for_spans(
                {r["span_id"] for r in reports} | {m["span_id"] for r in reports for m in r["metrics"]}
            )
            spans = [
                json.dumps(
                    {
                        "name": s.name,
                        "attributes": dict(s.attributes or {}),
                        "events": [
                            {"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events
                        ],
                        "resource": dict(s.resource.attributes),
                    },
                    default=str,
                )
                for s in agent.spans()
            ]
            exported = agent.api("/export").text
        printed = rotel.log.read_text(errors="replace")
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    return "\n".join([*spans, printed, exported, logs])


def test_no_key_message_text_or_tool_arguments_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a recognisable key and message, nothing recorded anywhere contains either."""
    recorded = _everything_recorded(False, tmp_path, caplog)
    assert "message_length" in recorded and "arguments_length" in recorded, "lengths are recorded instead"
    assert FAKE_KEY not in recorded
    assert "FAKEKEY" not in recorded
    assert SECRET not in recorded
    assert "PLEASE-DO-NOT-LEAK" not in recorded


def test_capturing_content_is_an_explicit_opt_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true records the text; the key stays out."""
    recorded = _everything_recorded(True, tmp_path, caplog)
    assert SECRET in recorded, "the scan sees message text when it is captured"
    assert "gen_ai.tool.call.arguments" in recorded
    assert FAKE_KEY not in recorded
