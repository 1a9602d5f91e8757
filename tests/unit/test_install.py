"""Install and first contact: configs outside the checkout (REPROREC_CONF_PATH), help, the sweep summary.

``make wheel-check`` (CI) installs the built wheel in a fresh venv and runs a sweep, a user model and
a report from an empty folder; these tests pin the registry rules it relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.errors import ConfigError
from benchmark.registry import ENV_CONF_PATH, hydra_searchpath_override, model_specs


def user_model(folder: Path, name: str) -> Path:
    (folder / "model").mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "cls": "baselines.ease.EASE", "family": "linear", "search_space": {}}
    (folder / "model" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_a_user_model_yaml_joins_the_registry_and_hydra_finds_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.cli.score import compose

    mine = user_model(tmp_path / "myconf", "ease_mine")
    monkeypatch.setenv(ENV_CONF_PATH, str(mine))
    specs = model_specs()
    assert specs["ease_mine"].cls == "baselines.ease.EASE" and "ease" in specs
    assert hydra_searchpath_override() == [f"hydra.searchpath=[file://{mine.resolve()}]"]
    cfg = compose(["model=ease_mine", "dataset=synthetic"])
    assert cfg.model.name == "ease_mine"


def test_a_user_model_may_not_take_a_registered_name_nor_a_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CONF_PATH, str(user_model(tmp_path / "c", "ease")))
    with pytest.raises(
        ConfigError, match=r"c/model/ease\.yaml has the name of a model that is already registered"
    ):
        model_specs()
    monkeypatch.setenv(ENV_CONF_PATH, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"'.*nowhere' is not a folder"):
        model_specs()


def test_help_explains_itself_with_examples_and_the_config_groups() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "benchmark.cli.sweep", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert out.startswith("reprorec: one benchmark cell")
    assert "reprorec -m experiment=default dry_run=true" in out
    assert "model: bpr, ease," in out and "experiment/dacrema: cmn_citeulike" in out
    assert "powered by Hydra" not in out


def test_the_end_of_sweep_summary_lists_cells_best_first() -> None:
    from benchmark.cli.sweep import summary_table

    outcomes = [
        {
            "name": "toppop · d · seed 0",
            "status": "skipped",
            "test_metrics": {"test/ndcg_at_10": 0.22},
            "seconds": 0.1,
        },
        {"name": "x · d · seed 0", "status": "failed", "seconds": 1.0},
        {
            "name": "ease · d · seed 0",
            "status": "finished",
            "test_metrics": {"test/ndcg_at_10": 0.44},
            "seconds": 3.2,
        },
    ]
    lines = summary_table(outcomes, "ndcg_at_10").splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["ease", "toppop", "x"]
    assert lines[1].split()[-2:] == ["0.4400", "3.2"] and lines[3].split()[-2] == "–"
