"""Embedded alerting: rules, evaluation on a controlled clock, the log line, the API, the webhook."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ha_agent_tracing import configure_tracing, get_tracker
from ha_agent_tracing.analysis import (
    AlertEngine,
    AlertRule,
    RuleError,
    WebhookNotifier,
    default_rules,
    parse_expression,
    parse_rules_file,
)
from ha_agent_tracing.reports import History, HistoryReader
from ha_agent_tracing.telemetry._metrics import Observation

from .agent_harness import running_agent
from .conftest import make_tracing
from .webhook_receiver import Receiver

T0 = 1_800_000_000.0  # a fixed epoch second; every clock below is controlled


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def metric(name: str, ms: float, at: float, error: bool = False) -> Observation:
    return Observation("metric", name, "chat_request", ms, error, at)


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ha_agent_tracing" and r.levelno == logging.WARNING and "ALERT" in r.getMessage()
    ]


# ---------------------------------------------------------------- rules


def test_the_three_kinds_of_expression_parse() -> None:
    """Percentile threshold, error share and regression against a baseline."""
    slow = parse_expression("slow", "p95(openai_api_call) > 3000 ms for 5m")
    assert (slow.kind, slow.target, slow.quantile, slow.threshold) == (
        "percentile",
        "openai_api_call",
        0.95,
        3000,
    )
    assert (slow.window_s, slow.for_s, slow.inclusive) == (300, 300, False)
    assert parse_expression("s", "p99(x) >= 2.5 s over 10m").threshold == 2500
    errors = parse_expression("errors", "errors(tool_execution) > 5 %")
    assert (errors.kind, errors.threshold, errors.for_s) == ("error_ratio", 0.05, 0)
    regression = parse_expression("reg", "p95(chat_request) >= 1.5 x offset 1d over 1h")
    assert (regression.kind, regression.threshold, regression.offset_s, regression.window_s) == (
        "regression",
        1.5,
        86400,
        3600,
    )


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("p95 openai_api_call > 3000", "not an alert expression"),
        ("p95(x) > 3000 ms for soon", "'for' 'soon' is not a duration"),
        ("errors(x) > 5 ms", "give the threshold in %"),
        ("p95(x) > 1.5 x", "add 'offset 1d'"),
        ("p95(x) > 30 % for 5m", "in ms or s"),
        ("p100(x) > 3 ms", "between p0 and p100"),
        ("errors(x) > 150 %", "above 100 %"),
        ("p95(x) > 3 ms offset 1d", "'offset' goes with a factor"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(expr: str, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        parse_expression("r", expr)


def test_a_rules_file_keeps_the_valid_rules_and_names_each_bad_one(tmp_path: Path) -> None:
    """Every invalid rule is one message with its name and problem; the valid ones are kept."""
    path = tmp_path / "rules.toml"
    path.write_text(
        """
[[rules]]
name = "good"
expr = "p95(openai_api_call) > 3000 ms for 5m"

[[rules]]
name = "typo"
expr = "p95(openai_api_call) > 3000 minutes"

[[rules]]
name = "good"
expr = "errors(tool_execution) > 5 %"

[[rules]]
expr = "errors(tool_execution) > 5 %"

