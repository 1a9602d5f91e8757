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


def test_the_sweep_progress_line_counts_cells_and_extrapolates_the_rate() -> None:
    from benchmark.cli.sweep import sweep_progress

    # 3 of 12 cells in 130 s: 130 / 3 s per cell for the 9 left = 390 s
    assert sweep_progress(3, 12, 130.0) == "[reprorec] sweep: 3/12 cells done, 2m10s elapsed, ETA 6m30s"
    assert sweep_progress(0, 5, 2.0) == "[reprorec] sweep: 0/5 cells done, 2s elapsed, ETA –"
    assert sweep_progress(40, 50, 3 * 3600.0).endswith("3h00m elapsed, ETA 45m00s")


def test_plain_progress_lines_are_labelled_and_show_the_running_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    from benchmark.tuning.steps import LINE_INTERVAL_S, Progress

    p = Progress("neumf · ml-100k · seed 0", "ndcg_at_10", True, lines=True)
    p(0, 50, None)
    p.epoch(SimpleNamespace(epochs_run_=5, epochs=100))  # within the interval: no line
    p.last_line -= LINE_INTERVAL_S
    p.epoch(SimpleNamespace(epochs_run_=15, epochs=100))
    p(1, 50, 0.412345)  # a new best prints at once, and clears the epoch
    p(2, 50, 0.412345)  # no news within the interval: no line
    p(50, 50, 0.5)  # the last trial always prints
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert lines == [
        "[reprorec] neumf · ml-100k · seed 0: trial 0/50",
        "[reprorec] neumf · ml-100k · seed 0: trial 0/50, epoch 15/100",
        "[reprorec] neumf · ml-100k · seed 0: trial 1/50, best val ndcg_at_10=0.4123",
        "[reprorec] neumf · ml-100k · seed 0: trial 50/50, best val ndcg_at_10=0.5000",
    ]


def test_a_shipped_reference_file_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.registry import repo_root, shipped_file
    from benchmark.reporting.reference import read_reference

    monkeypatch.chdir(tmp_path)  # a user's own folder: the experiment's relative path is not there
    found = shipped_file("reports/reference/dacrema/neumf_ml1m.csv")
    assert found == repo_root() / "reports/reference/dacrema/neumf_ml1m.csv"
    assert any(r["model"] == "neumf" for r in read_reference(found))
    (tmp_path / "reports/reference/dacrema").mkdir(parents=True)
    (tmp_path / "reports/reference/dacrema/neumf_ml1m.csv").write_text("model,metric,cutoff,value,source\n")
    assert (
        shipped_file("reports/reference/dacrema/neumf_ml1m.csv").resolve().is_relative_to(tmp_path)
    )  # the user's own wins
