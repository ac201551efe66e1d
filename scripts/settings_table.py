"""Print the README's settings tables from the settings declarations.

Run: ``.venv/bin/python scripts/settings_table.py``
"""

from __future__ import annotations

from ha_agent_tracing._config import ALERT_SETTINGS, METRICS_SETTINGS, SETTINGS
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
    print(table([s for s in SETTINGS if s not in METRICS_SETTINGS and s not in ALERT_SETTINGS]))
    print("\n### Metrics\n")
    print(table(METRICS_SETTINGS))
    print("\n### Alerting\n")
    print(table(ALERT_SETTINGS))
    print("\n### Reference agent service\n")
    print(table([s for s in AGENT_SETTINGS if s not in SETTINGS]))
