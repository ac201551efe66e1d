"""Bad input never produces a 500 from the tracing, and never a crash."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace.id_generator import IdGenerator

from ha_agent_tracing._config import SETTINGS
from ha_agent_tracing.agent._background import free_port
from ha_agent_tracing.agent._settings import AGENT_SETTINGS

from .agent_harness import Agent, running_agent, serve_command

# Printable ASCII; surrounding spaces stripped, as no HTTP client can send them.
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(
    str.strip
)
HEX = "0123456789abcdefABCDEF"
NEAR_VALID_TRACEPARENT = st.builds(
    lambda version, trace, span, flags, extra: f"{version}-{trace}-{span}-{flags}{extra}",
    st.sampled_from(["00", "01", "ff", "zz", "0", "000"]),
    st.text(alphabet=HEX, min_size=30, max_size=34) | st.just("0" * 32),
    st.text(alphabet=HEX, min_size=14, max_size=18) | st.just("0" * 16),
    st.text(alphabet=HEX + "x", min_size=1, max_size=3),
    st.sampled_from(["", "-", "-extra", "--"]),
)


class OsRandomIds(IdGenerator):
    """Ids from the OS: hypothesis reseeds `random` per example, which would repeat the SDK's ids."""

    def generate_span_id(self) -> int:
        return secrets.randbits(64) or 1

    def generate_trace_id(self) -> int:
        return secrets.randbits(128) or 1


@pytest.fixture
def agent() -> Iterator[Agent]:
    """One service per test (hypothesis runs all its examples inside one test call)."""
    tracing = {"max_reports": 10_000}  # every example's report stays countable
    with running_agent(
        rate_limit=1_000_000,
        model_latency_ms=0,
        home_latency_ms=0,
        tracing=tracing,
        id_generator=OsRandomIds(),
    ) as running:
        yield running


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traceparent=NEAR_VALID_TRACEPARENT | HEADER_TEXT, tracestate=HEADER_TEXT)
def test_fuzzed_trace_context_headers_never_break_a_request(
    agent: Agent, traceparent: str, tracestate: str
) -> None:
    """Malformed traceparent/tracestate: the request is answered and still gets its report."""
    before = len(agent.reports(None))
    response = agent.chat("Hello", headers={"traceparent": traceparent, "tracestate": tracestate})
    assert response.status_code == 200, response.text
    reports = agent.reports(before + 1)
    assert reports[-1]["operation"] == "chat_request"
    assert len(reports[-1]["trace_id"]) == 32


