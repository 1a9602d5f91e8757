"""load_dataset for `file` and `synthetic`, datasheets, the registry, the configs and the CLI."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.cli.data import main
from benchmark.data.datasets import DATASETS, get_dataset_info
from benchmark.data.datasheet import datasheet, format_datasheet, gini
from benchmark.data.interactions import InteractionMatrix
from benchmark.data.loading import frame_to_matrix, load_dataset, load_dataset_config
from benchmark.data.preprocess import PreprocessConfig
from benchmark.errors import ConfigError, DataError, UnknownNameError
from benchmark.fingerprint import sha256_file

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"

CSV = "uid,iid,score,ts\n10,7,4.0,100\n3,7,2.5,50\n10,9,5.0,300\n3,8,1.0,200\n"


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "mine.csv"
    p.write_text(CSV)
    return p


def test_file_dataset_with_column_mapping_sorts_ids_and_keeps_ratings(csv_file: Path) -> None:
    opts = {
        "path": str(csv_file),
        "columns": {"uid": "user", "iid": "item", "score": "rating", "ts": "timestamp"},
    }
    d = load_dataset("file", options=opts)
    m = d.data
    assert m.user_ids.tolist() == [3, 10] and m.item_ids.tolist() == [7, 8, 9]
    # CSR order: user 3 -> items 7, 8; user 10 -> items 7, 9
    assert m.matrix.indices.tolist() == [0, 1, 0, 2]
    assert m.ratings.tolist() == [2.5, 1.0, 4.0, 5.0]
    assert m.timestamps.tolist() == [50, 200, 100, 300]
    assert d.source.variant == "file" and d.source.files[0]["sha256"] == sha256_file(csv_file)
    assert d.fingerprint == m.fingerprint


def test_file_dataset_gzip_tsv_without_header(tmp_path: Path) -> None:
    p = tmp_path / "mine.tsv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("1\t2\n1\t3\n2\t3\n")
    d = load_dataset("file", options={"path": str(p), "header": False})
    assert (d.data.n_users, d.data.n_items, d.data.nnz) == (2, 2, 3) and d.data.ratings is None


def test_file_dataset_parquet(tmp_path: Path) -> None:
    p = tmp_path / "mine.parquet"
    pd.DataFrame({"user": [5, 5, 6], "item": [1, 2, 1], "rating": [1.0, 2.0, 3.0]}).to_parquet(p)
    d = load_dataset("file", options={"path": str(p)})
    assert d.data.nnz == 3 and d.data.ratings.tolist() == [1.0, 2.0, 3.0]


def test_file_dataset_duplicates_refused_by_default_and_resolved_on_request(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("user,item,rating\n1,1,2\n1,1,4\n2,1,3\n")
    with pytest.raises(DataError, match="duplicate"):
        load_dataset("file", options={"path": str(p)})
    d = load_dataset(
        "file", options={"path": str(p)}, preprocessing=PreprocessConfig(duplicates="max_rating")
    )
    assert d.data.ratings.tolist() == [4.0, 3.0]


def test_file_dataset_bad_options(csv_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"options\.path"):
        load_dataset("file", options={})
    with pytest.raises(ConfigError, match="unknown options"):
        load_dataset("file", options={"path": str(csv_file), "delimiter": ";"})
    with pytest.raises(DataError, match="file not found"):
        load_dataset("file", options={"path": str(tmp_path / "absent.csv")})


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        load_dataset("ml-100m")
    assert "ml-100k" in str(err.value) and "filmtrust" in str(err.value)


def test_synthetic_dataset_through_load_dataset_is_deterministic() -> None:
    opts = {"n_users": 50, "n_items": 40, "n_interactions": 300, "seed": 3}
    a, b = load_dataset("synthetic", options=opts), load_dataset("synthetic", options=opts)
    assert a.data.nnz == 300 and a.fingerprint == b.fingerprint
    c = load_dataset("synthetic", options={**opts, "seed": 4})
    assert c.fingerprint != a.fingerprint


def test_gini_of_equal_and_concentrated_popularity() -> None:
    assert gini(np.array([3, 3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (n - 1) / n
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # (-1*1 + 1*3) / (2 * 4)


def test_datasheet_counts_on_hand_computed_data(csv_file: Path) -> None:
    opts = {
        "path": str(csv_file),
        "columns": {"uid": "user", "iid": "item", "score": "rating", "ts": "timestamp"},
    }
    d = load_dataset("file", options=opts, preprocessing=PreprocessConfig(min_rating=2.0))
    s = datasheet(d)
    # rating >= 2 keeps (10,7,4.0), (3,7,2.5), (10,9,5.0): users {3,10}, items {7,9}
    assert (s["users"], s["items"], s["interactions"]) == (2, 2, 3)
    assert s["density"] == pytest.approx(3 / 4)
    assert s["popularity_gini"] == pytest.approx(gini(np.array([2, 1])))
    assert s["rating_histogram"] == {"2.5": 1, "4": 1, "5": 1}
    assert s["timestamp_range"] == [50, 300]
    assert s["user_degree"]["min"] == 1 and s["user_degree"]["max"] == 2
    assert [(p["step"], p["after"]["interactions"]) for p in s["preprocessing"]] == [
        ("duplicates", 4),
        ("min_rating", 3),
    ]
    assert s["fingerprint"] == d.fingerprint
    text = format_datasheet(s)
    assert "2 users, 2 items, 3 interactions" in text
    assert "min_rating (min_rating=2.0): 2/3/4 -> 2/2/3" in text
    json.dumps(s)  # JSON-ready


def test_every_dataset_has_a_config_whose_preprocessing_matches_the_registry() -> None:
    for name, info in DATASETS.items():
        cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert cfg["name"] == name
        expected = PreprocessConfig(**dict(info.preprocessing))
        assert PreprocessConfig(**cfg["preprocessing"]) == expected, name


def test_all_dataset_configs_name_registered_datasets_and_valid_steps() -> None:
    for path in CONF.glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        get_dataset_info(cfg["name"])
        PreprocessConfig(**cfg["preprocessing"])


def test_load_dataset_config_from_plain_mapping(csv_file: Path) -> None:
    cfg = {
        "name": "file",
        "preprocessing": {"user_core": 2},
        "options": {"path": str(csv_file), "columns": {"uid": "user", "iid": "item"}},
    }
    d = load_dataset_config(cfg)
    assert d.data.nnz == 4 and d.steps[-1].step == "k_core"


def test_registry_pins_a_sha256_for_every_downloadable_and_mirrored_file() -> None:
    hexa = re.compile(r"^[0-9a-f]{64}$")
    for info in DATASETS.values():
        for key, res in info.resources.items():
            if res.urls:
                assert res.sha256 or res.member_sha256, (info.name, key)
            for h in (res.sha256, res.member_sha256, res.mirror_sha256):
                assert h is None or hexa.match(h), (info.name, key)
        for v in info.variants:
            for key in v.resources:
                info.resource(key)


def test_published_split_resources_are_registered() -> None:
    expected = {
        "ml-100k": {"mcrec_train", "mcrec_test"},
        "ml-1m": {
            "neumf_train_reconstructed",
            "neumf_test",
            "neumf_negatives",
            "spectralcf_train",
            "spectralcf_test",
        },
        "citeulike-a": {"cvae_train_1", "cvae_test_1", "cvae_train_10", "cvae_test_10", "cmn_npz"},
        "citeulike-t": {"cvae_train_1", "cvae_test_1", "cvae_train_10", "cvae_test_10"},
    }
    for name, keys in expected.items():
        assert keys <= set(get_dataset_info(name).resources), name
    assert get_dataset_info("ml-1m").resource("neumf_train_reconstructed").urls == ()


def test_cli_describe_file_prints_counts_and_json(csv_file: Path, capsys) -> None:
    cols = "{uid: user, iid: item}"
    assert main(["describe", "file", "-o", f"path={csv_file}", "-o", f"columns={cols}"]) == 0
    assert "2 users, 3 items, 4 interactions" in capsys.readouterr().out
    assert (
        main(
            [
                "describe",
                "file",
                "-o",
                f"path={csv_file}",
                "-o",
                f"columns={cols}",
                "--item-core",
                "2",
                "--json",
            ]
        )
        == 0
    )
    sheet = json.loads(capsys.readouterr().out)
    # only item 7 has 2 users
    assert (sheet["users"], sheet["items"], sheet["interactions"]) == (2, 1, 2)
    # 2-core on both sides: dropping items 8 and 9 leaves each user 1 item, so nothing survives
    assert (
        main(
            [
                "describe",
                "file",
                "-o",
                f"path={csv_file}",
                "-o",
                f"columns={cols}",
                "--user-core",
                "2",
                "--item-core",
                "2",
            ]
        )
        == 2
    )
    assert "no interactions left after k_core" in capsys.readouterr().err


def test_cli_unknown_name_exits_2_with_known_names(capsys) -> None:
    assert main(["describe", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "ml-100k" in err


def test_cli_list_shows_every_dataset(capsys, monkeypatch) -> None:
    monkeypatch.delenv("REPROREC_MIRROR", raising=False)
    assert main(["list", "--mirror", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert re.search(r"^yelp\s.*unavailable \(mirror only\)", out, re.M)


id_pairs = st.lists(
    st.tuples(st.integers(-3, 40), st.integers(0, 9_000_000)), min_size=1, max_size=60, unique=True
)


@settings(max_examples=80, deadline=None)
@given(id_pairs, st.booleans())
def test_frame_to_matrix_equals_interaction_matrix_from_frame(
    pairs: list[tuple[int, int]], as_str: bool
) -> None:
    f = pd.DataFrame(pairs, columns=["user", "item"])
    f["rating"] = np.arange(len(f), dtype=np.float64) / 2
    f["timestamp"] = np.arange(len(f), dtype=np.int64)[::-1] * 7
    if as_str:
        f["item"] = "i" + f["item"].astype(str)
    fast = frame_to_matrix(f, name="x")
    ref = InteractionMatrix.from_frame(f, rating_col="rating", timestamp_col="timestamp", name="x")
    assert fast.fingerprint == ref.fingerprint
    assert fast.matrix.indptr.dtype == ref.matrix.indptr.dtype and fast.matrix.indices.dtype == np.int32
    assert fast.user_ids.dtype == ref.user_ids.dtype


def test_frame_to_matrix_refuses_duplicate_pairs() -> None:
    with pytest.raises(DataError, match="duplicate"):
        frame_to_matrix(pd.DataFrame({"user": [1, 1], "item": [2, 2]}))


def test_file_with_header_only_is_an_empty_dataset_error(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_text("user,item\n")
    with pytest.raises(DataError, match="no interactions left"):
        load_dataset("file", options={"path": str(p)})
