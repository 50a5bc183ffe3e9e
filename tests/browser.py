"""The dashboard's browser for tests: Debian's Chromium, headless, driven by Playwright (no
browser download). Screenshots go to FABRICAD_TEST_ARTIFACTS (default: test-artifacts/)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FABRICAD_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (the dev extra)"
    return None if Path(CHROMIUM).exists() else "needs Debian's chromium (apt-get install chromium)"


@contextmanager
def browser_page():
    """A 1920×1080 page; fails the test if the page threw a JavaScript error."""
    from playwright import sync_api

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"
