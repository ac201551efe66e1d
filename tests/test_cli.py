"""The ``ha-agent-tracing`` command: the offline demo end to end."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .agent_harness import clean_env, serve_command, serve_env

METRICS = [
    "openai_api_call",
    "tool_execution",
    "message_assembly",
    "context_refresh",
    "rate_limit_check",
    "conversation_management",
    "pending_preview_check",
    "token_count_retrieval",
]


def _run_demo(latency_ms: int) -> str:
    """``ha-agent-tracing demo`` in a subprocess with none of the OTEL_/OPENAI_/HA_ variables; its output."""
    command = shutil.which("ha-agent-tracing", path=str(Path(sys.executable).parent))
    assert command is not None
    env = clean_env()
    result = subprocess.run(
        [command, "demo", "--latency-ms", str(latency_ms)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_prints_the_metric_table_from_real_requests() -> None:
    """`ha-agent-tracing demo` runs offline, answers every message, refuses one, prints each metric."""
    out = _run_demo(5)
    assert "[17/17] 429" in out or " 429 " in out
    assert "16 answered, 1 rate limited" in out
    table = out.split("Where the time of a chat request goes")[1]
    for name in METRICS:
        assert f"\n{name} " in table, name
    assert "chat_request (total)" in table
    # Which step decides the latency depends on the machine's load (the embedded model
    # usually, the home's context on a busy machine): the demo must name one of them.
    bottleneck = re.search(r"bottleneck \(ha-agent-tracing analyze\): (\w+), \d+ % of a typical", out)
    assert bottleneck is not None, out[-1500:]
    assert bottleneck.group(1) in METRICS, out[-1500:]
    assert "1 failed" in out, "the demo shows a failing tool"
    assert "2 tool call(s)" in out, "the demo shows two tools in one turn"


def test_a_second_demo_summarises_its_own_requests_not_the_history_of_the_first() -> None:
    """The report history keeps the first run's reports; the second run's table counts only its own 17."""
    _run_demo(1)
    out = _run_demo(1)
    table = out.split("Where the time of a chat request goes")[1]
    row = re.search(r"\nrate_limit_check +(\d+) ", table)
    assert row is not None, table
    assert row.group(1) == "17", table


def test_unknown_command_is_a_usage_error() -> None:
    """A typo exits 2 with usage, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "ha_agent_tracing._cli", "deom"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


TOKEN = "cli-test-token-0123456789"


def _serve_one_chat(tmp_path: Path, *flags: str) -> tuple[str, list[dict[str, Any]]]:
    """Run `ha-agent-tracing serve` with ``flags``, send one chat message; its log and stored reports."""
    # A history of its own, in the default location.
    env = serve_env(TOKEN, XDG_STATE_HOME=str(tmp_path / "state"))
    log = tmp_path / f"serve{'-'.join(flags)}.log"
    with serve_command(env, log, *flags) as base:
        answer = httpx.post(f"{base}/api/v1/chat", json={"message": "Turn off the kitchen light"}, timeout=30)
        assert answer.status_code == 200, log.read_text()
        time.sleep(0.2)  # the report's background spans land
        found = httpx.get(
            f"{base}/api/v1/performance/reports", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert found.status_code == 200, found.text
    body = found.json()
    return log.read_text(), body["reports"] if isinstance(body, dict) else body


@pytest.mark.parametrize(("flags", "logged"), [((), True), (("--log-level", "warning"), False)])
def test_serve_log_level_rules_the_performance_lines(
    tmp_path: Path, flags: tuple[str, ...], logged: bool
) -> None:
    """Each request's [Performance] INFO line is logged at the default level, not under --log-level warning."""
    output, _ = _serve_one_chat(tmp_path, *flags)
    assert ("[Performance] chat_request " in output) is logged, output
    assert "Traceback" not in output


def test_serve_makes_one_report_per_chat_and_none_for_the_embedded_model(tmp_path: Path) -> None:
    """The embedded model's requests add no reports: FastAPI's own telemetry stays off for it.

    `serve` sets the global provider, which would otherwise turn that telemetry
    on for every FastAPI app in the process, the model's stand-in included.
    """
    _, reports = _serve_one_chat(tmp_path, "--log-level", "warning")
    assert [r["operation"] for r in reports] == ["chat_request"]
    assert reports[0]["root_span"] == "POST /api/v1/chat"
