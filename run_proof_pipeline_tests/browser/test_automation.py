"""The Automation page lists the nightly schedule and both sensors with their default status."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from run_proof_pipeline_tests.support.chromium import Screenshots
from run_proof_pipeline_tests.support.dagster_ui import LOCATION, DagsterUI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# name -> (kind shown under it, running by default?), as the README documents them.
AUTOMATIONS = {
    "schedules/nightly_run_proof": ("Scheduled At", True),
    "sensors/new_sealed_traces": ("Standard sensor", False),
    "sensors/run_proof_failure_alert": ("Run status sensor", True),
}


def test_schedule_and_sensors_are_listed_with_their_default_status(
    page: Page, dagster_ui: DagsterUI, screenshots: Screenshots
) -> None:
    page.set_viewport_size({"width": 1440, "height": 420})
    page.goto(dagster_ui.url("/automation"))
    for path, (kind, running) in AUTOMATIONS.items():
        link = page.locator(f'a[href="/locations/{LOCATION}/{path}"]')
        expect(link).to_be_visible()
        expect(link).to_contain_text(path.split("/")[1])
        expect(link).to_contain_text(kind)
        # Each row: its selection checkbox, the link, then the on/off toggle.
        toggle = link.locator("xpath=following::input[@type='checkbox'][1]")
        if running:
            expect(toggle).to_be_checked()
        else:
            expect(toggle).not_to_be_checked()
    screenshots.capture(page, "automation.png")
