"""RepeatedLines: one line of a kind per window, the rest counted and said later."""

from __future__ import annotations

import logging
import time

import pytest

from ha_agent_tracing.telemetry._log_limits import RepeatedLines


def test_repeats_are_counted_and_reported_after_the_window(caplog: pytest.LogCaptureFixture) -> None:
    """Within the window only the first line of a kind is logged; the next one says how many were left out."""
    log = logging.getLogger("test.log_limits")
    limits = RepeatedLines(window_s=0.2).install(["test.log_limits"])
    try:
        with caplog.at_level(logging.WARNING, logger="test.log_limits"):
            for n in range(50):
                log.warning("bad entry `%s`", n)
            log.warning("another kind of problem")
            time.sleep(0.25)
            log.warning("bad entry `%s`", "late")
    finally:
        limits.remove()
    assert [r.getMessage() for r in caplog.records] == [
        "bad entry `0`",
        "another kind of problem",
        "bad entry `late` (49 more like this in the last 0.2 s were not logged)",
    ]
    assert limits.suppressed == 49
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test.log_limits"):
        log.warning("bad entry `%s`", 1)
        log.warning("bad entry `%s`", 2)
    assert len(caplog.records) == 2, "removed: nothing is filtered any more"


def test_the_kinds_remembered_are_bounded() -> None:
    """Messages that differ every time (formatted before logging) cannot grow the filter without bound."""
    limits = RepeatedLines(max_kinds=8)
    for n in range(100):
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, f"message {n}", None, None)
        assert limits.filter(record)
    assert len(limits._kinds) == 8
