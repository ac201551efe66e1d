"""Where a set of reports comes from: an export file, the history, or Jaeger.

A *source spec* is one string, as ``ha-agent-tracing compare A B`` takes it::

    reports.json                               an export (GET /api/v1/performance/export)
    reports.json#variant=sequential            ... only the reports of one variant
    history#version=1.4.0&since=24h            a selection from the report history (SQLite)
    jaeger:http://localhost:16686#service=ha-ai-agent-service&since=1h&limit=200

Everything after ``#`` is a filter, ``key=value`` joined by ``&``: ``operation``,
``version`` (``service.version``), ``variant``, ``since`` and ``until`` (ISO 8601,
epoch seconds, or a duration back from now such as ``90m``, ``24h``, ``7d``),
``limit`` (the newest N), for Jaeger ``service``, for the history ``path`` (default: the configured
``HA_AGENT_TRACING_HISTORY_PATH``). Every report is checked before it is
used; a malformed one is an error naming the source and the problem.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "FILTER_KEYS",
    "ReportSet",
    "ReportSetError",
    "SourceSpec",
    "load_report_set",
    "parse_source",
    "parse_time",
    "select_reports",
    "validate_reports",
]

FILTER_KEYS = ("operation", "version", "variant", "since", "until", "service", "limit", "path")


class ReportSetError(ValueError):
    """A report set could not be read; the message names the source and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source spec: ``kind`` is ``file``, ``history`` or ``jaeger``."""

    text: str
    kind: str
    location: str
    filters: Mapping[str, str] = field(default_factory=dict[str, str])


@dataclass
class ReportSet:
    """Reports from one source, filtered, with what was asked for."""

    label: str
    reports: list[dict[str, Any]]
    spec: SourceSpec


def parse_source(text: str) -> SourceSpec:
    """Split a source spec into its kind, location and filters; raises :class:`ReportSetError`."""
    if not text.strip():
        raise ReportSetError(repr(text), "empty source; give a file, history#... or jaeger:URL")
    location, _, query = text.partition("#")
    filters: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise ReportSetError(text, f"filter {part!r} is not key=value")
        if key not in FILTER_KEYS:
            raise ReportSetError(text, f"unknown filter {key!r}; known: {', '.join(FILTER_KEYS)}")
        filters[key] = value
    for key in ("since", "until"):
        if key in filters:
            try:
                parse_time(filters[key])
            except ValueError as exc:
                raise ReportSetError(text, f"{key}: {exc}") from None
    if "limit" in filters and not filters["limit"].isdigit():
        raise ReportSetError(text, f"limit must be a whole number, not {filters['limit']!r}")
    if location == "history":
        return SourceSpec(text, "history", "", filters)
    if location.startswith("jaeger:"):
        url = location.removeprefix("jaeger:")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ReportSetError(
                text, f"jaeger: needs the query service's URL (http://host:16686), not {url!r}"
            )
        return SourceSpec(text, "jaeger", url.rstrip("/"), filters)
    return SourceSpec(text, "file", location, filters)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str, now: Callable[[], float] = time.time) -> float:
    """Epoch seconds from ISO 8601, epoch seconds, or a duration back from now (``90m``, ``7d``)."""
    value = value.strip()
    relative = _DURATION.match(value)
    if relative:
        return now() - float(relative.group(1)) * _SECONDS[relative.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use ISO 8601, epoch seconds, or a duration such as 24h"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z or +00:00")
    return moment.timestamp()


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_reports(data: object, source: str) -> list[dict[str, Any]]:
    """Check a decoded JSON document of reports; returns them or raises :class:`ReportSetError`.

    Accepts an export (a JSON array of reports) or a reports answer
    (``{"reports": [...]}``). Each report needs ``operation`` (text),
    ``total_duration`` (a number of ms, 0 or more) and ``metrics`` (a list of
    objects with ``name`` and ``duration``).
    """
    if isinstance(data, dict) and "reports" in data:
        data = data["reports"]  # the shape of GET /api/v1/performance/reports
    if not isinstance(data, list):
        raise ReportSetError(source, "expected a JSON array of reports (GET /api/v1/performance/export)")
    reports: list[dict[str, Any]] = []
    for index, report in enumerate(data):
        where = f"report {index}"
        if not isinstance(report, dict):
            raise ReportSetError(source, f"{where} is not an object")
        if not isinstance(report.get("operation"), str) or not report["operation"]:
            raise ReportSetError(source, f"{where} has no 'operation' name")
        total = report.get("total_duration")
        if not _number(total) or total < 0:
            raise ReportSetError(
                source, f"{where} has no 'total_duration' number of 0 or more (got {total!r})"
            )
        metrics = report.get("metrics")
        if not isinstance(metrics, list):
            raise ReportSetError(source, f"{where} has no 'metrics' list")
        for m_index, metric in enumerate(metrics):
            if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
                raise ReportSetError(source, f"{where}, metric {m_index} has no 'name'")
            duration = metric.get("duration")
            if not _number(duration) or duration < 0:
                raise ReportSetError(
                    source,
                    f"{where}, metric {m_index} ({metric['name']}) has no 'duration' number "
                    f"of 0 or more (got {duration!r})",
                )
            if not isinstance(metric.get("metadata", {}), dict):
                raise ReportSetError(
                    source, f"{where}, metric {m_index} has 'metadata' that is not an object"
                )
        reports.append(report)
    return reports


def select_reports(reports: Sequence[dict[str, Any]], filters: Mapping[str, str]) -> list[dict[str, Any]]:
    """The reports that match every filter (``operation``, ``version``, ``variant``, ``since``, ``until``)."""
    since = parse_time(filters["since"]) if "since" in filters else None
    until = parse_time(filters["until"]) if "until" in filters else None
    chosen: list[dict[str, Any]] = []
    for report in reports:
        if "operation" in filters and report["operation"] != filters["operation"]:
            continue
        if "version" in filters and report.get("service_version") != filters["version"]:
            continue
        if "variant" in filters and report.get("variant") != filters["variant"]:
            continue
        stamp = report.get("timestamp")
        if since is not None and not (_number(stamp) and stamp >= since):
            continue
        if until is not None and not (_number(stamp) and stamp < until):
            continue
        chosen.append(report)
    if "limit" in filters:
        limit = int(filters["limit"])
        chosen = chosen[len(chosen) - limit :] if limit else []
    return chosen


def _load_file(spec: SourceSpec) -> list[dict[str, Any]]:
    path = Path(spec.location)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportSetError(spec.location, "no such file") from None
    except IsADirectoryError:
        raise ReportSetError(spec.location, "is a directory, not an export file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportSetError(spec.location, f"cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportSetError(
            spec.location, f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return validate_reports(data, spec.location)


def _load_jaeger(spec: SourceSpec) -> list[dict[str, Any]]:
    from ha_agent_tracing.reports import JaegerError, read_jaeger

    service = spec.filters.get("service")
    if not service:
        raise ReportSetError(spec.text, "jaeger: needs #service=NAME (Jaeger searches one service at a time)")
    until = parse_time(spec.filters["until"]) if "until" in spec.filters else time.time()
    since = parse_time(spec.filters.get("since", "1h"))
    limit = int(spec.filters.get("limit", "200"))
    try:
        reports = read_jaeger(spec.location, service=service, since=since, until=until, limit=max(limit, 1))
    except (JaegerError, ValueError) as exc:
        raise ReportSetError(spec.text, str(exc)) from None
    return [dict(report) for report in reports]


def _load_history(spec: SourceSpec) -> list[dict[str, Any]]:
    from ha_agent_tracing._config import history_file, load_config
    from ha_agent_tracing.reports import HistoryReader, HistoryUnavailable

    path = history_file(spec.filters["path"], None) if "path" in spec.filters else load_config().history_path
    if path is None:
        raise ReportSetError(
            spec.text, "report history is off (HA_AGENT_TRACING_HISTORY_PATH=off); add #path=FILE"
        )
    since = parse_time(spec.filters["since"]) if "since" in spec.filters else None
    until = parse_time(spec.filters["until"]) if "until" in spec.filters else None
    try:
        found = HistoryReader(path).query(since, until, spec.filters.get("operation"))
    except HistoryUnavailable as exc:
        raise ReportSetError(spec.text, str(exc)) from None
    return validate_reports(found, f"{spec.text} ({path})")


Loader = Callable[[SourceSpec], list[dict[str, Any]]]


def load_report_set(text: str, loaders: Mapping[str, Loader] | None = None) -> ReportSet:
    """Read, check and filter the reports a source spec names.

    ``loaders`` maps a kind (``file``, ``history``, ``jaeger``) to the function
    that reads it, in place of the built-in ones. A Jaeger source needs
    ``#service=``; its window is ``since`` (default ``1h``) to ``until`` (now),
    at most ``limit`` (200) traces.
    """
    spec = parse_source(text)
    available: dict[str, Loader] = {
        "file": _load_file,
        "history": _load_history,
        "jaeger": _load_jaeger,
        **(loaders or {}),
    }
    loader = available.get(spec.kind)
    if loader is None:
        raise ReportSetError(text, f"{spec.kind} sources are not available here")
    reports = select_reports(loader(spec), spec.filters)
    return ReportSet(label=text, reports=reports, spec=spec)
