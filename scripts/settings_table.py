"""Print the README's settings tables from the settings declarations.

Run: ``.venv/bin/python scripts/settings_table.py``
"""

from __future__ import annotations

from ha_agent_tracing._config import SETTINGS
from ha_agent_tracing._settings import documented
from ha_agent_tracing.agent._settings import AGENT_SETTINGS


def table(settings: object) -> str:
    rows = ["| variable | default | effect |", "| --- | --- | --- |"]
    for variables, default, meaning in documented(settings):  # type: ignore[arg-type]
        names = " / ".join(f"`{v.strip()}`" for v in variables.split("/"))
        rows.append(f"| {names} | {default} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print("### Tracing\n")
    print(table(SETTINGS))
    print("\n### Reference agent service\n")
    print(table([s for s in AGENT_SETTINGS if s not in SETTINGS]))
