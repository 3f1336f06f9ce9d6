"""Debian's Chromium for Playwright, and the screenshots the docs are made of.

Playwright's own browser download cannot work here, so the tests drive the system binary.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, ViewportSize

CHROMIUM_ENV = "RUN_PROOF_CHROMIUM"
SCREENSHOTS_ENV = "RUN_PROOF_SCREENSHOTS"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


def find_chromium() -> str | None:
    """$RUN_PROOF_CHROMIUM, else Debian's `chromium` (or Ubuntu's `chromium-browser`)."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Screenshots:
    """Captures pages for the docs, but writes files only when $RUN_PROOF_SCREENSHOTS names a
    directory, so a normal test run never rewrites docs/screenshots/."""

    directory: Path | None
    secret: str

    @classmethod
    def from_env(cls, secret: str) -> Screenshots:
        raw = os.environ.get(SCREENSHOTS_ENV)
        return cls(Path(raw).absolute() if raw else None, secret)

    def capture(self, page: Page, name: str) -> None:
        # Checked on every run, saved or not: a screenshot of a page that holds the
        # database password must never exist.
        assert self.secret not in page.content(), f"{name}: the page shows a password"
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.directory / name), animations="disabled", caret="hide")
