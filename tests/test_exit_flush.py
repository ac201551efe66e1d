"""Nothing queued for export is lost when the process ends.

`docker compose stop` and Kubernetes send SIGTERM. uvicorn shuts the app down
(its lifespan) and then re-raises the signal, so the process dies by it and
code after ``uvicorn.run()`` never runs: the flush has to happen in the app's
lifespan shutdown. Each test runs a real process exporting to a real rotel,
with an export delay far longer than the test, so that only the flush at exit
can deliver the spans.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from ha_agent_tracing.agent._background import free_port

from .agent_harness import clean_env, wait_until_answering
from .receivers import Rotel

pytestmark = pytest.mark.receiver

TOKEN = "exit-flush-token-0123456789"
NEVER_BY_ITSELF = "600000"  # ms between two scheduled exports: only a flush sends anything


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_exports_every_queued_span_when_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    """`serve` stopped by SIGTERM (or Ctrl-C) delivers every span of the requests it answered."""
    with Rotel(tmp_path) as rotel:
        port = free_port()
        env = clean_env(
            HA_AGENT_PORT=str(port),
            HA_AGENT_MODEL_LATENCY_MS="0",
            HA_AGENT_TRACING_REPORTS_API="on",
            HA_AGENT_TRACING_API_TOKEN=TOKEN,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rotel.http_port}",
            OTEL_BSP_SCHEDULE_DELAY=NEVER_BY_ITSELF,
        )
        log = tmp_path / "serve.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ha_agent_tracing._cli", "serve", "--log-level", "warning"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(f"{base}/health", process, log)
            for message in ("Which lights are on?", "Turn off the kitchen light", "Hello"):
                assert (
                    httpx.post(f"{base}/api/v1/chat", json={"message": message}, timeout=30).status_code
                    == 200
                )
            time.sleep(0.2)  # the last request's background spans end
            reports = httpx.get(
                f"{base}/api/v1/performance/reports",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            ).json()["reports"]
            assert len(reports) == 3
            assert rotel.spans() == [], "nothing was exported before the signal"
            process.send_signal(stop)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        expected = {r["span_id"] for r in reports} | {m["span_id"] for r in reports for m in r["metrics"]}
        received = rotel.wait_for_spans(expected, timeout_s=5)
    assert {s.trace_id for s in received} >= {r["trace_id"] for r in reports}
    output = log.read_text()
    assert "did not finish" not in output, output
    assert "Traceback" not in output, output


USER_APP = """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from ha_agent_tracing import configure_tracing, get_tracker, shutdown_tracing

    {setup}

    @app.get("/health")
    async def health() -> dict:
        return {{"status": "ok"}}

    @app.post("/work")
    async def work() -> dict:
        tracker = get_tracker()
        tracker.set_operation("work")
        with tracker.track("step", kind="user") as metric:
            metric.set("done", True)
        return {{"ok": True}}
"""

SETUPS = {
    # configure_tracing(app) flushes at the app's shutdown by itself.
    "configure_tracing(app)": """
    app = FastAPI()
    configure_tracing(app)
    """,
    # configured without the app: the README's lifespan shuts tracing down.
    "shutdown_tracing() in the lifespan": """
    configure_tracing()

    @asynccontextmanager
    async def lifespan(app):
        yield
        shutdown_tracing()

    app = FastAPI(lifespan=lifespan)
    """,
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_users_app_under_uvicorn_exports_its_last_spans_on_sigterm(tmp_path: Path, setup: str) -> None:
    """A user's FastAPI app served by `uvicorn`, set up as the README shows, loses nothing on SIGTERM."""
    (tmp_path / "userapp.py").write_text(
        textwrap.dedent(USER_APP).format(setup=textwrap.dedent(SETUPS[setup]).strip())
    )
    with Rotel(tmp_path) as rotel:
        port = free_port()
        env = clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rotel.http_port}",
            OTEL_BSP_SCHEDULE_DELAY=NEVER_BY_ITSELF,
            PYTHONPATH=str(tmp_path),
        )
        log = tmp_path / "uvicorn.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "userapp:app",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(f"{base}/health", process, log)
            for _ in range(3):
                assert httpx.post(f"{base}/work", timeout=10).status_code == 200
            time.sleep(0.1)
            assert rotel.spans() == [], "nothing was exported before the signal"
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        deadline = time.monotonic() + 5
        while len([s for s in rotel.spans() if s.name == "step"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        received = rotel.spans()
    assert len([s for s in received if s.name == "step"]) == 3, log.read_text()


def test_a_script_that_ends_normally_exports_its_last_spans(tmp_path: Path) -> None:
    """No server, no shutdown call: configure_tracing() flushes when the interpreter exits."""
    script = textwrap.dedent(
        """
        from ha_agent_tracing import configure_tracing, get_tracker

        configure_tracing()
        tracker = get_tracker()
        with tracker.operation("nightly_sync"):
            with tracker.track("sync_step", batch=1):
                pass
        print("done")
        """
    )
    with Rotel(tmp_path) as rotel:
        env = clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rotel.http_port}",
            OTEL_BSP_SCHEDULE_DELAY=NEVER_BY_ITSELF,
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 5
        while len(rotel.spans()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        names = sorted(s.name for s in rotel.spans())
    assert names == ["nightly_sync", "sync_step"], result.stderr
