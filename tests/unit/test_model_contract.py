"""The model contract, checked for every model registered in ``conf/model/*.yaml``.

A new model (one module + one YAML) passes this suite without editing it: the settings and the
one exemption the suite needs are declared on the class as :class:`benchmark.models.ModelTags`
(``test_params``: small, fast hyperparameters; ``personalised=False``: the planted-structure check
does not apply). Without ``test_params`` the suite caps epochs and factor counts (GENERIC_CAPS).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import IterativeRecommender, Param, Recommender
from benchmark.registry import FAMILIES, ModelSpec, model_specs
from benchmark.tuning.space import check_space_against_model, parse_space
from tests.synthetic import dense, planted_blocks, random_matrix

SPECS = model_specs()
NAMES = sorted(SPECS)
ITERATIVE = [n for n in NAMES if SPECS[n].load_class().iterative]

#: Caps applied to any model without ``tags.test_params``, so a new model's defaults do not slow the suite.
GENERIC_CAPS = {"epochs": 20, "factors": 8, "n_factors": 8, "embedding_size": 8}
#: Applied to every model that has the parameter: CPU, one thread (reproducible, and the suite
#: runs on a shared machine).
EVERYWHERE = {"device": "cpu", "num_threads": 1}


def contract_params(spec: ModelSpec) -> dict[str, Any]:
    """The model's defaults with its ``tags.test_params`` (else GENERIC_CAPS) applied."""
    cls = spec.load_class()
    names = set(cls._param_names())
    params = {**spec.defaults(), **spec.params}
    params.update({k: v for k, v in EVERYWHERE.items() if k in names})
    if cls.tags.test_params:
        params.update(cls.tags.test_params)
    else:
        for k, cap in GENERIC_CAPS.items():
            if k in names and (params.get(k) is None or params[k] > cap):
                params[k] = cap
    return params


def make(name: str, **overrides: Any) -> Recommender:
    spec = SPECS[name]
    return spec.build(**{**contract_params(spec), **overrides})


def without_user_and_item(train: InteractionMatrix, user: int, item: int) -> InteractionMatrix:
    users = train.row_indices()
    keep = (users != user) & (train.matrix.indices != item)
    return train.select(keep, name=f"{train.name} without user {user}, item {item}")


RANDOM = random_matrix(n_users=30, n_items=25, density=0.2, seed=7)
PLANTED = planted_blocks()
#: user 0 and item 7 have no training data
HOLES = without_user_and_item(PLANTED.train, user=0, item=7)
DATA = {"random": RANDOM, "planted": PLANTED.train, "holes": HOLES}


@functools.cache
def fitted(name: str, data: str) -> tuple[Recommender, Any]:
    """(model, what fit returned) for the contract parameters, fitted once per test session."""
    model = make(name)
    return model, model.fit(DATA[data])


# ----------------------------------------------------------------------------- registry and YAML
@pytest.mark.parametrize("name", NAMES)
def test_yaml_defaults_are_valid_hyperparameters(name: str) -> None:
    spec = SPECS[name]
    assert spec.family in FAMILIES
    model = spec.build()
    model.validate_params()
    assert model.get_params() == {**spec.defaults(), **spec.params}


@pytest.mark.parametrize("name", NAMES)
def test_yaml_holds_only_what_an_experiment_chooses(name: str) -> None:
    # a hyperparameter is declared once, by the class (name, default; type and range in
    # param_specs): the YAML may override a default, never restate it
    spec = SPECS[name]
    defaults = spec.defaults()
    restated = {k: v for k, v in spec.params.items() if k in defaults and defaults[k] == v}
    if spec.variant_of is not None:  # a named variant's params are what it is: they hold whatever
        restated = {}  # the class default becomes (itemknn_cosine stays cosine)
    assert restated == {}, f"{spec.path}: params restates class defaults {restated}"
    assert set(spec.params) <= set(defaults), f"{spec.path}: params names unknown hyperparameters"


