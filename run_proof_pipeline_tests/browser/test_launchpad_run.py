"""A proof launched from the Launchpad, as a person would, and its Output Report."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from run_proof_pipeline_tests.browser.conftest import UIStore
from run_proof_pipeline_tests.support.chromium import Screenshots
from run_proof_pipeline_tests.support.dagster_ui import DagsterUI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_URL = re.compile(r"/runs/([0-9a-f-]{36})")


def launchpad_config(tenant_id: str, run_id: str) -> str:
    # Step 5 (the coordinator's own pytest suite, ~30 s) is off: this test is about the UI,
    # and the job's tests cover Step 5. The report then says "skipped by configuration".
    return (
        "ops:\n"
        "  step_1_latest_trace:\n"
        "    config:\n"
        f"      tenant_id: {tenant_id}\n"
        f"      run_id: {run_id}\n"
        "  step_5_coordinator_tests:\n"
        "    config:\n"
        "      enabled: false\n"
    )


def test_launchpad_run_proves_the_configured_run_and_shows_the_output_report(
    page: Page, dagster_ui: DagsterUI, ui_store: UIStore, screenshots: Screenshots
) -> None:
    target = ui_store.verified
    page.goto(dagster_ui.url(dagster_ui.job_path + "/playground"))
    editor = page.locator(".CodeMirror").first
    expect(editor).to_contain_text("step_1_latest_trace")  # the Launchpad's scaffolded defaults
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # insert_text, not type(): typing would trigger the editor's auto-indent on every newline.
    page.keyboard.insert_text(launchpad_config(target.tenant_id, target.run_id))
    expect(editor).to_contain_text(f"run_id: {target.run_id}")
    expect(page.get_by_text("No errors")).to_be_visible()
    launch = page.get_by_role("button", name="Launch Run")
    expect(launch).to_be_enabled()  # once the Launchpad has validated the new config
    screenshots.capture(page, "launchpad.png")

    launch.click()
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None, page.url
    dagster_run_id = match.group(1)
    assert dagster_ui.wait_for_run(dagster_run_id) == "SUCCESS"

    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    report_row = page.locator("tr", has=page.get_by_text("report", exact=True))
    report_row.get_by_text("[Show Markdown]").click()
    report = page.get_by_role("dialog")
    expect(report).to_contain_text("Run Proof Output Report")
    for field, value in {
        "Run ID": target.run_id,
        "Tenant ID": target.tenant_id,
        "Coordinator integrity_model": "HASH_CHAIN",
        "Coordinator verification_status": "VERIFIED",
        "Coordinator chain_length": str(target.chain_length),
        "Pytest result": "skipped by configuration",
    }.items():
        row = report.locator("tr", has=page.get_by_text(field, exact=True))
        expect(row).to_contain_text(value)
    expect(report.locator("tr", has=page.get_by_text("DB URL", exact=True))).to_contain_text(
        ":***@"
    )
    screenshots.capture(page, "run-success.png")
