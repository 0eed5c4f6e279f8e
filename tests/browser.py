"""Headless Chromium for tests, driven by Selenium WebDriver through Debian's ``chromedriver``.

Selenium (https://www.selenium.dev/documentation/webdriver/browsers/chrome/) talks to the ``chromedriver`` of
Debian's ``chromium-driver`` package, which matches the installed ``chromium`` (both from one source package, so
their versions never drift apart). The driver and the browser are named explicitly, so Selenium Manager never
looks for (or downloads) a driver of its own. ``find_chromium`` returns None when either is missing or Selenium is
not installed; the tests skip then, except under ``CI=true`` where they fail.

``requests`` lists every URL the page asked the network stack for, read from Chromium's performance log
(DevTools ``Network.requestWillBeSent`` events, which ChromeDriver forwards when ``goog:loggingPrefs`` asks).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from dataclasses import dataclass

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = ("apt-get install -y chromium-driver (it brings chromium), and pip install selenium (the test extra); or "
           "set PROJBENCH_CHROMIUM and PROJBENCH_CHROMEDRIVER to a browser and its matching driver")


@dataclass(frozen=True)
class Executables:
    browser: str
    driver: str


def find_chromium() -> Executables | None:
    """The browser and its driver, if both are installed and Selenium is importable; else None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    browser = os.environ.get("PROJBENCH_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("PROJBENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    return Executables(browser, driver) if browser and driver else None


class BrowserError(RuntimeError):
    pass


def launched(width: int = 1600, height: int = 1000) -> Chromium:
    """A started browser for a test; without one the test skips, except under CI=true where it fails."""
    import pytest

    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Chromium, its driver and Selenium are required under CI=true: {INSTALL}.")
        pytest.skip(f"no Chromium with its driver and Selenium: {INSTALL}")
    return Chromium(exe, width, height)


class Chromium:
    """One headless browser with one page whose viewport is exactly ``width`` x ``height`` CSS pixels."""

    def __init__(self, exe: Executables, width: int = 1600, height: int = 1000, timeout: float = 60.0):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.TemporaryDirectory(prefix="projbench-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = exe.browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                    "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                    f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(executable_path=exe.driver))
        except Exception as exc:  # the driver's own message says what is wrong (e.g. versions that differ)
            self.profile.cleanup()
            raise BrowserError(f"Chromium did not start through {exe.driver}: {exc}") from exc
        self.driver.set_script_timeout(timeout)
        self.driver.set_page_load_timeout(timeout)
        # The window's outer size includes no browser chrome in headless mode, but the override makes the
        # viewport exact whatever the platform does with --window-size.
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self._requests: list[str] | None = None   # None until the first open(): the start-up page is not ours

    # -- page helpers -----------------------------------------------------------------------------------------
    def cdp(self, method: str, params: dict | None = None) -> dict:
        """A DevTools command on the page (what WebDriver itself does not offer: exact viewport, full-page shots)."""
        return self.driver.execute_cdp_cmd(method, params or {})

    def open(self, url: str) -> None:
        if self._requests is None:
            self.driver.get_log("performance")   # drained: what the browser's own start-up page fetched
            self._requests = []
        self.driver.get(url)   # returns once the load event fired

    def reload(self) -> None:
        self.driver.refresh()

    def js(self, expression: str):
        """Evaluate an expression in the page and return its JSON value; a thrown exception fails loudly."""
        from selenium.common.exceptions import JavascriptException

        try:
            return self.driver.execute_script(f"return ({expression});")
        except JavascriptException as exc:
            raise BrowserError(f"JS error: {exc.msg}") from None

    def screenshot(self, full_page: bool = True) -> bytes:
        """PNG of the viewport, or of the whole page (``captureBeyondViewport``) with ``full_page``."""
        if not full_page:
            return self.driver.get_screenshot_as_png()
        size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
        res = self.cdp("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        return base64.b64decode(res["data"])

    @property
    def requests(self) -> list[str]:
        """Every URL requested since the first :meth:`open` (the log is drained into this list on each read)."""
        if self._requests is None:
            return []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self._requests.append(msg["params"]["request"]["url"])
        return self._requests

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