[[rules]]
name = "extra"
expr = "errors(tool_execution) > 5 %"
treshold = 3
"""
    )
    rules, problems = parse_rules_file(path)
    assert [r.name for r in rules] == ["good"]
    assert len(problems) == 4
    assert "rule 'typo' (#2)" in problems[0] and "not an alert expression" in problems[0]
    assert "rule 'good' (#3)" in problems[1] and "same name" in problems[1]
    assert "rule #4" in problems[2] and "has no name" in problems[2]
    assert "rule 'extra' (#5)" in problems[3] and "treshold" in problems[3]
    assert all(str(path) in p and "left out" in p for p in problems)


def test_an_unreadable_or_malformed_file_is_one_clear_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert parse_rules_file(missing)[1] == [
        f"alert rules file {str(missing)!r} cannot be read (No such file or directory); no rules from it"
    ]
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rules]\nname = 1")
    rules, problems = parse_rules_file(broken)
    assert rules == [] and "is not valid TOML" in problems[0]


def test_bad_rules_are_errors_at_start_and_the_valid_ones_run(
    tmp_path: Path, lib_logs: pytest.LogCaptureFixture
) -> None:
    """configure_tracing logs one ERROR per bad rule and evaluates the rest."""
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nname = "ok"\nexpr = "p95(x) > 1 ms"\n\n[[rules]]\nname = "bad"\nexpr = "p95(x) > 1 parsec"\n'
    )
    tracing = make_tracing()
    runtime = configure_tracing(tracer_provider=tracing.provider, alert_rules=str(path))
    assert runtime.alerts is not None
    assert [r.name for r in runtime.alerts.rules] == ["ok"]
    errors = [r.getMessage() for r in lib_logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "rule 'bad'" in errors[0]


def test_the_built_in_rules_are_the_documented_ones() -> None:
    assert [(r.name, r.expr) for r in default_rules()] == [
        ("openai_api_call_slow", "p95(openai_api_call) > 3000 ms for 5m"),
        ("tool_execution_errors", "errors(tool_execution) > 5 % for 5m"),
        ("chat_request_regression", "p95(chat_request) >= 1.5 x offset 1d over 1h"),
    ]


# ---------------------------------------------------------------- evaluation


def test_a_percentile_rule_fires_after_its_for_and_resolves(caplog: pytest.LogCaptureFixture) -> None:
    """Pending for 5 minutes, then one firing line; one resolving line once the window is fast."""
    caplog.set_level(logging.INFO, logger="ha_agent_tracing")
    clock = Clock()
    engine = AlertEngine([parse_expression("slow", "p95(openai_api_call) > 3000 ms for 5m")], clock=clock)
    engine.observe([metric("openai_api_call", 4000, T0 - 10) for _ in range(20)])
    engine.observe([metric("other", 9000, T0 - 10)])
    assert engine.evaluate() == []  # breached, but not yet for 5 minutes
    clock.now = T0 + 240
    engine.observe([metric("openai_api_call", 4200, T0 + 230) for _ in range(20)])
    assert engine.evaluate() == []
    clock.now = T0 + 300
    (fired,) = engine.evaluate()
    assert (fired.rule, fired.state, fired.since, fired.threshold) == ("slow", "firing", T0 + 300, 3000)
    assert fired.value == pytest.approx(4200, rel=0.03)
    assert engine.evaluate() == []  # still firing: no second line
    clock.now = T0 + 900
    engine.observe([metric("openai_api_call", 200, T0 + 890) for _ in range(50)])
    (resolved,) = engine.evaluate()
    assert (resolved.state, resolved.since) == ("resolved", T0 + 900)
    assert resolved.value == pytest.approx(200, rel=0.03)
    lines = alert_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("[Performance] ALERT firing slow: p95(openai_api_call) over 5m > 3000 ms")
    assert lines[1].startswith("[Performance] ALERT resolved slow:")
    assert [a.as_dict() for a in engine.alerts()] == [
        {
            "rule": "slow",
            "state": "resolved",
            "since": T0 + 900,
            "value": resolved.value,
            "threshold": 3000.0,
            "unit": "ms",
            "summary": resolved.summary,
        }
    ]


def test_a_breach_shorter_than_for_never_fires() -> None:
    clock = Clock()
    engine = AlertEngine([parse_expression("slow", "p95(x) > 100 ms for 5m")], clock=clock)
    engine.observe([metric("x", 500, T0)])
    assert engine.evaluate() == []
    clock.now = T0 + 400  # the slow measurement has left the 5m window
    assert engine.evaluate() == []
    assert engine.alerts() == []


def test_the_error_ratio_counts_only_the_named_metric() -> None:
    """6 failures of 100 tool calls is 6 % > 5 %; 4 of 100 is not."""
    clock = Clock()
    engine = AlertEngine([parse_expression("tools", "errors(tool_execution) > 5 %")], clock=clock)
    engine.observe([metric("tool_execution", 10, T0, error=i < 4) for i in range(100)])
    engine.observe([metric("openai_api_call", 10, T0, error=True) for _ in range(50)])
    assert engine.evaluate() == []
    engine.observe([metric("tool_execution", 10, T0, error=True) for _ in range(2)])
    clock.now = T0 + 1
    (fired,) = engine.evaluate()
    assert fired.value == pytest.approx(6 / 102)
    assert fired.threshold == 0.05
    assert fired.as_dict()["unit"] == "ratio", "a share, not milliseconds"


def test_a_regression_compares_with_the_same_window_a_day_earlier() -> None:
    """p95 this hour at 1.6x yesterday's fires; at 1.4x it does not."""
    rule = parse_expression("reg", "p95(chat_request) >= 1.5 x offset 1d over 1h")
    clock = Clock(T0 + 86400)
    engine = AlertEngine([rule], clock=clock)
    yesterday = [
        Observation("operation", "chat_request", "chat_request", 100, False, T0 - 60) for _ in range(30)
    ]
    today = [Observation("operation", "chat_request", "chat_request", 140, False, T0 + 86400 - 60)] * 30
    engine.observe(yesterday + today)
    assert engine.evaluate() == []
    engine.observe(
        [Observation("operation", "chat_request", "chat_request", 300, False, T0 + 86400 - 30)] * 30
    )
    clock.now += 1
    (fired,) = engine.evaluate()
    assert fired.threshold == pytest.approx(150, rel=0.03)
    assert fired.value == pytest.approx(300, rel=0.03)


