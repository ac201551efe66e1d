"""A running agent service on loopback, with its own tracer provider, for tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ha_agent_tracing import TracingRuntime, configure_tracing, get_tracker, load_config, shutdown_tracing
from ha_agent_tracing._setup import build_provider
from ha_agent_tracing.agent import create_app, load_agent_settings
from ha_agent_tracing.agent._background import BackgroundServer, free_port

TOKEN = "test-token-0123456789"

USER_APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    from ha_agent_tracing import get_tracker

    app = FastAPI()
    tracker = get_tracker()

    @app.post("/api/v1/chat")
    async def chat() -> dict:
        tracker.set_operation("chat_request")
        with tracker.track("rate_limit_check", exceeded=False):
            pass
        return {}
    """
)
"""A user's application as the README writes it, without configure_tracing: one tracked metric per chat."""


@dataclass
class Agent:
    """The service under test: its URL, spans and reports."""

    url: str
    exporter: InMemorySpanExporter
    runtime: TracingRuntime
    app: Any

    def chat(self, message: str, conversation_id: str | None = None, **kwargs: Any) -> httpx.Response:
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        # The test is the service's client, not part of it: an instrumented client would
        # trace itself and overwrite any traceparent header the test sends.
        with suppress_http_instrumentation():
            return httpx.post(f"{self.url}/api/v1/chat", json=body, timeout=30, **kwargs)

    def api(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with suppress_http_instrumentation():
            return httpx.get(f"{self.url}/api/v1/performance{path}", headers=headers, timeout=10)

    def reports(self, expected: int | None = None, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The chat_request reports, waiting until ``expected`` exist and their background spans landed."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = get_tracker().get_reports_for_operation("chat_request")
            if expected is None or len(found) >= expected:
                time.sleep(0.05)
                # Plain dicts for the tests that index them freely (a Report is a TypedDict).
                return cast(list[dict[str, Any]], get_tracker().get_reports_for_operation("chat_request"))
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {expected} reports, found {len(found)}")
            time.sleep(0.01)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


@contextmanager
def running_agent(**overrides: Any) -> Iterator[Agent]:
    """Start the service (and its embedded model) with ``overrides`` of its settings."""
    options: dict[str, Any] = {
        "model_latency_ms": 5,
        "home_latency_ms": 20,
        "reports_api": "on",
        "api_token": TOKEN,
    }
    options.update(overrides)
    tracing = options.pop("tracing", {})
    id_generator = options.pop("id_generator", None)
    home = options.pop("home", None)
    meter_provider = options.pop("meter_provider", None)
    settings = load_agent_settings({}, **options)
    tracing = {"exporters": "none", **tracing}
    # The provider a deployment would get (resource, sampler, limits from the
    # configuration), injected so that no test touches the global one.
    provider = build_provider(load_config(**tracing))
    if id_generator is not None:  # before any tracer exists: tracers keep the generator they got
        provider.id_generator = id_generator
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, home=home)
    runtime = configure_tracing(app, tracer_provider=provider, meter_provider=meter_provider, **tracing)
    try:
        with BackgroundServer(app) as server:
            yield Agent(server.url, exporter, runtime, app)
    finally:
        shutdown_tracing()
        get_tracker().clear_reports()
        provider.shutdown()


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any ``OTEL_``, ``OPENAI_`` or ``HA_`` variable, plus ``settings``.

    What a CLI subprocess starts from, so that no setting of the machine's leaks into a test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "HA_"))}
    env.update(settings)
    return env


def serve_env(token: str = TOKEN, **settings: str) -> dict[str, str]:
    """A clean environment for `serve`: a free port, the embedded model at 0 ms, the reports API on with ``token``."""
    return clean_env(
        HA_AGENT_PORT=str(free_port()),
        HA_AGENT_MODEL_LATENCY_MS="0",
        HA_AGENT_TRACING_REPORTS_API="on",
        HA_AGENT_TRACING_API_TOKEN=token,
        **settings,
    )


@contextmanager
def serve_command(env: dict[str, str], log: Path, *flags: str) -> Iterator[str]:
    """`ha-agent-tracing serve` in a subprocess with ``env`` (its port in HA_AGENT_PORT); its base URL.

    Waits until /health answers; stops the process on exit. Output goes to ``log``.
    """
    command = shutil.which("ha-agent-tracing", path=str(Path(sys.executable).parent))
    assert command is not None
    base = f"http://127.0.0.1:{env['HA_AGENT_PORT']}"
    with log.open("w") as out:
        process = subprocess.Popen([command, "serve", *flags], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_answering(f"{base}/health", process, log)
        yield base
    finally:
        process.terminate()
        process.wait(15)


@contextmanager
def demo_serving(env: dict[str, str], out_path: Path, latency_ms: int) -> Iterator[str]:
    """`ha-agent-tracing demo --keep-serving` in a subprocess; its output once it serves.

    Stops it as a person would (Ctrl-C, SIGINT) on exit.
    """
    command = shutil.which("ha-agent-tracing", path=str(Path(sys.executable).parent))
    assert command is not None
    with out_path.open("w") as out:
        process = subprocess.Popen(
            [command, "demo", "--latency-ms", str(latency_ms), "--keep-serving"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while "Serving until Ctrl-C" not in out_path.read_text():
            assert process.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        yield out_path.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30
) -> None:
    """Wait until ``url`` answers 200 while ``process`` runs; its ``log`` is the failure message."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
