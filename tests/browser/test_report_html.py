"""The self-contained HTML report renders in headless Chromium: tables and embedded plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.reporting import generate_report
from tests.browser import CHROMIUM, SKIP_REASON, launch_chromium
from tests.tracking_fixtures import FakeCell, log_sweep, new_sqlite_store

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


def test_html_report_shows_leaderboard_and_plots(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(5)
    models = (
        ("toppop", "non-personalised", 0.1),
        ("itemknn", "neighbourhood", 0.25),
        ("ease", "linear", 0.3),
    )
    cells = [
        FakeCell(
            m,
            fam,
            0,
            {
                f"{metric}_at_{k}": np.clip(rng.random(40) * base * (1 + k / 20), 0, 1)
                for metric in ("ndcg", "recall")
                for k in (5, 10, 20)
            },
            trial_values=list(rng.random(6) * base),
        )
        for m, fam, base in models
    ]
    uri = new_sqlite_store(tmp_path / "store")
    log_sweep(uri, cells, artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    out = generate_report(uri, out_dir=tmp_path / "report", cutoffs=(5, 10, 20), n_resamples=99)
    html = out / "report.html"
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(html.as_uri())
        table = page.locator("table.leaderboard")
        assert table.count() == 1
        assert table.locator("tbody tr").count() == 3
        header = table.locator("thead").inner_text()
        assert "NDCG@10" in header and "Recall@10" in header and "Recall@20" not in header  # the headline
        full = page.locator("table.full")  # every metric at every cutoff, folded away
        assert full.count() == 2
        assert "Recall@20" in (full.nth(1).locator("thead").text_content() or "")
        wide = page.evaluate(
            "() => [...document.querySelectorAll('body *')].filter(e => e.scrollWidth > 1400)"
            ".map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth).slice(0, 8)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400, wide  # no sideways scrolling
        assert "ease (ref)" in table.inner_text()
        assert table.locator("b").count() >= 1  # the best value per column is bold
        imgs = page.locator("img.plot")
        assert imgs.count() == 3  # metric vs cutoff, accuracy vs cost, tuning curves
        for i in range(imgs.count()):
            imgs.nth(i).scroll_into_view_if_needed()
            width, height = imgs.nth(i).evaluate(
                "img => [img.complete && img.naturalWidth, img.naturalHeight]"
            )
            assert width > 100 and height > 100
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
