"""Errors inside the telemetry: counted, and said without flooding the log."""

from __future__ import annotations

import logging

import pytest

from ha_agent_tracing._internal import InternalErrors, RateLimitedWarning


def test_rate_limited_warning_says_it_once_then_summarises(caplog: pytest.LogCaptureFixture) -> None:
    """First at once; repeats within the interval are counted into the next warning."""
    now = [0.0]
    warning = RateLimitedWarning(interval_s=60, clock=lambda: now[0])
    for _ in range(500):
        warning.warn("dropped %s", "x")
    now[0] = 61.0
    warning.warn("dropped %s", "y")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert messages == ["dropped x", "dropped y (and 499 more like it since the last warning)"]


def test_internal_errors_log_the_first_with_traceback_and_count_all(caplog: pytest.LogCaptureFixture) -> None:
    """One ERROR with exc_info, then debug only; the count is exact."""
    caplog.set_level(logging.DEBUG, logger="ha_agent_tracing")
    errors = InternalErrors("exporter")
    for n in range(3):
        errors.record(RuntimeError(f"boom {n}"))
    assert errors.count == 3
    loud = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(loud) == 1 and loud[0].exc_info is not None
    assert "exporter" in loud[0].getMessage()
