"""`opentelemetry-instrument` after the README's install, with nothing from the test extras.

The environment is built by ``tests/plain_install.py``: exactly the
distributions ``pip install ha-agent-tracing`` brings (the package's
requirements without extras, followed through their metadata), linked into a
fresh venv with their console scripts. The test venv's OpenTelemetry distro,
the official GenAI instrumentation and pytest are not in it.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from ha_agent_tracing.agent._background import free_port

from .agent_harness import USER_APP, wait_until_answering
from .plain_install import closure, plain_venv

TOKEN = "plain-install-token-0123456789"

SERVED_APP = USER_APP + textwrap.dedent(
    """
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/reports")
    async def reports() -> list:
        return tracker.get_reports()
    """
)


@pytest.fixture(scope="module")
def plain_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_venv("ha-agent-tracing", tmp_path_factory.mktemp("plain") / "venv")


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_", "PYTHON"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        **extra,
    )
    return env


@contextmanager
def _running(command: list[str], env: dict[str, str], cwd: Path, log: Path, base: str) -> Iterator[str]:
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_until_answering(f"{base}/health", process, log, timeout_s=60)
        yield base
    finally:
        process.terminate()
        process.wait(15)


def _call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    with suppress_http_instrumentation():
        return httpx.request(method, url, timeout=30, **kwargs)


def test_the_plain_install_has_what_opentelemetry_instrument_needs_and_no_test_extra() -> None:
    """The distro comes with the package; the test extras' packages do not."""
    names = set(closure("ha-agent-tracing"))
    assert {"opentelemetry-distro", "opentelemetry-instrumentation", "opentelemetry-sdk"} <= names
    assert names.isdisjoint({"pytest", "opentelemetry-instrumentation-genai-openai", "rotel", "hypothesis"})


def test_opentelemetry_instrument_uvicorn_reports_after_a_plain_install(
    plain_bin: Path, tmp_path: Path
) -> None:
    """The README's `opentelemetry-instrument uvicorn myapp:app`: reports, and /health is not one."""
    (tmp_path / "myapp.py").write_text(SERVED_APP)
    port = free_port()
    command = [
        str(plain_bin / "opentelemetry-instrument"),
        str(plain_bin / "uvicorn"),
        "myapp:app",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    with _running(
        command, _env(plain_bin, OTEL_SERVICE_NAME="myapp"), tmp_path, tmp_path / "uvicorn.log", base
    ):
        for _ in range(3):
            assert _call("POST", f"{base}/api/v1/chat").status_code == 200
        _call("GET", f"{base}/health")
        time.sleep(0.2)
        reports = _call("GET", f"{base}/reports").json()
    assert [r["root_span"] for r in reports] == ["POST /api/v1/chat"] * 3
    assert all([m["name"] for m in r["metrics"]] == ["rate_limit_check"] for r in reports)


def test_opentelemetry_instrument_serve_leaves_health_and_the_embedded_model_out(
    plain_bin: Path, tmp_path: Path
) -> None:
    """`opentelemetry-instrument ha-agent-tracing serve`: chat requests reported, nothing else."""
    port = free_port()
    env = _env(
        plain_bin,
        HA_AGENT_PORT=str(port),
        HA_AGENT_TRACING_REPORTS_API="on",
        HA_AGENT_TRACING_API_TOKEN=TOKEN,
        HA_AGENT_MODEL_LATENCY_MS="1",
        HA_AGENT_HOME_LATENCY_MS="1",
    )
    command = [str(plain_bin / "opentelemetry-instrument"), str(plain_bin / "ha-agent-tracing"), "serve"]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with _running(command, env, tmp_path, log, base):
        for message in ("Turn off the kitchen light", "Hello there"):
            assert _call("POST", f"{base}/api/v1/chat", json={"message": message}).status_code == 200
        for _ in range(3):
            _call("GET", f"{base}/health")
        time.sleep(0.3)
        body = _call(
            "GET", f"{base}/api/v1/performance/reports", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
    reports = body["reports"]
    assert sorted(r["root_span"] for r in reports) == ["POST /api/v1/chat"] * 2, [
        r["root_span"] for r in reports
    ]
    assert {r["operation"] for r in reports} == {"chat_request"}
