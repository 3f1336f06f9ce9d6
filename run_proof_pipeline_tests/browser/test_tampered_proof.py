"""A run proven, then altered with SQL, then proven again: the failed run's page names the
first bad step and shows the ops after it skipped; the check history shows both results."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from playwright.sync_api import FloatRect, Page, expect

from run_proof_pipeline_tests.browser.conftest import TraceTarget, UIStore
from run_proof_pipeline_tests.support.chromium import Screenshots
from run_proof_pipeline_tests.support.dagster_ui import DagsterUI
from run_proof_pipeline_tests.support.stores import owner_sql

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TAMPERED_STEP = 3
CHECK = "hash_chain_integrity"


@dataclass(frozen=True)
class ProofPair:
    target: TraceTarget
    passed_run: str  # Dagster run id of the proof before the alteration
    failed_run: str  # ... and after it


def plan_config(target: TraceTarget) -> dict[str, object]:
    # Step 5 off, as in the Launchpad test: the UI is under test here, not the pytest step.
    return {
        "ops": {
            "step_1_latest_trace": {
                "config": {"tenant_id": target.tenant_id, "run_id": target.run_id}
            },
            "step_5_coordinator_tests": {"config": {"enabled": False}},
        }
    }


@pytest.fixture(scope="module")
def proof_pair(dagster_ui: DagsterUI, ui_store: UIStore) -> ProofPair:
    """Launched through GraphQL (the Launchpad itself is exercised by its own test); the
    daemon runs both, in order."""
    target = ui_store.to_tamper
    passed = dagster_ui.launch_run(plan_config(target))
    assert dagster_ui.wait_for_run(passed) == "SUCCESS"
    touched = owner_sql(
        ui_store.url,
        'UPDATE aos_trace_steps SET params = \'{"url": "https://evil.invalid"}\''
        " WHERE run_id = %s AND step_index = %s",
        (target.run_id, TAMPERED_STEP),
        table="aos_trace_steps",
    )
    assert touched == 1
    failed = dagster_ui.launch_run(plan_config(target))
    assert dagster_ui.wait_for_run(failed) == "FAILURE"
    return ProofPair(target, passed, failed)


def test_tampered_run_fails_step_4_naming_the_first_bad_step_and_skips_the_rest(
    page: Page, dagster_ui: DagsterUI, proof_pair: ProofPair, screenshots: Screenshots
) -> None:
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(dagster_ui.url(f"/runs/{proof_pair.failed_run}"))
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text("Errored (1)")).to_be_visible()
    expect(page.get_by_text("Not executed (2)")).to_be_visible()

    # Event log rows are plain divs; the CSS-module class name is the only handle on a row.
    failure = page.locator('[class*="LogsRowComponents_row"]').filter(
        has=page.get_by_text("STEP_FAILURE", exact=True)
    )
    failure.scroll_into_view_if_needed()
    expect(failure).to_contain_text("step_4_integrity_expectations")
    expect(failure).to_contain_text("verification_status = FAILED (expected VERIFIED)")
    expect(failure).to_contain_text(f"step {TAMPERED_STEP}: step_hash mismatch")
    first_bad = failure.locator("tr", has=page.get_by_text("first_bad", exact=True))
    expect(first_bad).to_contain_text(f"step {TAMPERED_STEP}")
    for skipped, reason in (
        ("step_5_coordinator_tests", "failed: ['step_4_integrity_expectations']"),
        ("output_report", "were not executed: ['step_5_coordinator_tests']"),
    ):
        expect(page.get_by_text(f"Dependencies for step {skipped} {reason}")).to_be_visible()
    screenshots.capture(page, "run-failed.png")


def test_check_history_shows_the_passed_then_the_failed_proof(
    page: Page, dagster_ui: DagsterUI, proof_pair: ProofPair, screenshots: Screenshots
) -> None:
    page.goto(dagster_ui.url(f"/assets/aos_traces?view=checks&checkDetail={CHECK}"))
    page.get_by_role("tab", name="Execution history").click()
    rows: dict[str, FloatRect | None] = {}
    for outcome, run_id in (("Failed", proof_pair.failed_run), ("Passed", proof_pair.passed_run)):
        # Each evaluation's timestamp links to the run that recorded it.
        row = page.locator("tr", has=page.locator(f'a[href^="/runs/{run_id}"]'))
        expect(row).to_be_visible()
        expect(row).to_contain_text(outcome)
        rows[outcome] = row.bounding_box()
    assert rows["Failed"] is not None and rows["Passed"] is not None
    assert rows["Failed"]["y"] < rows["Passed"]["y"], "newest first: the failed proof on top"
    screenshots.capture(page, "check-history.png")


def test_runs_page_filters_the_proofs_by_their_run_id_tag(
    page: Page, dagster_ui: DagsterUI, proof_pair: ProofPair, screenshots: Screenshots
) -> None:
    target = proof_pair.target
    page.set_viewport_size({"width": 1440, "height": 520})
    query = urlencode({"q[]": f"tag:run_proof/run_id={target.run_id}"})
    page.goto(dagster_ui.url(f"/runs?{query}"))
    # Only the two proofs of this run: the Launchpad's proof of another run is filtered out.
    expect(page.get_by_role("link", name=re.compile(r"^run [0-9a-f]{8}$"))).to_have_count(2)
    for run_id in (proof_pair.passed_run, proof_pair.failed_run):
        expect(page.locator(f'a[href="/runs/{run_id}"]').first).to_be_visible()
    for tag in (f"run_proof/tenant_id: {target.tenant_id}", f"run_proof/run_id: {target.run_id}"):
        expect(page.get_by_text(tag, exact=True)).to_have_count(2)
    for status in ("Success", "Failure"):
        expect(page.get_by_text(status, exact=True)).to_have_count(1)
    screenshots.capture(page, "runs-filtered.png")