def test_a_valid_remote_parent_is_continued(agent: Agent) -> None:
    """A well-formed traceparent puts the request in the caller's trace."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    agent.chat("Hello", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert agent.reports(None)[-1]["trace_id"] == trace_id


def test_attribute_values_over_the_length_limit_are_cut_everywhere() -> None:
    """OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT cuts captured content in spans and reports alike."""
    with running_agent(capture_message_content=True, tracing={"attribute_value_length_limit": 16}) as agent:
        agent.chat("Which lights are on? " + "please " * 200)
        (report,) = agent.reports(1)
        spans = agent.spans("openai_api_call")
    call = next(m for m in report["metrics"] if m["name"] == "openai_api_call")
    assert len(call["metadata"]["gen_ai.input.messages"]) == 16
    assert all(len(str(s.attributes["gen_ai.input.messages"])) == 16 for s in spans)  # type: ignore[index]


def test_the_service_starts_and_answers_with_garbage_in_every_variable(tmp_path: Path) -> None:
    """`ha-agent-tracing serve` with every variable it reads set to garbage: warnings, then service."""
    port = free_port()
    garbage = "\u2603 not-a-valid-value ,=,="
    free_text = {"OTEL_SERVICE_NAME", "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"}
    kept = {"HA_AGENT_HOST", "HA_AGENT_PORT", "OPENAI_API_KEY", "HA_AGENT_MODEL", "HA_TOKEN"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_"))}
    for setting in (*SETTINGS, *AGENT_SETTINGS):
        for var in setting.env:
            if var not in kept and var not in free_text:
                env[var] = garbage
    env["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"] = "(((unbalanced"
    env["HA_AGENT_PORT"] = str(port)
    # Any text is a file name: the garbage one, kept out of the working directory.
    env["HA_AGENT_TRACING_HISTORY_PATH"] = str(tmp_path / garbage)
    log = tmp_path / "serve.log"
    with serve_command(env, log) as base:
        answer = httpx.post(f"{base}/api/v1/chat", json={"message": "Which lights are on?"}, timeout=30)
    output = log.read_text()
    assert answer.status_code == 200, output
    assert "Kitchen Light" in answer.json()["message"]
    assert "Traceback" not in output
    for var in (
        "OTEL_TRACES_SAMPLER",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "HA_AGENT_RATE_LIMIT",
    ):
        assert f"{var}={garbage!r} is not valid" in output, var
    assert json.dumps(garbage)[1:-1] not in answer.text


def _post_raw(agent: Agent, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    with suppress_http_instrumentation():
        return httpx.post(f"{agent.url}/api/v1/chat", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"message": "x\\ud800y"}', "message"),  # a lone surrogate, JSON-escaped
        (b'{"message": "hi", "conversation_id": "\\udfff"}', "conversation_id"),
        (b'{"message": NaN}', "message"),  # Python's JSON reader takes NaN; JSON output cannot
        (b'{"message": 1e400}', "message"),  # read as infinity
    ],
)
def test_a_body_the_error_message_cannot_echo_gets_422_naming_the_field(
    agent: Agent, body: bytes, field: str
) -> None:
    """The 422 echoes the bad input: text that is not valid Unicode, or a number JSON cannot hold, still gives 422."""
    response = _post_raw(agent, body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]


JSON_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)  # lone surrogates too
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | JSON_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_TEXT, children, max_size=4),
    max_leaves=12,
)
CHAT_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "message": JSON_VALUES | JSON_TEXT,
        "conversation_id": JSON_VALUES | st.from_regex(r"\A[a-zA-Z0-9_-]{1,64}\Z") | JSON_TEXT,
        "extra": JSON_VALUES,
    },
)
BODIES = (
    st.builds(lambda doc: json.dumps(doc).encode(), CHAT_BODIES | JSON_VALUES)  # ASCII, surrogates escaped
    | st.builds(lambda doc: json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"), CHAT_BODIES)
    | st.binary(max_size=200)
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", None, "text/plain", "application/json; charset=latin-1", "application/x+json"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_no_chat_body_gets_a_500(agent: Agent, body: bytes, content_type: str | None) -> None:
    """Whatever the body, the answer is a 200 or a 4xx with a JSON detail, never a server error."""
    response = _post_raw(agent, body, content_type)
    assert response.status_code == 200 or 400 <= response.status_code < 500, (response.status_code, body)
    assert "detail" in response.json() or response.status_code == 200


BAGGAGE_LOGGER = "opentelemetry.baggage.propagation"


def test_a_garbage_baggage_header_logs_a_few_lines_not_one_per_entry(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    """180 malformed baggage entries, sent twice: a line per kind of problem, the rest counted."""
    caplog.set_level(logging.WARNING)
    garbage = ",".join(f"not a member {n}" for n in range(180))
    for _ in range(2):
        assert agent.chat("Hello", headers={"baggage": garbage}).status_code == 200
    lines = [r for r in caplog.records if r.name == BAGGAGE_LOGGER]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
    suppressed = agent.runtime.stats()["suppressed_log_lines"]
    assert suppressed == 2 * 180 - len(lines)
    assert agent.chat("Hello", headers={"baggage": "user=alice"}).status_code == 200
    assert [r for r in caplog.records if r.name == BAGGAGE_LOGGER] == lines, "valid baggage logs nothing"
