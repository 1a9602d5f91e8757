"""Split configs, make_split, derived seeds and the persisted split store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import benchmark.splits.splitters as splitters
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, UnknownNameError
from benchmark.registry import conf_dir
from benchmark.seeds import derive_seed
from benchmark.splits.make import SplitConfig, load_split_config, make_split, split_seeds
from benchmark.splits.split import Split
from benchmark.splits.store import CorruptSplitError, read_split, write_split
from tests.synthetic import random_matrix

REPO = Path(__file__).resolve().parents[2]
CONFIG = SplitConfig(
    name="per_user_80_20",
    splitter="random_holdout_per_user",
    params={"test_fraction": 0.2},
    validation_splitter="leave_one_out",
    validation_params={"by": "latest"},
)


def _data() -> InteractionMatrix:
    return random_matrix(40, 30, density=0.2, seed=7, ratings=True, timestamps=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from benchmark.splits.make import SplitConfig, make_split
    from tests.synthetic import random_matrix
    data = random_matrix(40, 30, density=0.2, seed=7, ratings=True, timestamps=True)
    config = SplitConfig(name="per_user_80_20", splitter="random_holdout_per_user",
                         params={"test_fraction": 0.2}, validation_splitter="leave_one_out",
                         validation_params={"by": "latest"})
    split = make_split(data, config, dataset="synthetic", seed=int(sys.argv[2]), cache_dir=Path(sys.argv[1]))
    print(json.dumps(dict(split.fingerprints)))
    """
)


def _in_subprocess(cache: Path, seed: int) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(cache), str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_config_in_two_processes_gives_identical_files_and_fingerprints(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    fa, fb, fc = _in_subprocess(a, 1), _in_subprocess(b, 1), _in_subprocess(c, 2)
    assert fa == fb
    files_a, files_b = _files(a), _files(b)
    assert files_a == files_b  # byte-identical parquet and json, same folder names
    assert any(name.endswith("train.parquet") for name in files_a)
    # another seed: other fingerprints, other test file bytes
    assert fc["test"] != fa["test"] and fc["split"] != fa["split"]
    test_a = next(v for k, v in files_a.items() if k.endswith("/test.parquet"))
    test_c = next(v for k, v in _files(c).items() if k.endswith("/test.parquet"))
    assert test_a != test_c
    # and this process reading the same cache gets the same split
    assert dict(make_split(_data(), CONFIG, dataset="synthetic", seed=1, cache_dir=a).fingerprints) == fa


def test_cached_split_is_reused_without_splitting_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_split(_data(), CONFIG, dataset="synthetic", seed=0, cache_dir=tmp_path)

    def boom(*args: object, **kwargs: object) -> Split:
        raise AssertionError("splitter called although the split is cached")

    monkeypatch.setitem(splitters.SPLITTERS, "random_holdout_per_user", boom)
    again = make_split(_data(), CONFIG, dataset="synthetic", seed=0, cache_dir=tmp_path)
    assert again.fingerprints == first.fingerprints
    assert again.params == first.params
    with pytest.raises(AssertionError, match="cached"):
        make_split(_data(), CONFIG, dataset="synthetic", seed=1, cache_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "delete", "swap"])
def test_a_corrupt_cached_split_is_rebuilt_never_used(tmp_path: Path, damage: str) -> None:
    good = make_split(_data(), CONFIG, dataset="synthetic", seed=0, cache_dir=tmp_path)
    (folder,) = (tmp_path / "splits").iterdir()
    target = folder / "test.parquet"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:50])
    elif damage == "garbage_json":
        (folder / "split.json").write_text("{not json")
    elif damage == "delete":
        (folder / "validation.parquet").unlink()
    else:  # a well-formed parquet file, but not the recorded one
        target.write_bytes((folder / "train.parquet").read_bytes())
    with pytest.raises(CorruptSplitError):
        read_split(folder)
    with pytest.warns(RuntimeWarning, match="rebuilding corrupt cached split"):
        rebuilt = make_split(_data(), CONFIG, dataset="synthetic", seed=0, cache_dir=tmp_path)
    assert rebuilt.fingerprints == good.fingerprints
    assert read_split(folder).fingerprints == good.fingerprints  # the folder was repaired


def test_store_round_trip_keeps_string_ids_candidates_and_params(tmp_path: Path) -> None:
    base = random_matrix(12, 9, seed=2, ratings=True)
    data = InteractionMatrix.from_indices(
        base.row_indices(),
        base.matrix.indices,
        np.array([f"u{i}" for i in range(12)], dtype=object),
        np.array([f"i{i}" for i in range(9)], dtype=object),
        ratings=base.ratings,
        name="strings",
    )
    split = splitters.leave_one_out(data, rng=np.random.default_rng(0))
    free = (split.train.matrix + split.test.matrix).toarray() == 0
    cand = np.zeros(data.shape, dtype=bool)
    cand[:, :] = free & (np.arange(9)[None, :] % 2 == 0)
    split = Split(
        train=split.train,
        test=split.test,
        test_candidates=sp.csr_matrix(cand),
        params={"a": [1, 2], "b": None},
    )
    write_split(split, tmp_path / "s")
    back = read_split(tmp_path / "s")
    assert back.fingerprints == split.fingerprints
    assert back.params == split.params
    assert back.train.user_ids.tolist() == data.user_ids.tolist()
    assert back.test.ratings is not None and back.test.timestamps is None