@pytest.mark.parametrize("name", NAMES)
def test_search_space_lies_inside_the_allowed_values(name: str) -> None:
    spec = SPECS[name]
    cls = spec.load_class()
    names = set(cls._param_names())
    for param, dist in spec.search_space.items():
        assert param in names, f"{name}: search_space names unknown hyperparameter {param!r}"
        assert dist["type"] in ("int", "float", "categorical"), (name, param, dist)
        check: Param | None = cls.param_specs.get(param)
        if dist["type"] == "categorical":
            values = list(dist["choices"])
        else:
            for bound in ("low", "high"):
                # YAML 1.1 reads 1.0e7 as a string: write 1.0e+7.
                assert isinstance(dist[bound], (int, float)), f"{name}: {param}.{bound}={dist[bound]!r}"
            assert dist["low"] <= dist["high"], (name, param, dist)
            values = [dist["low"], dist["high"]]
            if dist["type"] == "float":
                values = [float(v) for v in values]
        for value in values:
            if check is not None:
                check.check(name, param, value)  # raises ConfigError when outside the model's range
        for cond_param, allowed in (dist.get("when") or {}).items():
            assert cond_param in spec.search_space, f"{name}: {param} depends on unsearched {cond_param}"
            assert set(allowed) <= set(spec.search_space[cond_param].get("choices", allowed))
    # the tuner reads the same mapping
    check_space_against_model(parse_space(spec.search_space, source=spec.path), sorted(names), model=name)
    for iterative_name in ("epochs",):
        if cls.iterative:
            assert iterative_name not in spec.search_space, f"{name}: epochs is chosen by early stopping"
            assert spec.defaults()[iterative_name] >= 1, f"{name}: the class states the maximum epochs"


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("name", NAMES)
def test_get_params_round_trips_through_clone(name: str) -> None:
    model = make(name)
    copy = model.clone()
    assert copy is not model
    assert type(copy) is type(model)
    assert copy.get_params() == model.get_params()
    assert set(model.get_params()) == set(type(model)._param_names())


@pytest.mark.parametrize("name", NAMES)
def test_set_params_of_unknown_name_raises_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="no_such_hyperparameter"):
        make(name).set_params(no_such_hyperparameter=1)


def _bad_values(model: Recommender) -> list[tuple[str, Any]]:
    """One out-of-range (or out-of-choices) value and one wrongly-typed value per declared param."""
    bad: list[tuple[str, Any]] = []
    for pname, p in type(model).param_specs.items():
        if p.choices is not None:
            bad.append((pname, "no-such-choice"))
        elif p.low is not None:
            below = p.low - 1 if p.kind == "int" else p.low - max(1.0, abs(p.low))
            bad.append((pname, below))
        elif p.high is not None:
            bad.append((pname, p.high + 1))
        if p.kind in ("int", "float"):
            bad.append((pname, "not-a-number"))
        elif p.kind == "bool":
            bad.append((pname, "yes"))
    return bad


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_or_wrong_type_raises_config_error_naming_it(name: str) -> None:
    model = make(name)
    bad = _bad_values(model)
    if not bad:
        assert not model.get_params(), f"{name} has hyperparameters but no param_specs"
        pytest.skip(f"{name} has no hyperparameters")
    for pname, value in bad:
        with pytest.raises(ConfigError) as info:
            model.clone(**{pname: value}).fit(RANDOM)
        message = str(info.value)
        assert type(model).__name__ in message and pname in message and repr(value) in message, message


