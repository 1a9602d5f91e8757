"""The MLflow dashboard over a store filled per the tracking schema, checked in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.cli.dashboard import install_cells_view, start_dashboard
from benchmark.tracking.ui import runs_url
from tests.browser import CHROMIUM, SKIP_REASON, launch_chromium
from tests.tracking_fixtures import FakeCell, log_sweep, new_sqlite_store

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]

TIMEOUT_MS = 120_000  # the UI bundle is large and the test machine is shared


@pytest.fixture
def tiny_sweep(tmp_path: Path) -> tuple[str, str, list[FakeCell], list[str]]:
    """2 models x 2 seeds under one sweep run, each cell with trial runs and artifacts."""
    rng = np.random.default_rng(0)
    cells = [
        FakeCell(
            m,
            fam,
            seed,
            {"ndcg_at_10": rng.random(20), "recall_at_10": rng.random(20)},
            hyperparameters={"top_k": 50} if m == "itemknn" else {},
        )
        for m, fam in (("toppop", "non-personalised"), ("itemknn", "neighbourhood"))
        for seed in (0, 1)
    ]
    uri = new_sqlite_store(tmp_path / "store")
    exp_id, _, ids = log_sweep(uri, cells, artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    return uri, exp_id, cells, ids


def test_dashboard_lists_nested_cells_and_shows_a_cell_metrics_and_params(tiny_sweep, tmp_path):
    from playwright.sync_api import sync_playwright

    uri, exp_id, cells, ids = tiny_sweep
    dash = start_dashboard(uri, log_path=tmp_path / "server.log")
    try:
        assert dash.url.startswith("http://127.0.0.1:")
        dash.wait_ready(timeout=180)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            # Runs view: the sweep is the parent row; expanding it lists every cell by its readable name.
            page.goto(runs_url(dash.url, exp_id))
            sweep_row = page.get_by_role("row").filter(has_text="sweep · synthetic")
            sweep_row.first.wait_for()
            assert "/runs" in page.url and "traces" not in page.url.lower()
            sweep_row.locator("[col-id='attributes.`Run Name`'] button").first.click()
            for c in cells:
                page.get_by_text(c.run_name, exact=True).first.wait_for()
            page.screenshot(path=str(tmp_path / "runs.png"))
            # The shared cells view: one row per cell, test metrics and fingerprints as columns.
            view = install_cells_view(uri, exp_id)
            page.goto(runs_url(dash.url, exp_id, view=view))
            page.reload()
            for c in cells:
                page.get_by_text(c.run_name, exact=True).first.wait_for()
            for column in ("test/ndcg_at_10", "test/recall_at_10", "reprorec.fingerprint.split"):
                page.get_by_role("columnheader").filter(has_text=column).first.wait_for()
            page.screenshot(path=str(tmp_path / "cells.png"))
            mean = float(cells[0].per_user["ndcg_at_10"].mean())
            page.get_by_text(repr(mean)[:6]).first.wait_for()  # the logged value (the cell truncates it)
            page.get_by_text("4 matching runs").first.wait_for()  # cells only: no sweep, no trials
            # A cell's page: its test metrics (value as logged) and parameters.
            page.goto(runs_url(dash.url, exp_id, ids[0]))
            page.get_by_text("test/ndcg_at_10", exact=True).first.wait_for()
            body = page.inner_text("body")
            assert cells[0].run_name in body
            assert f"{cells[0].per_user['ndcg_at_10'].mean():.6f}"[:6] in body
            for text in (
                "test/recall_at_10",
                "tuning.metric",
                "evaluation.protocol",
                "reprorec.fingerprint.split",
            ):
                assert text in body, text
            page.get_by_text("test/ndcg_at_10", exact=True).first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "cell.png"))
            browser.close()
    finally:
        dash.stop()
    assert dash.process.poll() is not None  # stopped by PID (process group)
    assert (tmp_path / "runs.png").stat().st_size > 10_000
