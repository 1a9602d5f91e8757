"""Every staged dataset loads from the mirror with the counts stated in its PROVENANCE.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli.data import main
from benchmark.data.datasets import DATASETS
from benchmark.data.fetch import fetch_resource, verify_dataset
from benchmark.data.loading import load_dataset
from benchmark.data.preprocess import PreprocessConfig

pytestmark = pytest.mark.realdata

# (users, items, interactions) after the registered default preprocessing (PROVENANCE.md counts)
COUNTS = {
    "ml-100k": (943, 1682, 100_000),
    "ml-1m": (6040, 3706, 1_000_209),
    "ml-latest-small": (610, 9724, 100_836),
    "citeulike-a": (5551, 16980, 204_986),
    "citeulike-t": (7947, 25584, 134_860),
    "lastfm-hetrec2011": (1892, 17632, 92_834),
    "filmtrust": (1508, 2071, 35_494),
    "amazon-digital-music": (844, 18813, 46_468),
    "yelp": (16239, 14284, 198_397),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_staged_dataset_counts(name: str, mirror: Path) -> None:
    d = load_dataset(name, mirror=mirror)
    assert (d.data.n_users, d.data.n_items, d.data.nnz) == COUNTS[name]
    assert all(f["origin"] == "mirror" for f in d.source.files)


def test_ml100k_has_ratings_and_timestamps_and_known_rating_counts(mirror: Path) -> None:
    d = load_dataset("ml-100k", mirror=mirror)
    assert d.data.timestamps is not None
    counts = {r: int((d.data.ratings == r).sum()) for r in (1, 2, 3, 4, 5)}
    assert counts == {1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}


def test_ml1m_mirror_variant_has_no_timestamps_and_published_rating_counts(mirror: Path) -> None:
    d = load_dataset("ml-1m", mirror=mirror)
    assert d.source.variant == "rda-notimestamp" and d.data.timestamps is None
    counts = {r: int((d.data.ratings == r).sum()) for r in (1, 2, 3, 4, 5)}
    assert counts == {1: 56_174, 2: 107_557, 3: 261_197, 4: 348_971, 5: 226_310}


def test_ml1m_anelli_preprocessing_reproduces_their_dataset(mirror: Path) -> None:
    d = load_dataset(
        "ml-1m", mirror=mirror, preprocessing=PreprocessConfig(min_rating=4, user_core=10, item_core=10)
    )
    assert (d.data.n_users, d.data.n_items, d.data.nnz) == (5949, 2810, 571_531)
    assert d.steps[-1].params["passes"] >= 2


def test_ml_latest_small_fake_row_is_dropped_and_reported(mirror: Path) -> None:
    d = load_dataset("ml-latest-small", mirror=mirror)
    assert d.source.dropped_rows == 1
    assert 999999 not in set(d.data.item_ids.tolist())
    assert d.steps[0].before.interactions == 100_836


def test_filmtrust_three_duplicate_pairs_resolved(mirror: Path) -> None:
    d = load_dataset("filmtrust", mirror=mirror)
    step = d.steps[0]
    assert step.step == "duplicates" and step.params == {"policy": "first"}
    assert (step.before.interactions, step.after.interactions) == (35_497, 35_494)


def test_amazon_timestamps_range(mirror: Path) -> None:
    d = load_dataset("amazon-digital-music", mirror=mirror)
    assert (int(d.data.timestamps.min()), int(d.data.timestamps.max())) == (894931200, 1406073600)


def test_loading_twice_gives_the_same_fingerprint(mirror: Path) -> None:
    assert (
        load_dataset("ml-100k", mirror=mirror).fingerprint
        == load_dataset("ml-100k", mirror=mirror).fingerprint
    )


def test_published_split_files_resolve_to_verified_mirror_copies(mirror: Path) -> None:
    for dataset, info in DATASETS.items():
        for key, res in info.resources.items():
            if res.mirror and (mirror / res.mirror).exists():
                assert fetch_resource(dataset, key, mirror=mirror) == mirror / res.mirror


def test_verify_all_staged_files_ok(mirror: Path) -> None:
    for name in COUNTS:
        for r in verify_dataset(name, mirror=mirror):
            assert r.status in ("OK", "missing"), (name, r)


def test_cli_describe_ml100k(mirror: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("REPROREC_MIRROR", str(mirror))
    assert main(["describe", "ml-100k"]) == 0
    out = capsys.readouterr().out
    assert "943 users, 1,682 items, 100,000 interactions" in out
    assert "[mirror, mirror sha256]" in out


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_cli_describe_every_staged_dataset(name: str, mirror: Path, capsys) -> None:
    assert main(["describe", name, "--mirror", str(mirror)]) == 0
    users, items, n = COUNTS[name]
    assert f"{users:,} users, {items:,} items, {n:,} interactions" in capsys.readouterr().out
