"""Alert rules: the expression language and the TOML file that holds them.

A rules file is TOML (``tomllib`` is in the standard library, so no
dependency is needed)::

    [[rules]]
    name = "openai_api_call_slow"
    expr = "p95(openai_api_call) > 3000 ms for 5m"
    summary = "The model answers slowly"      # optional
    severity = "warning"                      # optional, a label in the webhook
    min_count = 5                             # optional: fewer measurements in the window never fire

Expressions, where NAME is a tracked metric (``openai_api_call``) or an
operation (``chat_request``: its whole requests)::

    pQ(NAME) > V ms|s [over W] [for F]          percentile threshold (window W, default 5m)
    errors(NAME) > V % [over W] [for F]         share of NAME's measurements with status error
    pQ(NAME) > V x offset D [over W] [for F]    regression: pQ over the last W against the
                                                same window D earlier (W default 1h)

``>=`` works as well as ``>``; ``for F`` (default 0) is how long the
condition must hold before the alert fires, as in Prometheus. Durations are a
number and ``s``, ``m``, ``h`` or ``d``.

:func:`parse_rules_file` never raises for a bad rule: it returns the valid
rules and one message per invalid one (naming it and the problem), so a
service starts with the rules that are good.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["AlertRule", "RuleError", "default_rules", "parse_expression", "parse_rules", "parse_rules_file"]

RuleKind = Literal["percentile", "error_ratio", "regression"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EXPRESSION = re.compile(
    r"""^\s*(?P<stat>p\d+(?:\.\d+)?|errors)\s*\(\s*(?P<name>[^()\s]+)\s*\)
        \s*(?P<op>>=|>)\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%|x)
        (?:\s+offset\s+(?P<offset>\S+))?
        (?:\s+over\s+(?P<window>\S+))?
        (?:\s+for\s+(?P<for>\S+))?\s*$""",
    re.X,
)
_KEYS = {"name", "expr", "summary", "severity", "min_count"}


class RuleError(ValueError):
    """A rule that cannot be used; the message says why."""


@dataclass(frozen=True)
class AlertRule:
    """One parsed rule. ``threshold`` is ms (percentile), a fraction (error ratio) or a factor."""

    name: str
    expr: str
    kind: RuleKind
    target: str
    threshold: float
    inclusive: bool
    quantile: float
    window_s: float
    for_s: float
    offset_s: float = 0.0
    summary: str = ""
    severity: str = "warning"
    min_count: int = 1

    def describe(self) -> str:
        """The condition in words, for log lines and summaries."""
        op = ">=" if self.inclusive else ">"
        q = f"p{_number(self.quantile * 100)}({self.target})"
        window = _duration_text(self.window_s)
        if self.kind == "percentile":
            return f"{q} over {window} {op} {_number(self.threshold)} ms"
        if self.kind == "error_ratio":
            return f"errors({self.target}) over {window} {op} {_number(self.threshold * 100)} %"
        earlier = _duration_text(self.offset_s)
        return f"{q} over {window} {op} {_number(self.threshold)}x the same window {earlier} earlier"


def _number(value: float) -> str:
    return f"{value:g}"


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{_number(seconds / size)}{unit}"
    return f"{_number(seconds)}s"


def _duration(text: str, what: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise RuleError(f"{what} {text!r} is not a duration such as 30s, 5m, 1h or 1d")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def parse_expression(name: str, expr: str, **options: Any) -> AlertRule:
    """Parse one expression into a rule; raises :class:`RuleError` saying what is wrong."""
    match = _EXPRESSION.match(expr)
    if match is None:
        raise RuleError(
            f"{expr!r} is not an alert expression; expected e.g. 'p95(openai_api_call) > 3000 ms for 5m', "
            "'errors(tool_execution) > 5 %' or 'p95(chat_request) >= 1.5 x offset 1d over 1h'"
        )
    stat, unit = match.group("stat"), match.group("unit")
    value = float(match.group("value"))
    offset = match.group("offset")
    for_s = _duration(match.group("for"), "'for'") if match.group("for") else 0.0
    quantile = 0.0
    if stat != "errors":
        quantile = float(stat[1:]) / 100
        if not 0 < quantile < 1:
            raise RuleError(f"percentile {stat} must be between p0 and p100 (exclusive)")
    if stat == "errors":
        if unit != "%":
            raise RuleError(f"errors(...) is a share: give the threshold in %, not {unit!r}")
        if offset:
            raise RuleError("errors(...) takes no 'offset'")
        kind: RuleKind = "error_ratio"
        threshold = value / 100
        if threshold > 1:
            raise RuleError(f"an error share above 100 % never happens ({value:g} %)")
    elif unit == "x":
        if not offset:
            raise RuleError("a factor ('x') compares with a baseline: add 'offset 1d' (or another duration)")
        kind = "regression"
        threshold = value
    elif unit in ("ms", "s"):
        if offset:
            raise RuleError("'offset' goes with a factor ('1.5 x offset 1d'), not with a threshold in ms")
        kind = "percentile"
        threshold = value * 1000 if unit == "s" else value
    else:
        raise RuleError(f"a percentile's threshold is in ms or s (or a factor 'x'), not {unit!r}")
    default_window = 3600.0 if kind == "regression" else 300.0
    window_s = _duration(match.group("window"), "'over'") if match.group("window") else default_window
    if window_s <= 0:
        raise RuleError("the window ('over') must be longer than 0")
    return AlertRule(
        name=name,
        expr=expr,
        kind=kind,
        target=match.group("name"),
        threshold=threshold,
        inclusive=match.group("op") == ">=",
        quantile=quantile,
        window_s=window_s,
        for_s=for_s,
        offset_s=_duration(offset, "'offset'") if offset else 0.0,
        **options,
    )


def _rule(index: int, entry: Any, seen: set[str]) -> AlertRule:
    if not isinstance(entry, dict):
        raise RuleError("is not a table of name, expr, ...")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise RuleError(f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(_KEYS))}")
    name, expr = entry.get("name"), entry.get("expr")
    if not isinstance(name, str) or not name.strip():
        raise RuleError("has no name")
    if name in seen:
        raise RuleError("has the same name as an earlier rule")
    if not isinstance(expr, str):
        raise RuleError("has no expr")
    options: dict[str, Any] = {}
    summary = entry.get("summary", "")
    if not isinstance(summary, str):
        raise RuleError("summary must be a string")
    severity = entry.get("severity", "warning")
    if not isinstance(severity, str) or not severity:
        raise RuleError("severity must be a non-empty string")
    min_count = entry.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise RuleError(f"min_count must be a whole number of 1 or more, not {min_count!r}")
    options.update(summary=summary, severity=severity, min_count=min_count)
    return parse_expression(name.strip(), expr, **options)


def parse_rules(data: Any, source: str = "alert rules") -> tuple[list[AlertRule], list[str]]:
    """Rules from parsed TOML (``{"rules": [...]}``): the valid ones and a message per invalid one."""
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        return [], [f"{source}: expected [[rules]] tables (each with name and expr)"]
    rules: list[AlertRule] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["rules"], start=1):
        label = entry.get("name") if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None
        who = f"rule {label!r} (#{index})" if label else f"rule #{index}"
        try:
            rule = _rule(index, entry, seen)
        except RuleError as exc:
            problems.append(f"{source}: {who} {exc}; it is left out")
            continue
        seen.add(rule.name)
        rules.append(rule)
    return rules, problems


def parse_rules_file(path: str | Path) -> tuple[list[AlertRule], list[str]]:
    """Read a TOML rules file: valid rules, and one message per problem (nothing raises)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return [], [
            f"alert rules file {str(path)!r} cannot be read ({exc.strerror or exc}); no rules from it"
        ]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [f"alert rules file {str(path)!r} is not valid TOML ({exc}); no rules from it"]
    return parse_rules(data, f"alert rules file {str(path)!r}")


DEFAULT_RULES_TOML = """
[[rules]]
name = "openai_api_call_slow"
expr = "p95(openai_api_call) > 3000 ms for 5m"
summary = "Model calls are slow: p95 over 3 s for 5 minutes"
min_count = 5

[[rules]]
name = "tool_execution_errors"
expr = "errors(tool_execution) > 5 % for 5m"
summary = "More than 5 % of tool calls fail"
min_count = 5

[[rules]]
name = "chat_request_regression"
expr = "p95(chat_request) >= 1.5 x offset 1d over 1h"
summary = "Chat requests are 1.5 times slower than the same hour yesterday"
min_count = 20
"""
"""The built-in rules, used when ``HA_AGENT_TRACING_ALERT_RULES`` is not set."""


def default_rules() -> list[AlertRule]:
    """The built-in rules (:data:`DEFAULT_RULES_TOML`)."""
    rules, problems = parse_rules(tomllib.loads(DEFAULT_RULES_TOML), "built-in rules")
    assert not problems, problems
    return rules
