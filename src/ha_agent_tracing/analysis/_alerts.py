"""The embedded alert evaluator: rules over recent measurements, off the request path.

Measurements arrive as observations from the span metrics processor (one
list per finished request, appended to a bounded inbox: the request pays for
a deque append). A background thread wakes every ``interval_s`` on an
injectable clock, folds the inbox into per-minute histograms of the names the
rules mention, and evaluates every rule:

* a firing or a resolving is one WARNING ``[Performance] ALERT ...`` line on
  the ``ha_agent_tracing`` logger, an entry of :meth:`AlertEngine.alerts`
  (served at ``GET /api/v1/performance/alerts``), and, with a webhook, one
  POST in Alertmanager's webhook format through :class:`WebhookNotifier`.

Memory is bounded whatever the traffic: per name and minute, a histogram of
log-spaced buckets 5 % wide (percentiles are read to within ±2.5 %), kept as
long as the longest rule looks back (window + offset).

A regression rule's baseline (the same window a day earlier) is read from the
report history when one is given (``history``): the reports of that window,
folded into the same histograms on the evaluator's thread, once a minute. A
restarted service then still has yesterday to compare with. Without history,
or while it cannot be read, the baseline is the in-memory one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning
from ha_agent_tracing.analysis._rules import AlertRule
from ha_agent_tracing.reports._history import HistoryReader, HistoryUnavailable

__all__ = ["Alert", "AlertEngine", "Measurement", "WebhookNotifier", "alertmanager_payload"]

logger = logging.getLogger("ha_agent_tracing")

_SLOT_S = 60.0
_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)
_MIN_MS = 0.001


class Measurement(Protocol):
    """What the engine reads from an observation (``telemetry.Observation`` has these)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def error(self) -> bool: ...
    @property
    def end_s(self) -> float: ...


def _bucket(ms: float) -> int:
    if ms <= _MIN_MS:
        return 0
    return 1 + int(math.log(ms / _MIN_MS) / _LOG_GROWTH)


def _bucket_value(index: int) -> float:
    if index == 0:
        return _MIN_MS
    # The geometric middle of the bucket [MIN * g^(i-1), MIN * g^i).
    return _MIN_MS * _GROWTH ** (index - 0.5)


class _Slot:
    __slots__ = ("buckets", "count", "errors")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.buckets: dict[int, int] = {}


@dataclass(frozen=True)
class _Window:
    count: int
    errors: int
    buckets: dict[int, int]

    def quantile(self, q: float) -> float:
        rank = q * (self.count - 1)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return _bucket_value(index)
        return _bucket_value(max(self.buckets))