# ----------------------------------------------------------------------------- fit and score
@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_scores_are_finite_float32(name: str) -> None:
    model, returned = fitted(name, "random")
    assert returned is model
    users = np.arange(RANDOM.n_users)
    scores = model.score(users)
    assert isinstance(scores, np.ndarray)
    assert scores.dtype == np.float32
    assert scores.shape == (RANDOM.n_users, RANDOM.n_items)
    assert np.isfinite(scores).all()
    state = [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    assert state, f"{name}: fitted state must end in '_'"


@pytest.mark.parametrize("name", NAMES)
def test_scores_of_a_batch_equal_the_rows_of_all_users(name: str) -> None:
    model, _ = fitted(name, "random")
    everyone = model.score(np.arange(RANDOM.n_users))
    batch = np.array([17, 3, 3, 29, 0])
    np.testing.assert_allclose(model.score(batch), everyone[batch], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_same_hyperparameters_and_seed_give_identical_scores(name: str) -> None:
    users = np.arange(RANDOM.n_users)
    first = fitted(name, "random")[0].score(users)
    second = make(name).fit(RANDOM).score(users)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_user_and_item_without_training_data_get_finite_scores(name: str) -> None:
    assert HOLES.user_counts()[0] == 0 and HOLES.item_counts()[7] == 0
    model, _ = fitted(name, "holes")
    scores = model.score(np.array([0, 1, 5]))
    assert scores.shape == (3, HOLES.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_planted_heldout_item_is_top1_among_unseen_items_for_every_user(name: str) -> None:
    if not SPECS[name].load_class().tags.personalised:
        pytest.skip(f"not applicable to {name}: its ranking ignores the user's history (tags.personalised)")
    train, test = dense(PLANTED.train) > 0, dense(PLANTED.test) > 0
    scores = fitted(name, "planted")[0].score(np.arange(PLANTED.train.n_users)).astype(np.float64)
    scores[train] = -np.inf
    held = scores[test]  # one held-out item per user, in user order
    scores[test] = -np.inf
    runner_up = scores.max(axis=1)
    losers = np.flatnonzero(held <= runner_up)
    assert len(losers) == 0, f"{name}: held-out item not strictly top-1 for users {losers.tolist()}"


@pytest.mark.parametrize("name", NAMES)
def test_only_non_personalised_models_skip_planted_check(name: str) -> None:
    spec = SPECS[name]
    assert spec.load_class().tags.personalised == (spec.family != "non-personalised"), name


@pytest.mark.parametrize("name", NAMES)
def test_test_params_name_hyperparameters_the_model_takes(name: str) -> None:
    cls = SPECS[name].load_class()
    assert set(cls.tags.test_params) <= set(cls._param_names()), f"{name}: tags.test_params"


# ----------------------------------------------------------------------------- iterative models
@pytest.mark.parametrize("name", ITERATIVE)
def test_epoch_callback_returning_true_stops_training_at_that_epoch(name: str) -> None:
    seen: list[int] = []

    def stop_at_two(model: IterativeRecommender, epoch: int) -> bool:
        seen.append(epoch)
        return epoch == 2

    model = make(name, epochs=4)
    assert isinstance(model, IterativeRecommender)
    assert model.fit(PLANTED.train, epoch_callback=stop_at_two) is model
    assert seen == [1, 2]
    assert model.epochs_run_ == 2


@pytest.mark.parametrize("name", ITERATIVE)
def test_set_state_restores_the_scores_of_an_earlier_epoch(name: str) -> None:
    users = np.arange(PLANTED.train.n_users)
    saved: dict[str, Any] = {}

    def keep_epoch_two(model: IterativeRecommender, epoch: int) -> bool:
        if epoch == 2:
            saved["state"], saved["scores"] = model.get_state(), model.score(users)
        if epoch == 5:
            assert not np.array_equal(model.score(users), saved["scores"]), "training had no effect"
            model.set_state(saved["state"])
            return True
        return False

    model = make(name, epochs=6)
    assert isinstance(model, IterativeRecommender)
    model.fit(PLANTED.train, epoch_callback=keep_epoch_two)
    assert model.epochs_run_ == 5
    np.testing.assert_array_equal(model.score(users), saved["scores"])


@pytest.mark.parametrize("name", ITERATIVE)
def test_stopping_after_k_epochs_equals_training_k_epochs(name: str) -> None:
    users = np.arange(PLANTED.train.n_users)
    stopped, three = make(name, epochs=5), make(name, epochs=3)
    assert isinstance(stopped, IterativeRecommender)
    stopped.fit(PLANTED.train, epoch_callback=lambda m, e: e == 3)
    three.fit(PLANTED.train)
    np.testing.assert_array_equal(stopped.score(users), three.score(users))