def test_without_a_baseline_a_regression_never_fires() -> None:
    clock = Clock()
    engine = AlertEngine([parse_expression("reg", "p95(x) >= 1.5 x offset 1d over 1h")], clock=clock)
    engine.observe([metric("x", 5000, T0)])
    assert engine.evaluate() == []


def test_min_count_keeps_a_single_slow_call_from_firing() -> None:
    clock = Clock()
    (rule,) = default_rules()[:1]
    engine = AlertEngine([rule], clock=clock)
    engine.observe([metric("openai_api_call", 10_000, T0)] * 4)
    assert engine.evaluate() == []
    assert engine._states["openai_api_call_slow"].pending_since is None


def test_memory_is_bounded_by_the_longest_look_back() -> None:
    """Minute slots older than window + offset are dropped; only names the rules use are kept."""
    clock = Clock()
    engine = AlertEngine([parse_expression("slow", "p95(x) > 1 ms over 5m")], clock=clock)
    for minute in range(30):
        engine.observe([metric("x", 5, T0 + minute * 60), metric("unused", 5, T0 + minute * 60)])
        clock.now = T0 + minute * 60
        engine.evaluate()
    assert set(engine._series) == {("metric", "x")}
    assert len(engine._series[("metric", "x")].slots) <= 7


# ---------------------------------------------------------------- the regression baseline from history


def _report(i: int, at: float, ms: float) -> dict[str, object]:
    return {
        "operation": "chat_request",
        "total_duration": ms,
        "timestamp": at,
        "metrics": [{"name": "openai_api_call", "duration": ms / 2, "status": "ok", "metadata": {}}],
        "trace_id": f"{i + 1:032x}",
        "span_id": f"{i + 1:016x}",
        "status": "ok",
    }


def _history_of_yesterday(path: Path, start: float, ms: float, count: int = 30) -> None:
    """A real SQLite history holding ``count`` chat requests of ``ms`` from ``start`` on, one a second."""
    history = History(path)
    for i in range(count):
        history.record(_report(i, start + i, ms))
    assert history.close()


def _regression_rule() -> AlertRule:
    (rule,) = [r for r in default_rules() if r.kind == "regression"]
    return rule


