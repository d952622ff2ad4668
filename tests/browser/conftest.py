"""Chromium through Playwright's sync API, for tests that click like a person.

The browser is Debian's Chromium at /usr/bin/chromium; Playwright never
downloads one. Without it the tests skip with the reason, except under
CI=true, where they fail. Screenshots go to artifacts/screenshots/, which
git ignores.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.db import connections

from ..harness import BASE_DIR

CHROMIUM_PATH = Path("/usr/bin/chromium")
SCREENSHOT_DIR = BASE_DIR / "artifacts" / "screenshots"

# The flags the machine needs: no sandbox as root, no GPU, and no
# background connections that the closed network would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def chromium(monkeypatch):
    """A headless Chromium, closed after the test."""
    if not CHROMIUM_PATH.exists():
        reason = (
            f"needs Debian's Chromium at {CHROMIUM_PATH} (apt-get install chromium)"
        )
        if IN_CI:
            pytest.fail(f"CI=true but this test {reason}", pytrace=False)
        pytest.skip(reason)

    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread. Django raises
    # SynchronousOnlyOperation for ORM calls from such a thread unless this
    # variable is set; the test's ORM calls are synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
            # Database connections opened while Playwright's loop runs are
            # not the ones pytest-django closes, and an open one would keep
            # the test database from being dropped.
            connections.close_all()


@pytest.fixture
def screenshot(request):
    """Save a full-page screenshot as <test name>-<step number>-<step>.png."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)
    counter = {"step": 0}

    def take(page, step: str) -> Path:
        counter["step"] += 1
        path = SCREENSHOT_DIR / f"{test_name}-{counter['step']:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
