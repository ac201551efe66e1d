"""OTEL_PROPAGATORS: any value lets the application start; installed propagators work.

OpenTelemetry reads the variable when ``opentelemetry.propagate`` is first
imported, and ``import fastapi`` (0.165 and later) imports it, so each case
runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from ha_agent_tracing.telemetry._propagators import propagator_names

from .agent_harness import serve_command, serve_env

TOKEN = "propagators-token-0123456789"

# The README's import order: this package first, then FastAPI, which imports OpenTelemetry.
IMPORT_FIRST = """
import ha_agent_tracing  # noqa: F401
from fastapi import FastAPI
from opentelemetry import propagate

print(sorted(propagate.get_global_textmap().fields))
"""


def _python(code: str, propagators: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_PROPAGATORS"] = propagators
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


TRACECONTEXT = ["traceparent", "tracestate"]
W3C = ["baggage", "traceparent", "tracestate"]
B3_MULTI = ["x-b3-sampled", "x-b3-spanid", "x-b3-traceid"]


@pytest.mark.parametrize(
    ("value", "fields", "used"),
    [
        ("tracecontext,nonsense", TRACECONTEXT, "'tracecontext'"),
        ("ottrace", W3C, "'tracecontext,baggage'"),  # a real propagator, not installed here
        ("b3,nonsense", ["b3"], "'b3'"),
        ("TraceContext, Baggage", W3C, "'tracecontext,baggage'"),
        ("tracecontext,none", [], "'none'"),
    ],
)
def test_a_bad_value_warns_once_and_keeps_the_usable_part(value: str, fields: list[str], used: str) -> None:
    """The application starts with what can be used of the value, and one warning says so."""
    result = _python(IMPORT_FIRST, value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(fields)
    warnings = [line for line in result.stderr.splitlines() if "OTEL_PROPAGATORS" in line]
    assert len(warnings) == 1, result.stderr
    assert f"OTEL_PROPAGATORS={value!r} is not valid" in warnings[0]
    assert f"using {used} instead" in warnings[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        ("tracecontext,baggage", W3C),
        ("b3", ["b3"]),
        ("b3multi", B3_MULTI),
        ("jaeger,tracecontext", ["traceparent", "tracestate", "uber-trace-id"]),
        ("none", []),
    ],
)
def test_installed_propagators_are_used_without_a_word(value: str, fields: list[str]) -> None:
    """B3 and Jaeger come from their PyPI packages (in the test extra); valid values warn about nothing."""
    result = _python(IMPORT_FIRST, value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(fields)
    assert result.stderr == ""


def test_importing_fastapi_first_lets_opentelemetry_raise() -> None:
    """What the README warns about: FastAPI imports OpenTelemetry before this package can fix the value."""
    result = _python("import fastapi\nimport ha_agent_tracing\n", "tracecontext,nonsense")
    assert result.returncode != 0
    assert "Propagator nonsense not found" in result.stderr


def test_under_opentelemetry_instrument_a_bad_value_still_stops_the_program() -> None:
    """What the README says: the distro reads the variable before any package hook can fix it."""
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_PROPAGATORS": "tracecontext,nonsense", "OTEL_TRACES_EXPORTER": "none"})
    result = subprocess.run(
        [str(command), sys.executable, "-c", "print('ran')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ran" not in result.stdout
    assert "Propagator nonsense not found" in result.stderr


def test_the_parser_names_the_package_to_install() -> None:
    """A documented propagator that is not installed: the warning says which package brings it."""
    with pytest.raises(ValueError, match="pip install opentelemetry-propagator-ot-trace"):
        propagator_names("ottrace")
    assert propagator_names("tracecontext,baggage") == "tracecontext,baggage"


def test_serve_starts_with_a_bad_name_and_continues_b3_traces(tmp_path: Path) -> None:
    """`serve` with OTEL_PROPAGATORS=b3,nonsense: one warning, and a caller's B3 header names the trace."""
    env = serve_env(TOKEN, OTEL_PROPAGATORS="b3,nonsense")
    trace_id = "80f198ee56343ba864fe8b2a57d3eff7"
    log = tmp_path / "serve.log"
    with serve_command(env, log) as base:
        answer = httpx.post(
            f"{base}/api/v1/chat",
            json={"message": "Hello"},
            headers={"b3": f"{trace_id}-e457b5a2e4d86bd1-1"},
            timeout=30,
        )
        assert answer.status_code == 200, log.read_text()
        report = httpx.get(
            f"{base}/api/v1/performance/reports", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).json()["reports"][-1]
    output = log.read_text()
    assert report["trace_id"] == trace_id
    assert output.count("OTEL_PROPAGATORS='b3,nonsense' is not valid") == 1, output
    assert "Traceback" not in output