def test_after_a_restart_the_regression_baseline_comes_from_history(tmp_path: Path) -> None:
    """A new engine (nothing in memory from yesterday) compares this hour with yesterday's reports."""
    path = tmp_path / "history.sqlite3"
    now = T0 + 86400
    _history_of_yesterday(path, T0 - 1800, 100.0)  # yesterday, half an hour before this time
    clock = Clock(now)
    engine = AlertEngine([_regression_rule()], clock=clock, history=HistoryReader(path))
    engine.observe([Observation("operation", "chat_request", "chat_request", 140, False, now - 600)] * 30)
    assert engine.evaluate() == []  # 1.4x yesterday: below 1.5x
    engine.observe([Observation("operation", "chat_request", "chat_request", 300, False, now - 60)] * 60)
    clock.now += 15
    (fired,) = engine.evaluate()
    assert fired.rule == "chat_request_regression"
    assert fired.threshold == pytest.approx(150, rel=0.03)  # 1.5 x yesterday's p95 of 100 ms
    assert fired.value == pytest.approx(300, rel=0.03)


def test_a_metric_baseline_is_read_from_the_reports_metrics(tmp_path: Path) -> None:
    """A regression on a tracked metric reads that metric's durations out of yesterday's reports."""
    path = tmp_path / "history.sqlite3"
    now = T0 + 86400
    _history_of_yesterday(path, T0 - 1800, 100.0)  # openai_api_call: 50 ms each
    rule = parse_expression("model_regression", "p95(openai_api_call) >= 2 x offset 1d over 1h", min_count=20)
    clock = Clock(now)
    engine = AlertEngine([rule], clock=clock, history=HistoryReader(path))
    engine.observe([metric("openai_api_call", 120, now - 300)] * 25)
    (fired,) = engine.evaluate()
    assert fired.threshold == pytest.approx(100, rel=0.03)  # 2 x 50 ms


def test_yesterday_outside_the_window_is_no_baseline(tmp_path: Path) -> None:
    """Reports two hours off the same time yesterday do not count: the rule stays quiet."""
    path = tmp_path / "history.sqlite3"
    now = T0 + 86400
    _history_of_yesterday(path, T0 - 7200, 10.0)
    engine = AlertEngine([_regression_rule()], clock=Clock(now), history=HistoryReader(path))
    engine.observe([Observation("operation", "chat_request", "chat_request", 500, False, now - 60)] * 30)
    assert engine.evaluate() == []


def test_an_unreadable_history_falls_back_to_memory_with_one_error(
    tmp_path: Path, lib_logs: pytest.LogCaptureFixture
) -> None:
    """A corrupt history file: one logged error, and the in-memory baseline is used."""
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"not a database" * 100)
    clock = Clock(T0 + 86400)
    engine = AlertEngine([_regression_rule()], clock=clock, history=HistoryReader(path))
    engine.observe([Observation("operation", "chat_request", "chat_request", 100, False, T0 - 60)] * 30)
    engine.observe(
        [Observation("operation", "chat_request", "chat_request", 300, False, T0 + 86400 - 60)] * 30
    )
    (fired,) = engine.evaluate()
    assert fired.threshold == pytest.approx(150, rel=0.03)
    clock.now += 15
    engine.evaluate()
    errors = [r.getMessage() for r in lib_logs.records if r.levelno >= logging.ERROR]
    assert len([e for e in errors if "report history" in e]) == 1, errors
    assert engine.baseline_read_errors == 2


def test_the_service_reads_the_regression_baseline_from_its_history(tmp_path: Path) -> None:
    """configure_tracing with history on: today's slower requests fire against yesterday's stored reports."""
    path = tmp_path / "history.sqlite3"
    now = time.time()
    _history_of_yesterday(path, now - 86400 - 1800, 5.0)  # yesterday's requests took 5 ms
    tracing = make_tracing()
    runtime = configure_tracing(
        tracer_provider=tracing.provider, history_path=str(path), alert_interval_s=3600
    )
    engine = runtime.alerts
    assert engine is not None
    tracker = get_tracker()
    for _ in range(25):
        with tracker.operation("chat_request"), tracker.track("openai_api_call"):
            time.sleep(0.02)  # today's take 20 ms and more
    engine.clock = Clock(time.time())
    fired = engine.evaluate()
    assert [a.rule for a in fired] == ["chat_request_regression"]
    assert fired[0].threshold == pytest.approx(7.5, rel=0.05)  # 1.5 x yesterday's 5 ms
    assert runtime.stats()["alerts"]["baseline_read_errors"] == 0