def test_seeds_differ_between_test_and_validation_and_follow_derive_seed() -> None:
    seeds = split_seeds(CONFIG, dataset="ml-100k", seed=3)
    assert seeds["test"] == derive_seed("ml-100k", CONFIG.name, CONFIG.splitter, "test", 3)
    assert seeds["validation"] == derive_seed("ml-100k", CONFIG.name, "leave_one_out", "validation", 3)
    assert seeds["test"] != seeds["validation"]
    assert split_seeds(CONFIG, dataset="ml-1m", seed=3)["test"] != seeds["test"]


def test_make_split_records_its_provenance_and_passes_the_checks(tmp_path: Path) -> None:
    split = make_split(_data(), CONFIG, dataset="synthetic", seed=5, cache_dir=tmp_path)
    p = split.params
    assert p["config"] == CONFIG.name and p["seed"] == 5 and p["dataset"] == "synthetic"
    assert p["data_fingerprint"] == _data().fingerprint
    assert p["splitter"] == "random_holdout_per_user" and p["validation"]["splitter"] == "leave_one_out"
    assert split.validation is not None
    assert split.validation.user_counts().max() == 1  # leave-one-out validation
    assert split.train_full.union(split.test).fingerprint == _data().fingerprint
    uncached = make_split(_data(), CONFIG, dataset="synthetic", seed=5, use_cache=False)
    assert uncached.fingerprints == split.fingerprints


def test_user_kfold_folds_of_one_config_share_one_user_partition(tmp_path: Path) -> None:
    data = _data()
    test_users = []
    for fold in range(4):
        cfg = SplitConfig(
            name="user_4fold",
            splitter="user_kfold",
            params={"n_folds": 4, "fold": fold, "test_fraction": 0.3},
        )
        split = make_split(data, cfg, dataset="synthetic", seed=0, cache_dir=tmp_path)
        test_users.append(split.test.user_counts() > 0)
    together = np.sum(test_users, axis=0)
    assert together.max() == 1  # no user is a test user of two folds
    assert together.sum() == int((data.user_counts() >= 2).sum())


def test_split_config_validation() -> None:
    with pytest.raises(UnknownNameError, match="random_holdout"):
        SplitConfig(name="x", splitter="random_hold")
    with pytest.raises(UnknownNameError):
        SplitConfig(
            name="x", splitter="random_holdout", params={"test_fraction": 0.2}, validation_splitter="nope"
        )
    with pytest.raises(ConfigError, match="published"):
        SplitConfig(name="x", splitter="published")
    with pytest.raises(UnknownNameError, match="mcrec_ml100k"):
        SplitConfig(name="x", splitter="published", published="mcrec_ml1m")
    with pytest.raises(ConfigError, match="unknown keys"):
        SplitConfig.from_mapping({"name": "x", "splitter": "random_holdout", "fraction": 0.2})
    with pytest.raises(ConfigError, match="bogus"):
        make_split(
            _data(),
            SplitConfig(name="x", splitter="random_holdout", params={"bogus": 1}),
            dataset="d",
            seed=0,
            use_cache=False,
        )


@pytest.mark.parametrize("path", sorted((conf_dir() / "split").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_split_config_file_loads_and_its_name_matches_the_file(path: Path) -> None:
    cfg = load_split_config(path.stem)
    assert cfg.name == path.stem
    if cfg.splitter != "published":
        data = random_matrix(30, 20, density=0.3, seed=1, timestamps=True)
        split = make_split(data, cfg, dataset="synthetic", seed=0, use_cache=False)
        assert split.validation is not None and split.validation.nnz > 0 and split.test.nnz > 0


def test_unknown_split_config_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="random_holdout"):
        load_split_config("no_such_split")


def test_config_from_the_cli_schema_shape() -> None:
    """The CLI passes every schema key (description, splitter None for a published split)."""
    cfg = SplitConfig.from_mapping(
        {
            "name": "m",
            "splitter": None,
            "params": {},
            "validation_splitter": None,
            "validation_params": {},
            "published": "mcrec_ml100k",
            "description": "MCRec",
        }
    )
    assert cfg.splitter == "published" and cfg.description == "MCRec"
    plain = SplitConfig(name="r", splitter="random_holdout", params={"test_fraction": 0.2})
    described = SplitConfig(
        name="r", splitter="random_holdout", params={"test_fraction": 0.2}, description="x"
    )
    assert plain.canonical() == described.canonical()  # free text never changes the cache key
