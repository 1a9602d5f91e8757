"""A new model is one module + one YAML: found by the registry, the default experiment and the
contract suite without touching any other file.

The toy model lives in a temporary folder (its own package on ``PYTHONPATH``) and its YAML in a
copy of ``conf/`` (``REPROREC_CONF``): nothing of the checkout is edited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

TOY_MODULE = '''
"""Item co-occurrence scores: a user's items times the item-item co-occurrence counts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import Param, Recommender


class Cooccurrence(Recommender):
    """score(u, i) = sum over the user's items j of count(j, i) / (count(j, j) + shrink)."""

    param_specs: ClassVar[dict[str, Param]] = {"shrink": Param("float", low=0.0)}

    def __init__(self, shrink: float = 1.0) -> None:
        self.shrink = shrink

    def fit(self, train: InteractionMatrix) -> Cooccurrence:
        self.validate_params()
        x = train.matrix.astype(np.float32)
        c = (x.T @ x).toarray()
        self.similarity_ = c / (np.diag(c)[:, None] + self.shrink)
        np.fill_diagonal(self.similarity_, 0.0)
        self.profiles_ = x
        self.n_items_ = train.n_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("similarity_")
        return np.asarray(self.profiles_[users] @ self.similarity_, dtype=np.float32)
'''

TOY_YAML = """\
# A toy co-occurrence model (tests/unit/test_new_model.py).
name: toyco
cls: toy_models.cooccurrence.Cooccurrence
family: neighbourhood
search_space:
  shrink: {type: float, low: 0.0, high: 100.0}
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "model" / "toyco.yaml").write_text(TOY_YAML)
    package = tmp_path / "plugins" / "toy_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cooccurrence.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.setenv("REPROREC_CONF", str(conf))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    return tmp_path


def test_the_registry_finds_the_new_model(toy: Path) -> None:
    from benchmark.registry import model_specs

    spec = model_specs()["toyco"]
    assert spec.load_class().__name__ == "Cooccurrence"
    assert spec.effective_params() == {"shrink": 1.0}  # the class's default: the YAML states none


def test_the_default_experiment_sweeps_the_new_model(toy: Path) -> None:
    from hydra import compose, initialize_config_dir

    from benchmark.cli.sweep import _cell_configs
    from benchmark.config import register_configs
    from benchmark.registry import model_specs

    register_configs()
    with initialize_config_dir(config_dir=str(toy / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=default"], return_hydra_config=True)
        cfg.hydra.overrides.task = ["experiment=default"]
        cells = list(_cell_configs(cfg))  # what the sweep checks and Hydra's basic sweeper launches
    swept = sorted(c.model.name for c in cells)
    baselines = sorted(n for n, s in model_specs().items() if s.family != "neural" and s.variant_of is None)
    assert "toyco" in swept
    assert swept == baselines
    assert {c.dataset.name for c in cells} == {"ml-100k"}


def test_the_contract_suite_runs_on_the_new_model(toy: Path) -> None:
    env = {
        **os.environ,
        "REPROREC_CONF": str(toy / "conf"),
        "PYTHONPATH": os.pathsep.join([str(toy / "plugins"), str(REPO)]),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-k",
            "toyco",
            "tests/unit/test_model_contract.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = set(re.findall(r"PASSED \S+::(\w+)\[toyco\]", proc.stdout))
    for check in (  # the checks a wrong model fails: planted top-1, determinism, batches, ranges
        "test_planted_heldout_item_is_top1_among_unseen_items_for_every_user",
        "test_same_hyperparameters_and_seed_give_identical_scores",
        "test_scores_of_a_batch_equal_the_rows_of_all_users",
        "test_out_of_range_or_wrong_type_raises_config_error_naming_it",
        "test_search_space_lies_inside_the_allowed_values",
        "test_yaml_holds_only_what_an_experiment_chooses",
    ):
        assert check in passed, proc.stdout[-3000:]
    assert len(passed) >= 13 and " FAILED" not in proc.stdout


def test_a_copied_yaml_that_keeps_the_name_is_refused(toy: Path) -> None:
    from benchmark.registry import model_specs

    (toy / "conf" / "model" / "toyco_copy.yaml").write_text(TOY_YAML)
    with pytest.raises(ConfigError, match=r"toyco_copy\.yaml: name 'toyco' differs from the file name"):
        model_specs()


def test_a_yaml_restating_a_class_default_fails_the_contract_suite(toy: Path) -> None:
    # one declaration per hyperparameter: the YAML may change a default, not repeat it
    (toy / "conf" / "model" / "toyco.yaml").write_text(TOY_YAML + "params: {shrink: 1.0}\n")
    env = {
        **os.environ,
        "REPROREC_CONF": str(toy / "conf"),
        "PYTHONPATH": os.pathsep.join([str(toy / "plugins"), str(REPO)]),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "toyco and yaml_holds_only",
            "tests/unit/test_model_contract.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout[-2000:]
    assert "restates class defaults {'shrink': 1.0}" in proc.stdout


def test_a_named_variant_must_share_its_base_class_and_is_left_out_of_registry_sweeps(toy: Path) -> None:
    from benchmark.cli.sweep import registered_models
    from benchmark.registry import _specs, model_specs

    variant = (
        TOY_YAML.replace("name: toyco", "name: toyco_big") + "variant_of: toyco\nparams: {shrink: 5.0}\n"
    )
    (toy / "conf" / "model" / "toyco_big.yaml").write_text(variant)
    assert model_specs()["toyco_big"].variant_of == "toyco"
    assert "toyco," in registered_models("baselines") + "," and "toyco_big" not in registered_models("all")
    (toy / "conf" / "model" / "toyco_big.yaml").write_text(
        variant.replace("variant_of: toyco", "variant_of: ease")
    )
    _specs.cache_clear()
    with pytest.raises(ConfigError, match=r"toyco_big\.yaml: variant_of 'ease' must name a registered model"):
        model_specs()