# ---------------------------------------------------------------- the service


def test_slow_chat_requests_raise_an_alert_listed_by_the_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real slow model calls fire the rule on a controlled clock; GET /alerts lists it; then it resolves."""
    caplog.set_level(logging.INFO, logger="ha_agent_tracing")
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nname = "model_slow"\nexpr = "p95(openai_api_call) > 40 ms for 1m"\nmin_count = 3\n'
    )
    tracing = {"alert_rules": str(path), "alert_interval_s": 3600}
    with running_agent(model_latency_ms=60, tracing=tracing) as agent:
        engine = agent.runtime.alerts
        assert engine is not None
        for _ in range(3):
            assert agent.chat("Which lights are on?").status_code == 200
        agent.reports(3)
        clock = Clock(time.time())
        engine.clock = clock
        assert engine.evaluate() == []
        assert agent.api("/alerts").json() == {"alerts": []}
        clock.now += 61
        (fired,) = engine.evaluate()
        body = agent.api("/alerts").json()
        assert body == {
            "alerts": [
                {
                    "rule": "model_slow",
                    "state": "firing",
                    "since": clock.now,
                    "value": fired.value,
                    "threshold": 40.0,
                    "unit": "ms",
                    "summary": fired.summary,
                }
            ]
        }
        assert fired.value > 40
        clock.now += 600  # no requests in the last 5 minutes: the condition no longer holds
        (resolved,) = engine.evaluate()
        assert resolved.state == "resolved"
        assert agent.api("/alerts").json()["alerts"][0]["state"] == "resolved"
    assert [line.split(":")[0] for line in alert_lines(caplog)] == [
        "[Performance] ALERT firing model_slow",
        "[Performance] ALERT resolved model_slow",
    ]


# ---------------------------------------------------------------- webhook


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=2)
    yield found
    found.close()


def test_the_webhook_retries_with_backoff_and_delivers_alertmanager_json(receiver: Receiver) -> None:
    """Two failed posts, then the third delivers one notification in Alertmanager's format."""
    notifier = WebhookNotifier(receiver.url, backoff_s=0.02, retries=3, labels={"service": "svc"})
    clock = Clock()
    engine = AlertEngine([parse_expression("slow", "p95(x) > 1 ms")], clock=clock, notify=notifier)
    engine.observe([metric("x", 50, T0)])
    engine.evaluate()
    notifier.close(timeout_s=5)
    assert receiver.attempts == 3
    (payload,) = receiver.received
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["groupLabels"] == {"alertname": "slow"}
    (alert,) = payload["alerts"]
    assert alert["labels"] == {"alertname": "slow", "severity": "warning", "service": "svc"}
    assert alert["startsAt"] == "2027-01-15T08:00:00Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert set(alert["annotations"]) == {"summary", "expr", "value", "threshold"}
    assert notifier.stats() == {"delivered": 1, "failed": 0, "dropped": 0}


def test_an_unreachable_webhook_never_slows_the_caller() -> None:
    """Sends return at once; past the bounded queue they are dropped and counted."""
    with socketless_port() as port:
        notifier = WebhookNotifier(f"http://127.0.0.1:{port}/", max_queue=3, retries=2, backoff_s=5)
        started = time.perf_counter()
        results = [notifier.send({"n": i}) for i in range(10)]
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert results.count(False) >= 6
    assert notifier.stats()["dropped"] == results.count(False)
    notifier.close(timeout_s=0.2)


class socketless_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass
