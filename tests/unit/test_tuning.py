"""Search spaces, early stopping and the tuner (in-process, synthetic objectives).

The small models defined here are also used by ``test_sweep*.py`` through ``conf/model`` entries
written into a temporary config folder (``cls: tests.unit.test_tuning.<Name>``).
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.config import TunerConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError
from benchmark.models import IterativeRecommender, Param, Recommender
from benchmark.registry import ModelSpec
from benchmark.tracking.studies import open_study
from benchmark.tuning.early_stopping import EarlyStopping
from benchmark.tuning.space import parse_space
from benchmark.tuning.tuner import tune
from tests.synthetic import random_matrix


# ---------------------------------------------------------------------------- test models
class _Popular(Recommender):
    """Scores every user with the training popularity (base of the toy models)."""

    def _fit_popularity(self, train: InteractionMatrix) -> None:
        self.n_items_ = train.n_items
        self.popularity_ = train.item_counts().astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(users), 1))


class Quadratic(_Popular):
    """A tunable toy: the validation value (computed by :func:`_quadratic_validate`) peaks at x=7."""

    param_specs: ClassVar[dict[str, Param]] = {"x": Param("int", low=0, high=20)}

    def __init__(self, x: int = 0, random_state: int = 0) -> None:
        self.x = x
        self.random_state = random_state

    def fit(self, train: InteractionMatrix) -> Quadratic:
        self.validate_params()
        if self.x % 5 == 3:  # some configurations crash: the trial fails, tuning goes on
            raise RuntimeError(f"x={self.x} crashes on purpose")
        self._fit_popularity(train)
        return self


def _quadratic_validate(model: Recommender) -> dict[str, float]:
    x = model.x  # type: ignore[attr-defined]
    return {"ndcg_at_10": float("nan") if x == 12 else -float((x - 7) ** 2), "recall_at_10": 0.5}


class Flaky(_Popular):
    """Fails for odd ``x`` (exception) and returns NaN scores for ``x == 0``; fine otherwise."""

    param_specs: ClassVar[dict[str, Param]] = {"x": Param("int", low=0, high=9)}

    def __init__(self, x: int = 2) -> None:
        self.x = x

    def fit(self, train: InteractionMatrix) -> Flaky:
        if self.x % 2:
            raise ValueError(f"flaky model fails for odd x={self.x}")
        self._fit_popularity(train)
        if self.x == 0:
            self.popularity_ = np.full_like(self.popularity_, np.nan)
        return self


class Broken(_Popular):
    """Always fails: its cell must end FAILED with the traceback."""

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2

    def fit(self, train: InteractionMatrix) -> Broken:
        raise RuntimeError("Broken.fit fails on purpose")


class Killer(_Popular):
    """Counts its fits in ``$REPROREC_TEST_COUNTER``; at fit number ``$REPROREC_TEST_KILL_AT`` sends
    its process ``$REPROREC_TEST_KILL_SIGNAL`` (default SIGKILL)."""

    param_specs: ClassVar[dict[str, Param]] = {"x": Param("int", low=0, high=9)}

    def __init__(self, x: int = 0) -> None:
        self.x = x

    def fit(self, train: InteractionMatrix) -> Killer:
        counter = os.environ.get("REPROREC_TEST_COUNTER")
        if counter:
            path = Path(counter)
            n = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(n))
            if str(n) == os.environ.get("REPROREC_TEST_KILL_AT"):
                os.kill(os.getpid(), getattr(signal, os.environ.get("REPROREC_TEST_KILL_SIGNAL", "SIGKILL")))
        self._fit_popularity(train)
        return self


class Curve(IterativeRecommender):
    """An iterative toy whose state is its epoch count: popularity scores up to ``peak`` epochs,
    reversed popularity afterwards, so validation is best (first) at the first validated epoch."""

    param_specs: ClassVar[dict[str, Param]] = {"epochs": Param("int", low=1, high=1000)}

    def __init__(self, epochs: int = 30, peak: int = 12, lr: float = 0.1) -> None:
        self.epochs = epochs
        self.peak = peak
        self.lr = lr

    def _init_fit(self, train: InteractionMatrix) -> None:
        self.n_items_ = train.n_items
        self.popularity_ = train.item_counts().astype(np.float32)
        self.state_ = 0

    def _fit_epoch(self, epoch: int) -> None:
        self.state_ = epoch

    def get_state(self) -> Any:
        return self.state_

    def set_state(self, state: Any) -> None:
        self.state_ = state

    def score(self, users: np.ndarray) -> np.ndarray:
        sign = 1.0 if self.state_ <= self.peak else -1.0
        return np.tile(sign * self.popularity_, (len(users), 1)).astype(np.float32)


class Blurred(Curve):
    """Curve with seeded noise of scale ``1 - lr`` on its scores: validation values differ by lr
    (whatever the peak), so pruners have something to compare."""

    def score(self, users: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(0).normal(size=(len(users), self.n_items_))
        scale = (1.0 - self.lr) * float(self.popularity_.max())
        return (super().score(users) + scale * noise).astype(np.float32)


def spec_of(cls: type[Recommender], space: dict[str, Any] | None = None, **params: Any) -> ModelSpec:
    return ModelSpec(
        name=cls.__name__.lower(),
        cls=f"{__name__}.{cls.__name__}",
        family="neural",
        params=params,
        search_space=space or {},
    )


# ---------------------------------------------------------------------------- search spaces
IALS_SPACE = {
    "factors": {"type": "int", "low": 1, "high": 200},
    "epsilon": {"type": "float", "low": 1e-3, "high": 10.0, "log": True, "when": {"scaling": ["log"]}},
    "scaling": {"type": "categorical", "choices": ["linear", "log"]},
    "alpha": {"type": "float", "low": 1e-3, "high": 50.0, "log": True},
}


def test_condition_is_sampled_after_its_parent_and_only_when_active() -> None:
    space = parse_space(IALS_SPACE)
    assert space.names.index("scaling") < space.names.index("epsilon")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        params = space.suggest(study.ask())
        assert ("epsilon" in params) == (params["scaling"] == "log")
        assert 1 <= params["factors"] <= 200 and isinstance(params["factors"], int)
        assert 1e-3 <= params["alpha"] <= 50.0
        seen.add(params["scaling"])
    assert seen == {"linear", "log"}


def test_log_scale_samples_every_decade_of_a_wide_range() -> None:
    space = parse_space({"l2": {"type": "float", "low": 1.0, "high": 1e7, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    decades = {int(math.log10(space.suggest(study.ask())["l2"])) for _ in range(300)}
    # Uniform on a linear scale would put ~90% of the draws in the top decade.
    assert decades == set(range(7))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"k": {"type": "integer", "low": 1, "high": 2}}, "type='integer' is not one of"),
        ({"k": {"type": "int", "low": 5, "high": 1}}, "low=5 is greater than high=1"),
        ({"k": {"type": "float", "low": 0, "high": 1, "log": True}}, "log=true needs low > 0"),
        ({"k": {"type": "int", "low": 1}}, "missing 'high'"),
        ({"k": {"type": "int", "low": 1.5, "high": 3}}, "must be integers"),
        ({"k": {"type": "int", "low": 1, "high": 3, "hihg": 4}}, "unknown key(s) ['hihg']"),
        ({"k": {"type": "categorical", "choices": []}}, "must be a non-empty list"),
        ({"k": {"type": "categorical", "choices": [1, 1]}}, "contain duplicates"),
        ({"k": {"type": "int", "low": 1, "high": 3, "when": {"sim": ["x"]}}}, "refers to 'sim'"),
        (
            {
                "sim": {"type": "categorical", "choices": ["a"]},
                "k": {"type": "int", "low": 1, "high": 3, "when": {"sim": ["b"]}},
            },
            "values ['b'] are not among the choices of 'sim'",
        ),
        (
            {
                "a": {"type": "categorical", "choices": [1], "when": {"b": [1]}},
                "b": {"type": "categorical", "choices": [1], "when": {"a": [1]}},
            },
            "circular 'when' conditions",
        ),
    ],
)
def test_bad_search_space_names_parameter_and_value(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_space(raw, source="conf/model/x.yaml: search_space")
    assert message in str(err.value)
    assert "conf/model/x.yaml" in str(err.value)


@settings(max_examples=30, deadline=None)
@given(low=st.integers(-50, 50), width=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_int_suggestions_stay_in_bounds(low: int, width: int, seed: int) -> None:
    space = parse_space({"k": {"type": "int", "low": low, "high": low + width}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(5):
        k = space.suggest(study.ask())["k"]
        assert low <= k <= low + width


# ---------------------------------------------------------------------------- early stopping
def _curve_values(peak: int) -> Any:
    # Validation rises until `peak`, then falls: 1 - |epoch - peak| / 100.
    return lambda m: 1.0 - abs(m.state_ - peak) / 100.0


def test_early_stopping_keeps_the_peak_epoch_and_stops_after_patience() -> None:
    train = random_matrix(20, 15, seed=0)
    model = Curve(epochs=200, peak=15)
    stopper = EarlyStopping(_curve_values(15), every=5, patience=3)
    model.fit(train, epoch_callback=stopper)
    assert stopper.best_epoch == 15
    assert stopper.best_value == pytest.approx(1.0)
    # validated at 5..15 (improving), then 20, 25, 30 without improvement: stop after epoch 30
    assert [e for e, _ in stopper.history] == [5, 10, 15, 20, 25, 30]
    assert model.epochs_run_ == 30
    assert model.state_ == 15  # the best state was restored


def test_early_stopping_validates_the_last_epoch_when_not_a_multiple() -> None:
    model = Curve(epochs=12, peak=100)
    stopper = EarlyStopping(_curve_values(100), every=5, patience=5)
    model.fit(random_matrix(10, 8, seed=1), epoch_callback=stopper)
    assert [e for e, _ in stopper.history] == [5, 10, 12]
    assert stopper.best_epoch == 12 and model.state_ == 12


def test_nan_validation_restores_the_best_state_or_fails_without_one() -> None:
    values = iter([0.2, 0.3, float("nan")])
    model = Curve(epochs=50)
    stopper = EarlyStopping(lambda m: next(values), every=5, patience=5)
    model.fit(random_matrix(10, 8, seed=1), epoch_callback=stopper)
    assert (stopper.best_epoch, model.state_, model.epochs_run_) == (10, 10, 15)
    with pytest.raises(ModelError, match="NaN at epoch 5"):
        Curve(epochs=50).fit(
            random_matrix(10, 8, seed=1), epoch_callback=EarlyStopping(lambda m: float("nan"))
        )


# ---------------------------------------------------------------------------- tuner
def _tuner(**kw: Any) -> TunerConfig:
    return TunerConfig(**{"n_trials": 12, "n_startup_trials": 4, "sampler": "tpe", **kw})


SPACE_X = {"x": {"type": "int", "low": 0, "high": 20}}


def test_failed_and_nan_trials_are_marked_failed_and_tuning_goes_on() -> None:
    train = random_matrix(20, 15, seed=0)
    result = tune(
        spec_of(Quadratic),
        parse_space(SPACE_X),
        train,
        _quadratic_validate,
        _tuner(n_trials=25, sampler="random"),
        seed=3,
    )
    table = result.trials
    assert len(table) == 25 == result.n_complete + result.n_failed
    failed = table[table.state == "failed"]
    # x % 5 == 3 raises, x == 12 gives NaN: exactly those trials failed, each with its reason
    assert set(failed["param.x"]) == {x for x in table["param.x"] if x % 5 == 3 or x == 12}
    assert result.n_failed > 0
    assert all(("crashes on purpose" in e) or ("diverged" in e) for e in failed.error)
    complete = table[table.state == "complete"]
    assert result.best_value == complete.value.max()
    best_row = complete.sort_values("value", ascending=False, kind="stable").iloc[0]
    assert result.best_params == {"x": int(best_row["param.x"])}


def test_every_trial_failing_raises_model_error() -> None:
    with pytest.raises(ModelError, match="all 3 tuning trials failed"):
        tune(
            spec_of(Broken),
            parse_space({"l2": {"type": "float", "low": 1, "high": 2}}),
            random_matrix(10, 8),
            lambda m: {"ndcg_at_10": 0.0},
            _tuner(n_trials=3),
            seed=0,
        )


def test_unknown_tuning_metric_stops_at_once_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match=r"tuner.metric='ndcg@10'.*recall_at_10"):
        tune(
            spec_of(Quadratic),
            parse_space(SPACE_X),
            random_matrix(10, 8),
            _quadratic_validate,
            _tuner(metric="ndcg@10"),
            seed=0,
        )


def test_search_space_typo_is_caught_before_any_fit() -> None:
    with pytest.raises(ConfigError, match=r"tunes \['y'\], which are not hyperparameters"):
        tune(
            spec_of(Quadratic),
            parse_space({"y": {"type": "int", "low": 0, "high": 1}}),
            random_matrix(10, 8),
            _quadratic_validate,
            _tuner(),
            seed=0,
        )


def test_interrupted_study_resumes_to_the_same_trials_as_an_uninterrupted_one(tmp_path: Path) -> None:
    train = random_matrix(20, 15, seed=0)
    spec, space = spec_of(Quadratic), parse_space(SPACE_X)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    whole = tune(
        spec, space, train, _quadratic_validate, _tuner(), seed=11, study_name="whole", storage=storage
    )
    # "killed" after 5 trials, with a sixth left RUNNING by the dead process
    tune(
        spec,
        space,
        train,
        _quadratic_validate,
        _tuner(n_trials=5),
        seed=11,
        study_name="cut",
        storage=storage,
    )
    open_study("cut", storage, "maximize").ask()
    seen: list[int] = []
    resumed = tune(
        spec,
        space,
        train,
        _quadratic_validate,
        _tuner(),
        seed=11,
        study_name="cut",
        storage=storage,
        on_trial=lambda r: seen.append(r.number),
    )
    assert list(resumed.trials["param.x"]) == list(whole.trials["param.x"])
    assert resumed.best_params == whole.best_params
    # the 5 earlier trials were reported as resumed, the interrupted one (number 5) was not run again
    assert seen == [0, 1, 2, 3, 4, *range(6, 13)]
    assert list(resumed.trials.number) == [0, 1, 2, 3, 4, *range(6, 13)]


def test_same_seed_same_trials_other_seed_other_trials() -> None:
    train = random_matrix(20, 15, seed=0)
    runs = [
        tune(spec_of(Quadratic), parse_space(SPACE_X), train, _quadratic_validate, _tuner(), seed=s).trials
        for s in (5, 5, 6)
    ]
    assert list(runs[0]["param.x"]) == list(runs[1]["param.x"])
    assert list(runs[0]["param.x"]) != list(runs[2]["param.x"])


def test_iterative_trial_stores_its_best_epoch() -> None:
    train = random_matrix(20, 15, seed=0)
    space = parse_space({"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}})
    result = tune(
        spec_of(Curve, epochs=100, peak=23),
        space,
        train,
        lambda m: {"ndcg_at_10": 1.0 - abs(m.state_ - 23) / 100.0},  # type: ignore[attr-defined]
        _tuner(n_trials=2, validate_every=5, patience=2),
        seed=0,
    )
    # validated at 5, 10, 15, 20, 25 (best: 25 is 2 away from 23, 20 is 3 away), 30, 35 -> stop
    assert result.best_epoch == 25
    assert list(result.trials.best_epoch) == [25, 25]


def test_empty_space_runs_one_trial_of_the_defaults() -> None:
    result = tune(
        spec_of(Quadratic, x=7),
        parse_space({}),
        random_matrix(10, 8),
        _quadratic_validate,
        _tuner(n_trials=50),
        seed=0,
    )
    assert len(result.trials) == 1 and result.best_value == 0.0 and result.best_params == {}


# ---------------------------------------------------------------------------- pruning
def test_a_pruning_report_stops_at_the_best_state_so_far() -> None:
    values = iter([0.5, 0.4, 0.3])
    model = Curve(epochs=50, peak=1000)
    stopper = EarlyStopping(lambda m: next(values), every=5, patience=5, report=lambda e, v: e == 10)
    model.fit(random_matrix(10, 8, seed=1), epoch_callback=stopper)
    assert stopper.pruned and [e for e, _ in stopper.history] == [5, 10]
    assert (stopper.best_epoch, model.state_, model.epochs_run_) == (5, 5, 10)


def _rising(m: Recommender) -> dict[str, float]:
    # validation rises with the epoch until 50, scaled by lr: a low lr trails at every epoch
    return {"ndcg_at_10": m.lr * min(m.state_, 50) / 50}  # type: ignore[attr-defined]


def test_median_pruner_stops_exactly_the_trials_below_the_median_and_counts_them() -> None:
    space = parse_space({"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}})
    config = _tuner(n_trials=20, sampler="random", validate_every=5, patience=2, pruner="median")
    result = tune(spec_of(Curve, epochs=60, peak=1000), space, random_matrix(20, 15), _rising, config, seed=4)
    table = result.trials.sort_values("number")
    assert len(table) == 20 == result.n_complete + result.n_pruned and result.n_failed == 0
    # Optuna's MedianPruner (5 start-up trials): a trial is pruned at its first validation
    # (epoch 5) iff its value there is below the median of the completed trials' values there
    expected, complete_lr = [], []
    for lr in table["param.lr"]:
        prune = len(complete_lr) >= 5 and lr < float(np.median(complete_lr))
        expected.append("pruned" if prune else "complete")
        if not prune:
            complete_lr.append(lr)
    assert list(table.state) == expected and 0 < result.n_pruned < 15
    assert set(table[table.state == "pruned"].best_epoch) == {5}
    assert set(table[table.state == "complete"].best_epoch) == {50}
    assert table[table.state == "pruned"].value.isna().all()
    assert result.best_params["lr"] == max(complete_lr)
    # deterministic: the same seed prunes the same trials
    again = tune(spec_of(Curve, epochs=60, peak=1000), space, random_matrix(20, 15), _rising, config, seed=4)
    assert list(again.trials.state) == list(result.trials.state)


def test_pruner_off_reports_nothing_and_unknown_pruner_is_refused(tmp_path: Path) -> None:
    space = parse_space({"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tune(
        spec_of(Curve, epochs=60, peak=1000),
        space,
        random_matrix(20, 15),
        _rising,
        _tuner(n_trials=8, sampler="random", validate_every=5, patience=2),
        seed=4,
        study_name="off",
        storage=storage,
    )
    assert result.n_pruned == 0 and set(result.trials.state) == {"complete"}
    # the default protocol's study holds no intermediate values (nothing for a pruner to use)
    assert all(not t.intermediate_values for t in open_study("off", storage, "maximize").trials)
    with pytest.raises(ConfigError, match=r"tuner.pruner='asha' is not one of \['hyperband', 'median'"):
        tune(spec_of(Curve), space, random_matrix(20, 15), _rising, _tuner(pruner="asha"), seed=0)


def test_a_storage_whose_driver_is_not_installed_names_the_package_and_the_extra() -> None:
    from benchmark.tracking.studies import open_storage

    # pg8000 is not a dependency: the same error as postgresql+psycopg2 without reprorec[cluster]
    with pytest.raises(ConfigError, match=r"driver of 'postgresql\+pg8000'.*reprorec\[cluster\]") as exc:
        open_storage("postgresql+pg8000://user:secret@127.0.0.1:1/optuna")
    assert "secret" not in str(exc.value)
