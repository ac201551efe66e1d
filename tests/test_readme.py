"""The README documents what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ha_agent_tracing._config import SETTINGS
from ha_agent_tracing.agent._settings import AGENT_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    """Each variable of both settings tables appears in the README's tables."""
    missing = [
        var for setting in (*SETTINGS, *AGENT_SETTINGS) for var in setting.env if f"`{var}`" not in README
    ]
    assert missing == []


def test_the_readme_tables_match_the_generator() -> None:
    """The tables in the README are what scripts/settings_table.py prints now."""
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert rows
    assert [row for row in rows if row not in README] == []


def test_the_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    """One command runs the demo, one runs the tests, and .ci/run calls that one."""
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick_start, re.S)
    assert [b.strip() for b in blocks] == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/ha-agent-tracing demo",
        "./scripts/test",
    ]
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
