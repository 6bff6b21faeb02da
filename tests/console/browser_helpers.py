"""Headless Chromium driving the console, for the browser tests.

The pages are addressed by their ``data-testid`` attributes (listed at the top of the console's app.js), and
every wait is a ``WebDriverWait`` on a condition: a page that fetches its data renders when the answer comes,
so nothing here assumes how long that takes. Screenshots go to ``test-artifacts/console/<page>.png`` at the
repository's root, a folder git ignores.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
# Generous: a page waits on the cluster through the console, on a machine shared with other work.
WAIT_S = 20.0
WINDOW_SIZE = (1400, 1000)
POLL_S = 0.1
# How much of the page's text a failed wait quotes.
DESCRIBE_CHARS = 2000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

T = TypeVar("T")


def browser_available() -> bool:
    """Whether Chromium and its driver are installed, so the browser tests can run at all."""
    return all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


def start_chrome() -> webdriver.Chrome:
    """A headless Chromium; ``--no-sandbox`` because the tests may run as root."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def testid(name: str) -> tuple[str, str]:
    """A locator for the element with ``data-testid=name``."""
    return (By.CSS_SELECTOR, f'[data-testid="{name}"]')


class Console:
    """One browser tab on a console at ``base_url``: navigation by hash route, and waits on what is shown."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")

    def open(self, route: str) -> None:
        """Load the page for a hash route (``"#/topics"``) afresh and wait until its first data is shown.

        A full load rather than a hash change, so the page fetches everything again and no marker of the
        previous page can be mistaken for this one's.
        """
        self.driver.get("about:blank")
        self.driver.get(f"{self.base_url}/{route}")
        self.wait_for(lambda driver: driver.find_element(*testid("page-ready")), f"{route} never got ready")

    def wait_for(self, condition: Callable[[WebDriver], T | None], message: str) -> T:
        """Wait for ``condition(driver)`` to be truthy, ignoring elements replaced while re-rendering.

        On timeout the error tells what the page showed instead: its main view, its toasts, and the
        browser's console errors (a failed fetch or a script error is usually the story).
        """
        wait = WebDriverWait(
            self.driver, WAIT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        )
        try:
            return cast(T, wait.until(condition))
        except TimeoutException:
            raise AssertionError(f"{message} within {WAIT_S:g} s\n{self.describe()}") from None

    def describe(self) -> str:
        """What the tab shows: its URL, main view and toasts, and the browser's console errors."""
        shown = [f"at {self.driver.current_url}"]
        for name in ("view", "toast"):
            for found in self.driver.find_elements(*testid(name)):
                shown.append(f"{name}: {found.text[:DESCRIBE_CHARS]}")
        shown += [f"console: {entry['message']}" for entry in self.driver.get_log("browser")]
        return "\n".join(shown)

    def element(self, name: str) -> WebElement:
        """The visible element with ``data-testid=name``, once there is one."""

        def shown(driver: WebDriver) -> WebElement | None:
            found = driver.find_element(*testid(name))
            return found if found.is_displayed() else None

        return self.wait_for(shown, f"no visible [data-testid={name!r}]")

    def click(self, name: str) -> None:
        """Click the element with ``data-testid=name`` once it is visible and enabled."""

        def clickable(driver: WebDriver) -> WebElement | None:
            found = driver.find_element(*testid(name))
            return found if found.is_displayed() and found.is_enabled() else None

        self.wait_for(clickable, f"no clickable [data-testid={name!r}]").click()

    def fill(self, name: str, text: str) -> None:
        """Replace the text of the input with ``data-testid=name``."""
        field = self.element(name)
        field.clear()
        field.send_keys(text)

    def choose(self, name: str, value: str) -> None:
        """Select the option with ``value`` in the <select> with ``data-testid=name``."""
        select = self.element(name)
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            select,
            value,
        )

    def text_of(self, name: str) -> str:
        return self.element(name).text

    def wait_for_text(self, name: str, predicate: Callable[[str], bool], message: str) -> str:
        """Wait until the text of ``data-testid=name`` satisfies ``predicate``; returns that text."""

        def matching(driver: WebDriver) -> str | None:
            text = driver.find_element(*testid(name)).text
            return text if predicate(text) else None

        return self.wait_for(matching, message)

    def rows(self, row: str, **data: str | int) -> list[WebElement]:
        """The elements with ``data-testid=row`` whose ``data-*`` attributes equal ``data``."""
        selector = f'[data-testid="{row}"]' + "".join(
            f'[data-{key.replace("_", "-")}="{value}"]' for key, value in data.items()
        )
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def wait_for_rows(self, row: str, count: int, **data: str | int) -> list[WebElement]:
        """Wait until exactly ``count`` rows (see ``rows``) are shown; returns them."""

        def counted(_driver: WebDriver) -> list[WebElement] | None:
            found = self.rows(row, **data)
            return found if len(found) == count else None

        return self.wait_for(counted, f"not {count} [data-testid={row!r}] rows matching {data}")

    def on_rows(self, row: str, count: int, action: Callable[[list[WebElement]], T], **data: str | int) -> T:
        """Apply ``action`` to the ``count`` rows matching ``data``, found afresh and retried while the page
        re-renders them (pages refresh their tables, which makes held elements stale)."""

        def applied(_driver: WebDriver) -> tuple[T] | None:
            found = self.rows(row, **data)
            return (action(found),) if len(found) == count else None

        return self.wait_for(applied, f"not {count} [data-testid={row!r}] rows matching {data}")[0]

    def on_row(self, row: str, action: Callable[[WebElement], T], **data: str | int) -> T:
        """``on_rows`` for the one row matching ``data``."""
        return self.on_rows(row, 1, lambda found: action(found[0]), **data)

    def screenshot(self, page: str) -> Path:
        """Save the tab as ``test-artifacts/console/<page>.png``; returns the file."""
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{page}.png"
        path.write_bytes(self.driver.get_screenshot_as_png())
        if path.read_bytes()[: len(PNG_SIGNATURE)] != PNG_SIGNATURE:
            raise AssertionError(f"the screenshot {path} is not a PNG image")
        return path

    @staticmethod
    def cell(row: WebElement, name: str) -> str:
        """The text of the element with ``data-testid=name`` inside ``row``."""
        return row.find_element(*testid(name)).text

    @staticmethod
    def click_in(row: WebElement, name: str) -> None:
        """Click the element with ``data-testid=name`` inside ``row``."""
        row.find_element(*testid(name)).click()

    @staticmethod
    def wait_until(condition: Callable[[], T | None], timeout_s: float, message: str) -> T:
        """Wait for a condition outside the browser (the cluster, the console's HTTP server) to hold."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} within {timeout_s:g} s")
            time.sleep(POLL_S)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def console_answers(base_url: str) -> bool:
    """Whether the console's HTTP server answers its overview yet."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/overview", timeout=WAIT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