class _Series:
    """Per-minute histograms of one name's measurements."""

    def __init__(self) -> None:
        self.slots: dict[int, _Slot] = {}

    def add(self, end_s: float, ms: float, error: bool) -> None:
        key = int(end_s // _SLOT_S)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = _Slot()
        slot.count += 1
        slot.errors += error
        index = _bucket(ms)
        slot.buckets[index] = slot.buckets.get(index, 0) + 1

    def window(self, start_s: float, end_s: float) -> _Window:
        first, last = int(start_s // _SLOT_S), int(end_s // _SLOT_S)
        count = errors = 0
        buckets: dict[int, int] = {}
        for key in range(first, last + 1):
            slot = self.slots.get(key)
            if slot is None:
                continue
            count += slot.count
            errors += slot.errors
            for index, n in slot.buckets.items():
                buckets[index] = buckets.get(index, 0) + n
        return _Window(count, errors, buckets)

    def prune(self, before_s: float) -> None:
        oldest = int(before_s // _SLOT_S)
        for key in [k for k in self.slots if k < oldest]:
            del self.slots[key]


@dataclass
class Alert:
    """The state of one rule that has fired, as ``GET /api/v1/performance/alerts`` lists it."""

    rule: str
    state: Literal["firing", "resolved"]
    since: float
    value: float
    threshold: float
    summary: str
    fired_at: float = 0.0
    """When the rule last fired (equal to ``since`` while firing)."""
    unit: Literal["ms", "ratio"] = "ms"
    """What ``value`` and ``threshold`` are: milliseconds, or a share of calls (0.05 is 5 %)."""

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {
            "rule": self.rule,
            "state": self.state,
            "since": self.since,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "summary": self.summary,
        }


@dataclass
class _RuleState:
    pending_since: float | None = None
    alert: Alert | None = None


class AlertEngine:
    """Evaluates ``rules`` over observed measurements.

    Args:
        rules: the rules to evaluate.
        clock: epoch seconds now (tests pass a controlled clock).
        notify: called with each transition (an :class:`Alert`) after it is logged.
        interval_s: time between evaluations of the background thread.
        max_inbox: measurements waiting for the next evaluation at most (oldest dropped).
        history: the report history; regression rules read their baseline window from it.
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        clock: Callable[[], float] = time.time,
        notify: Callable[[Alert, AlertRule], None] | None = None,
        interval_s: float = 15.0,
        max_inbox: int = 100_000,
        history: HistoryReader | None = None,
    ) -> None:
        self.rules = list(rules)
        self.clock = clock
        """Epoch seconds now; replaceable, so that a test can drive evaluations on its own clock."""
        self._notify = notify
        self._interval = interval_s
        self._inbox: deque[Measurement] = deque(maxlen=max_inbox)
        self._names = {rule.target for rule in self.rules}
        self._retention = max((r.window_s + r.offset_s + _SLOT_S for r in self.rules), default=0.0)
        self._series: dict[tuple[str, str], _Series] = {}
        self._states = {rule.name: _RuleState() for rule in self.rules}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = InternalErrors("alert evaluator")
        self._history = history
        self._history_errors = InternalErrors("alert baseline from the report history")
        # rule name -> (first minute, last minute) and the baseline window read for it
        self._baselines: dict[str, tuple[tuple[int, int], _Window]] = {}

    # ------------------------------------------------------------ input

    def observe(self, observations: Iterable[Measurement]) -> None:
        """Take one request's measurements (cheap; called on the request's thread)."""
        names = self._names
        self._inbox.extend(o for o in observations if o.name in names)

    def _drain(self) -> None:
        inbox = self._inbox
        while True:
            try:
                o = inbox.popleft()
            except IndexError:
                return
            key = (o.kind, o.name)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.add(o.end_s, o.duration_ms, o.error)

    def _window(self, name: str, start_s: float, end_s: float) -> _Window:
        # An operation's whole requests when the name is an operation, else the metric's spans.
        for kind in ("operation", "metric"):
            series = self._series.get((kind, name))
            if series is not None:
                window = series.window(start_s, end_s)
                if window.count:
                    return window
        return _Window(0, 0, {})

    # ------------------------------------------------------------ evaluation

    def _measure(
        self, rule: AlertRule, now: float, stored: _Window | None = None
    ) -> tuple[float, float] | None:
        """(value, threshold) of the rule now, or ``None`` without enough data.

        ``stored`` is a regression rule's baseline read from the history; without
        it the baseline is the in-memory window.
        """
        current = self._window(rule.target, now - rule.window_s, now)
        if current.count < rule.min_count:
            return None
        if rule.kind == "error_ratio":
            return current.errors / current.count, rule.threshold
        value = current.quantile(rule.quantile)
        if rule.kind == "percentile":
            return value, rule.threshold
        start, end = now - rule.offset_s - rule.window_s, now - rule.offset_s
        baseline = stored if stored is not None else self._window(rule.target, start, end)
        if baseline.count < rule.min_count:
            return None
        return value, rule.threshold * baseline.quantile(rule.quantile)

    def _stored_baselines(self, now: float) -> dict[str, _Window]:
        """Each regression rule's baseline window read from the history (none without history).

        Runs before the evaluation takes its lock, so that a slow read never holds
        up ``alerts()``. A rule whose history cannot be read is left out: its
        baseline is then the in-memory one.
        """
        history = self._history
        if history is None or not history.path.exists():
            return {}
        found: dict[str, _Window] = {}
        for rule in self.rules:
            if rule.kind != "regression":
                continue
            start, end = now - rule.offset_s - rule.window_s, now - rule.offset_s
            minutes = (int(start // _SLOT_S), int(end // _SLOT_S))
            cached = self._baselines.get(rule.name)
            if cached is not None and cached[0] == minutes:
                found[rule.name] = cached[1]
                continue
            # Whole minutes, as the in-memory windows count them.
            since, until = minutes[0] * _SLOT_S, (minutes[1] + 1) * _SLOT_S
            try:
                window = _history_window(history, rule.target, since, until)
            except HistoryUnavailable as exc:
                self._history_errors.record(exc)
                continue
            if until < now - _SLOT_S:  # a minute still being written is read again next time
                self._baselines[rule.name] = (minutes, window)
            found[rule.name] = window
        return found

    def evaluate(self) -> list[Alert]:
        """Fold in new measurements and evaluate every rule once; returns the transitions."""
        now = self.clock()
        stored = self._stored_baselines(now)
        transitions: list[tuple[Alert, AlertRule]] = []
        with self._lock:
            self._drain()
            for series in self._series.values():
                series.prune(now - self._retention)
            for rule in self.rules:
                state = self._states[rule.name]
                measured = self._measure(rule, now, stored.get(rule.name))
                breached = measured is not None and (
                    measured[0] >= measured[1] if rule.inclusive else measured[0] > measured[1]
                )
                firing = state.alert is not None and state.alert.state == "firing"
                if breached and measured is not None:
                    value, threshold = measured
                    if firing and state.alert is not None:
                        state.alert.value, state.alert.threshold = value, threshold
                        continue
                    if state.pending_since is None:
                        state.pending_since = now
                    if now - state.pending_since >= rule.for_s:
                        state.alert = Alert(
                            rule.name,
                            "firing",
                            now,
                            value,
                            threshold,
                            _summary(rule, value, threshold),
                            now,
                            _unit(rule),
                        )
                        transitions.append((state.alert, rule))
                    continue
                state.pending_since = None
                if firing and state.alert is not None:
                    value = measured[0] if measured is not None else state.alert.value
                    threshold = measured[1] if measured is not None else state.alert.threshold
                    summary = _summary(rule, value, threshold)
                    fired_at = state.alert.fired_at
                    state.alert = Alert(
                        rule.name, "resolved", now, value, threshold, summary, fired_at, _unit(rule)
                    )
                    transitions.append((state.alert, rule))
        for alert, rule in transitions:
            logger.warning(
                "[Performance] ALERT %s %s: %s (value %s, threshold %s)",
                alert.state,
                alert.rule,
                alert.summary,
                _format(rule, alert.value),
                _format(rule, alert.threshold),
            )
            if self._notify is not None:
                try:
                    self._notify(alert, rule)
                except Exception as exc:  # noqa: BLE001 - a notifier never stops evaluation
                    self._errors.record(exc)
        return [alert for alert, _ in transitions]

    @property
    def baseline_read_errors(self) -> int:
        """Evaluations whose baseline could not be read from the history (memory was used)."""
        return self._history_errors.count

    def alerts(self) -> list[Alert]:
        """The latest state of every rule that has fired, firing first, newest first."""
        with self._lock:
            found = [state.alert for state in self._states.values() if state.alert is not None]
        return sorted(found, key=lambda a: (a.state != "firing", -a.since))

    # ------------------------------------------------------------ thread

    def start(self) -> AlertEngine:
        """Evaluate every ``interval_s`` on a daemon thread until :meth:`stop`."""
        if self._thread is None and self.rules:
            self._thread = threading.Thread(target=self._run, name="ha-agent-tracing-alerts", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.evaluate()
            except Exception as exc:  # noqa: BLE001 - the evaluator keeps going
                self._errors.record(exc)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (the current evaluation finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def _history_window(history: HistoryReader, name: str, since: float, until: float) -> _Window:
    """``name``'s measurements in the reports of ``[since, until)``: an operation's, else a metric's."""
    series = _Series()
    rows = history.rows(since, until, operation=name)
    if rows:
        for row in rows:
            series.add(row.timestamp, row.total_duration, row.status == "error")
    else:
        for row in history.rows(since, until):
            for metric, ms, failed in row.metrics():
                if metric == name:
                    series.add(row.timestamp, ms, failed)
    return series.window(since, until - _SLOT_S)


def _unit(rule: AlertRule) -> Literal["ms", "ratio"]:
    return "ratio" if rule.kind == "error_ratio" else "ms"


def _format(rule: AlertRule, value: float) -> str:
    if rule.kind == "error_ratio":
        return f"{value * 100:.1f} %"
    return f"{value:.1f} ms"


def _summary(rule: AlertRule, value: float, threshold: float) -> str:
    measured = rule.describe()
    head = f"{rule.summary}: " if rule.summary else ""
    if rule.kind == "error_ratio":
        return f"{head}{measured} (now {value * 100:.1f} %)"
    if rule.kind == "regression":
        return f"{head}{measured} (now {value:.1f} ms, baseline x factor {threshold:.1f} ms)"
    return f"{head}{measured} (now {value:.1f} ms)"


# ---------------------------------------------------------------- webhook


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(
    alert: Alert, rule: AlertRule, labels: dict[str, str] | None = None, receiver: str = "ha-agent-tracing"
) -> dict[str, Any]:
    """One transition in Alertmanager's webhook format (version 4)."""
    all_labels = {"alertname": alert.rule, "severity": rule.severity, **(labels or {})}
    annotations = {
        "summary": alert.summary,
        "expr": rule.expr,
        "value": f"{alert.value:g}",
        "threshold": f"{alert.threshold:g}",
    }
    firing = alert.state == "firing"
    fingerprint = hashlib.sha256(json.dumps(all_labels, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert.rule}"}}',
        "truncatedAlerts": 0,
        "status": alert.state,
        "receiver": receiver,
        "groupLabels": {"alertname": alert.rule},
        "commonLabels": all_labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [
            {
                "status": alert.state,
                "labels": all_labels,
                "annotations": annotations,
                "startsAt": _rfc3339(alert.fired_at),
                "endsAt": "0001-01-01T00:00:00Z" if firing else _rfc3339(alert.since),
                "generatorURL": "",
                "fingerprint": fingerprint,
            }
        ],
    }


class WebhookNotifier:
    """POSTs notifications from a bounded queue on its own thread, with retries and backoff.

    ``send`` never blocks: when the queue is full the notification is dropped,
    counted and warned about (rate-limited). A failed POST is retried
    ``retries`` times, waiting ``backoff_s``, then twice as long each time (at
    most 60 s).
    """

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 100,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._retries = retries
        self._backoff = backoff_s
        self._timeout = timeout_s
        self._labels = dict(labels or {})
        self._stop = threading.Event()
        self._dropped_warning = RateLimitedWarning()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="ha-agent-tracing-webhook", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert, rule: AlertRule) -> None:
        """Queue one transition (the engine's ``notify``)."""
        self.send(alertmanager_payload(alert, rule, self._labels))

    def send(self, payload: dict[str, Any]) -> bool:
        """Queue a payload; ``False`` (dropped and counted) when the queue is full."""
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            self._dropped_warning.warn(
                "alert webhook %s: queue full, a notification was dropped (%d so far)", self.url, self.dropped
            )
            return False
        return True

    def _post(self, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            response.read()

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            delay = self._backoff
            for attempt in range(self._retries + 1):
                try:
                    self._post(payload)
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    if attempt == self._retries or self._stop.is_set():
                        self.failed += 1
                        logger.warning(
                            "alert webhook %s: giving up on a notification after %d attempts (%s)",
                            self.url,
                            attempt + 1,
                            exc,
                        )
                        break
                    if self._stop.wait(delay):
                        self.failed += 1
                        break
                    delay = min(delay * 2, 60.0)
                else:
                    self.delivered += 1
                    break

    def stats(self) -> dict[str, int]:
        """Delivered, failed (after retries) and dropped (queue full) notifications."""
        return {"delivered": self.delivered, "failed": self.failed, "dropped": self.dropped}

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is queued within ``timeout_s``, then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._stop.set()
