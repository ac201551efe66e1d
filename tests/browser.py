"""Real Chromium through Playwright, for the tests of the pages.

Debian's ``chromium`` (``/usr/bin/chromium``, installed by ``scripts/test``)
is driven by the Python ``playwright`` package; Playwright's own browser
download cannot work on these machines. A missing browser is an error, never
a skip::

    from .browser import chromium, open_page

    with chromium() as browser:
        page, console = open_page(browser, base_url)
        page.get_by_label("Message").fill("Which lights are on?")
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Console", "chromium", "open_page", "wait_until"]

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
"""The browser binary: Debian's chromium unless CHROMIUM_BIN says otherwise."""

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)


@dataclass
class Console:
    """What a page wrote to its console, and the errors it raised."""

    messages: list[ConsoleMessage] = field(default_factory=list[ConsoleMessage])
    page_errors: list[str] = field(default_factory=list[str])

    def lines(self, prefix: str = "") -> list[str]:
        """The text of every console message starting with ``prefix``."""
        return [m.text for m in self.messages if m.text.startswith(prefix)]

    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions."""
        return [m.text for m in self.messages if m.type == "error"] + self.page_errors


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block."""
    if not CHROMIUM.is_file():
        raise AssertionError(
            f"{CHROMIUM} is missing: run ./scripts/test, which installs Debian's chromium "
            "(apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Browser, url: str, *, viewport: tuple[int, int] = (900, 700)) -> tuple[Page, Console]:
    """A new page in a fresh context at ``url``, its console recorded from the first line."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    console = Console()

    def on_console(message: ConsoleMessage) -> None:
        console.messages.append(message)

    def on_error(error: Error) -> None:
        console.page_errors.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_error)
    page.goto(url)
    return page, console


def wait_until(page: Page, expression: str, timeout_s: float = 15.0) -> Any:
    """Polls a JavaScript expression until it is truthy; returns its value.

    ``page.wait_for_function`` evaluates its predicate with ``eval``, which the
    pages' Content-Security-Policy forbids; ``page.evaluate`` is not affected.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {expression}")
        time.sleep(0.05)
