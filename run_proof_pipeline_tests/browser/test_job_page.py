"""The job page: the plan's op graph, one op per step, in the seed's order."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from run_proof_pipeline_tests.support.chromium import Screenshots
from run_proof_pipeline_tests.support.dagster_ui import DagsterUI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLAN_OPS = [
    "preconditions",
    "step_1_latest_trace",
    "step_2_step_count",
    "step_3_coordinator_proof",
    "step_4_integrity_expectations",
    "step_5_coordinator_tests",
    "output_report",
]


def test_job_page_shows_the_plan_ops_in_the_seeds_order(
    page: Page, dagster_ui: DagsterUI, screenshots: Screenshots
) -> None:
    page.set_viewport_size({"width": 1440, "height": 1300})
    page.goto(dagster_ui.url(dagster_ui.job_path))
    expect(page.get_by_text("Run Proof Test Plan v1", exact=False).first).to_be_visible()

    # Graph nodes truncate long names on screen; the full name is the node label's tooltip.
    tops: list[float] = []
    for name in PLAN_OPS:
        node = page.locator(f'[data-tooltip="{name}"]')
        expect(node).to_be_visible()
        box = node.bounding_box()
        assert box is not None, name
        tops.append(box["y"])
    positions = dict(zip(PLAN_OPS, tops, strict=True))
    assert tops == sorted(tops) and len(set(tops)) == len(tops), positions
    screenshots.capture(page, "job-graph.png")
