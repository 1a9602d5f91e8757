"""Configs outside the checkout: the user's own config folders (REPROREC_CONF_PATH).

``make wheel-check`` (CI) installs the built wheel in a fresh venv and runs a sweep, a user model and
a report from an empty folder; these tests pin the registry rules it relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.errors import ConfigError
from benchmark.registry import ENV_CONF_PATH, hydra_searchpath_override, in_checkout, model_specs


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


def test_the_checkout_is_recognised() -> None:
    assert in_checkout()  # the tests run from a checkout; the wheel's fallback is make wheel-check's
