"""Applications started under ``opentelemetry-instrument`` get reports without configure_tracing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from .agent_harness import USER_APP

APP = USER_APP + textwrap.dedent(
    """
    import json
    import httpx
    from ha_agent_tracing.agent._background import BackgroundServer

    with BackgroundServer(app) as server:
        for _ in range(3):
            httpx.post(server.url + "/api/v1/chat")
    print("REPORTS=" + json.dumps(tracker.get_reports_for_operation("chat_request")))
    """
)


def test_reports_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """The post-instrument entry point attaches the report processor to the distro's provider."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    launcher = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert launcher is not None, "opentelemetry-instrument is installed with the test extras"
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "auto-instrumented",
    }
    result = subprocess.run(
        [launcher, sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORTS="))
    reports = json.loads(line.removeprefix("REPORTS="))
    assert len(reports) == 3
    assert all([m["name"] for m in r["metrics"]] == ["rate_limit_check"] for r in reports)
    assert all(r["root_span"] == "POST /api/v1/chat" for r in reports)


def test_without_the_launcher_nothing_is_attached(tmp_path: Path) -> None:
    """Plain python without configure_tracing records nothing: the hook only runs under the distro."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "REPORTS=[]" in result.stdout
