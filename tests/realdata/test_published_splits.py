"""Published split files of the dataset mirror: counts from PROVENANCE.md, reuse, reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.splits.make import load_split_config, make_split
from benchmark.splits.published import PUBLISHED_SPLITS, load_published_split

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[2]

# name: (train, test, users, items, test users, candidates, candidates dropped); counts from the
# PROVENANCE.md files (items = ids occurring in the files, negatives included).
EXPECTED = {
    "mcrec_ml100k": (80_000, 20_000, 943, 1_682, 942, None, None),
    # 6,040 x 99 negatives; 156 of them name the user's own test item (dropped, see published.py)
    "neumf_ml1m": (994_169, 6_040, 6_040, 3_706, 6_040, 6_040 * 99 - 156, 156),
    "spectralcf_ml1m": (179_207, 47_103, 6_014, 3_232, 5_479, None, None),
    "cvae_citeulike_a_p1": (5_551, 199_435, 5_551, 16_980, 5_551, None, None),
    "cvae_citeulike_a_p10": (55_510, 149_476, 5_551, 16_980, 5_139, None, None),
    "cvae_citeulike_t_p1": (7_947, 126_913, 7_947, 25_584, 7_947, None, None),
    "cvae_citeulike_t_p10": (53_399, 81_461, 7_947, 25_584, 2_598, None, None),
    # 5,551 x 100 negatives; 1,115 of them are training items of their user (dropped)
    "cmn_citeulike_a": (199_435, 5_551, 5_551, 16_980, 5_551, 5_551 * 100 - 1_115, 1_115),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("published-cache")


def test_every_published_split_has_expected_counts() -> None:
    assert set(EXPECTED) == set(PUBLISHED_SPLITS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_split_counts_and_reload(name: str, mirror: Path, cache: Path) -> None:
    n_train, n_test, n_users, n_items, n_test_users, n_cand, n_dropped = EXPECTED[name]
    split = load_published_split(name, mirror=mirror, cache_dir=cache)
    assert (split.train.nnz, split.test.nnz) == (n_train, n_test)
    assert split.train.shape == (n_users, n_items)
    assert int((split.test.user_counts() > 0).sum()) == n_test_users
    if n_cand is None:
        assert split.test_candidates is None
    else:
        assert split.test_candidates is not None and split.test_candidates.nnz == n_cand
        assert split.params["n_candidates_dropped"] == n_dropped
    split.check()
    again = load_published_split(name, mirror=mirror, cache_dir=cache)  # from the split store
    assert again.fingerprints == split.fingerprints and again.params == split.params


def test_mcrec_split_is_exactly_a_partition_of_u_data(mirror: Path, cache: Path) -> None:
    split = load_published_split("mcrec_ml100k", mirror=mirror, cache_dir=cache)
    u = pd.read_csv(mirror / "movielens-100k" / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    both = split.train.union(split.test).to_frame(external_ids=True)
    assert sorted(zip(both["user"], both["item"])) == sorted(zip(u["u"], u["i"]))


def test_citeulike_t_p1_and_p10_are_two_splits_of_one_dataset(mirror: Path, cache: Path) -> None:
    p1 = load_published_split("cvae_citeulike_t_p1", mirror=mirror, cache_dir=cache)
    p10 = load_published_split("cvae_citeulike_t_p10", mirror=mirror, cache_dir=cache)
    assert p1.train.union(p1.test).fingerprint == p10.train.union(p10.test).fingerprint
    assert p1.train.user_counts().max() == 1 and p10.train.user_counts().max() == 10


def test_neumf_candidates_are_99_per_user_less_the_positive(mirror: Path, cache: Path) -> None:
    split = load_published_split("neumf_ml1m", mirror=mirror, cache_dir=cache)
    assert split.test_candidates is not None
    per_user = np.diff(split.test_candidates.indptr)
    assert per_user.max() == 99 and (per_user == 98).sum() == 156 and per_user.min() == 98


def test_published_config_carves_validation_and_keeps_the_published_test(mirror: Path, cache: Path) -> None:
    config = load_split_config("mcrec_ml100k")
    split = make_split(None, config, dataset="ml-100k", seed=0, cache_dir=cache)
    published = load_published_split("mcrec_ml100k", mirror=mirror, cache_dir=cache)
    assert split.fingerprints["test"] == published.fingerprints["test"]
    assert split.validation is not None
    assert split.train_full.fingerprint == published.train.fingerprint
    assert split.train.nnz + split.validation.nnz == 80_000


_ML100K = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import pandas as pd
    from benchmark.data.interactions import InteractionMatrix
    from benchmark.splits.make import load_split_config, make_split
    frame = pd.read_csv(Path(sys.argv[1]) / "movielens-100k" / "u.data", sep="\\t", header=None,
                        names=["user", "item", "rating", "timestamp"])
    data = InteractionMatrix.from_frame(frame, rating_col="rating", timestamp_col="timestamp", name="ml-100k")
    split = make_split(data, load_split_config(sys.argv[3]), dataset="ml-100k", seed=int(sys.argv[4]),
                       cache_dir=Path(sys.argv[2]))
    print(json.dumps({"fingerprints": dict(split.fingerprints), "sizes": [split.train.nnz, split.test.nnz]}))
    """
)


def _ml100k_split(mirror: Path, cache: Path, config: str, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _ML100K, str(mirror), str(cache), config, str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.mark.parametrize("config", ["random_per_user_80_20", "leave_one_out_latest"])
def test_ml100k_split_in_two_processes_is_identical_and_seed_changes_it(
    config: str, mirror: Path, tmp_path: Path
) -> None:
    a = _ml100k_split(mirror, tmp_path / "a", config, 0)
    b = _ml100k_split(mirror, tmp_path / "b", config, 0)
    c = _ml100k_split(mirror, tmp_path / "c", config, 1)
    assert a == b
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert c["fingerprints"]["test"] != a["fingerprints"]["test"]
    assert c["fingerprints"]["split"] != a["fingerprints"]["split"]
    if config == "leave_one_out_latest":
        # every ml-100k user has >= 20 ratings: one test and one validation interaction each
        assert a["sizes"] == [100_000 - 2 * 943, 943]


def test_loader_and_direct_u_data_matrix_are_the_same_data(mirror: Path, tmp_path: Path) -> None:
    """The two-process test above builds ml-100k straight from u.data; the dataset loader agrees."""
    from benchmark.data.interactions import InteractionMatrix
    from benchmark.data.loading import load_dataset

    frame = pd.read_csv(
        mirror / "movielens-100k" / "u.data",
        sep="\t",
        header=None,
        names=["user", "item", "rating", "timestamp"],
    )
    direct = InteractionMatrix.from_frame(frame, rating_col="rating", timestamp_col="timestamp")
    loaded = load_dataset("ml-100k", mirror=mirror, cache_dir=tmp_path).data
    assert loaded.fingerprint == direct.fingerprint
    config = load_split_config("random_per_user_80_20")
    a = make_split(loaded, config, dataset="ml-100k", seed=0, cache_dir=tmp_path)
    b = make_split(direct, config, dataset="ml-100k", seed=0, use_cache=False)
    assert a.fingerprints == b.fingerprints
    assert a.test.nnz == int(np.floor(0.2 * direct.user_counts() + 0.5 + 1e-9).sum())
