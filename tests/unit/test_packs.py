"""Trial packs (``tuner.pack_size``): a packed member ends exactly as its solo run.

Checked for every neural model in the registry (packable ones train as one batched model, the
others in turn), for the zero-padding of shapes (it stays exactly zero), and through the tuner
(each packed trial's validation value is its solo run's; an interrupted pack resumes to the same
trials as an uninterrupted sweep).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark.config import TunerConfig
from benchmark.errors import ConfigError
from benchmark.models import IterativeRecommender, PackMember, Recommender
from benchmark.registry import model_specs
from benchmark.tracking.studies import open_study
from benchmark.tuning.early_stopping import EarlyStopping
from benchmark.tuning.space import parse_space
from benchmark.tuning.tuner import check_tuner_config, tune
from tests.synthetic import random_matrix
from tests.unit.test_model_contract import contract_params
from tests.unit.test_tuning import SPACE_X, Quadratic, _quadratic_validate, _tuner, spec_of

SPECS = model_specs()
NEURAL = sorted(n for n, s in SPECS.items() if s.family == "neural")
TRAIN = random_matrix(n_users=40, n_items=30, density=0.2, seed=3)
HELD = random_matrix(n_users=40, n_items=30, density=0.05, seed=4).matrix.tocoo()
USERS = np.arange(TRAIN.n_users)


def _held_out_score(model: Recommender) -> float:
    """A validation value that any change to the scores changes: mean score of held-out pairs."""
    scores = model.score(USERS)
    return float(scores[HELD.row, HELD.col].mean() - scores.mean())


def _variants(name: str, *, shapes: bool = False) -> list[dict[str, Any]]:
    """Three configurations of a model that differ in learning rate, negatives, regularisation
    and epoch cap; with ``shapes`` also in what a pack must pad (factors, layer widths, batch)."""
    spec = SPECS[name]
    base = {**contract_params(spec), "random_state": 5}
    base["epochs"] = min(int(base.get("epochs", 6)), 6)
    names = set(spec.load_class()._param_names())
    out = []
    for j, lr_scale in enumerate([1.0, 0.5, 2.0]):
        params = dict(base, learning_rate=base["learning_rate"] * lr_scale, epochs=base["epochs"] + j)
        if shapes:
            params["batch_size"] = base["batch_size"] * [1, 2, 1][j]
            if "factors" in names:
                params["factors"] = [8, 4, 12][j]
            if "layers" in names and name != "gmf":
                params["layers"] = ["16,8", "8,4", "24,6"][j]
        if "n_negatives" in names:
            params["n_negatives"] = [1, 3, 2][j]
        if "reg" in names:
            params["reg"] = [0.0, 1e-3, 0.0][j]
        out.append(params)
    return out


def _solo(name: str, configs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for params in configs:
        model, stopper = SPECS[name].build(**params), _stopper()
        assert isinstance(model, IterativeRecommender)
        model.fit(TRAIN, epoch_callback=stopper)
        out.append((model.score(USERS), stopper.history, stopper.best_epoch, model.epochs_run_))
    return out


def _assert_as_solo(members: list[PackMember], solo: list[tuple[Any, ...]]) -> None:
    for member, (scores, history, best_epoch, epochs_run) in zip(members, solo):
        assert member.error is None
        stopper = member.callback
        assert isinstance(stopper, EarlyStopping)
        assert stopper.best_epoch == best_epoch
        assert member.model.epochs_run_ == epochs_run
        assert [e for e, _ in stopper.history] == [e for e, _ in history]
        np.testing.assert_allclose(
            [v for _, v in stopper.history], [v for _, v in history], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(member.model.score(USERS), scores, rtol=1e-4, atol=1e-5)
        assert member.seconds > 0


def _stopper() -> EarlyStopping:
    return EarlyStopping(_held_out_score, every=1, patience=2)


@pytest.mark.parametrize("name", NEURAL)
def test_a_packed_member_ends_as_its_solo_run(name: str) -> None:
    spec = SPECS[name]
    configs = _variants(name)
    solo = _solo(name, configs)
    members = [PackMember(spec.build(**params), _stopper()) for params in configs]
    # packed where the class packs these configurations together (SpectralCF's default sparse
    # filter trains alone on CPU: see its pack_key)
    packs = (
        spec.load_class().packable and len({getattr(m.model, "pack_key", lambda: ())() for m in members}) == 1
    )
    packs = packs and getattr(members[0].model, "pack_key", lambda: ())() is not None
    type(members[0].model).fit_pack(members, TRAIN)
    assert [m.packed for m in members] == [packs] * 3
    _assert_as_solo(members, solo)


NCF = [n for n in NEURAL if SPECS[n].load_class().packable and n in ("gmf", "mlp", "neumf")]


@pytest.mark.parametrize("name", NCF)
def test_a_member_padded_to_larger_shapes_ends_as_its_solo_run(name: str) -> None:
    """Factors, layer widths and batch sizes differ: zero-padded in one pack (the CUDA policy)."""
    from neural.neumf import _NCFPack

    configs = _variants(name, shapes=True)
    solo = _solo(name, configs)
    members = [PackMember(SPECS[name].build(**params), _stopper()) for params in configs]
    # on CPU fit_pack would run these apart (pack_key: unequal shapes); the pack itself pads
    assert len({m.model.pack_key() for m in members}) == 3  # type: ignore[attr-defined]
    _NCFPack(members, TRAIN).run()
    assert all(m.packed for m in members)
    _assert_as_solo(members, solo)


def test_a_failing_member_leaves_the_pack_and_the_others_end_as_their_solo_runs() -> None:
    spec = SPECS["neumf"]
    configs = _variants("neumf")
    solo = _solo("neumf", configs[1:])

    def crash(model: IterativeRecommender, epoch: int) -> bool:
        if epoch == 2:
            raise RuntimeError("member 0 fails at epoch 2")
        return False

    members = [PackMember(spec.build(**configs[0]), crash)]
    members += [PackMember(spec.build(**c), _stopper()) for c in configs[1:]]
    type(members[0].model).fit_pack(members, TRAIN)
    assert isinstance(members[0].error, RuntimeError) and members[0].model.epochs_run_ == 2
    _assert_as_solo(members[1:], solo)


def test_zero_padding_of_smaller_members_stays_exactly_zero() -> None:
    from neural.neumf import NeuMF, _NCFPack

    configs = [
        {"factors": 4, "layers": "8,4", "batch_size": 16},
        {"factors": 12, "layers": "24,6", "batch_size": 48},
    ]
    members = [
        PackMember(NeuMF(**c, epochs=4, learning_rate=0.01, device="cpu", num_threads=1, reg=1e-3))
        for c in configs
    ]
    pack = _NCFPack(members, TRAIN)
    seen: list[int] = []

    def check(model: IterativeRecommender, epoch: int) -> bool:
        row = pack._rows.index(0)
        p = pack.params
        padded = [
            p["gmf_user"][row, :, 4:],
            p["gmf_item"][row, :, 4:],
            p["out_gmf"][row, 4:],
            p["mlp_user"][row, :, 4:],
            p["mlp_item"][row, :, 4:],
            p["w0_user"][row, 4:, :],
            p["w0_user"][row, :, 4:],
            p["w0_item"][row, :, 4:],
            p["b0"][row, 4:],
            p["out_mlp"][row, 4:],
        ]
        assert all(bool((t == 0).all()) for t in padded)
        assert bool((p["gmf_user"][row, :, :4] != 0).any())
        seen.append(epoch)
        return False

    members[0].callback = check
    pack.run()
    assert seen == [1, 2, 3, 4]
    assert members[0].error is None and members[1].error is None


def test_spectralcf_members_of_any_shape_share_the_filter_product_and_end_as_their_solo_runs() -> None:
    """Embedding sizes, depths, batch sizes and samplings in one pack: only the filter product is
    shared, so nothing is padded. On CPU fit_pack packs the dense random-walk filter; the sparse
    symmetric one (packed on CUDA: the pack itself, below) and its low-pass variant train alone."""
    from neural.spectralcf import _SpectralPack

    spec = SPECS["spectralcf"]
    base = {**contract_params(spec), "random_state": 5, "epochs": 6}
    shapes = [
        {"embedding_size": 8, "n_layers": 1, "batch_size": 16},
        {"embedding_size": 4, "n_layers": 3, "batch_size": 64, "sampling": "users", "rms_init": 1.0},
        {"embedding_size": 12, "n_layers": 2, "batch_size": 32, "reg": 0.01, "learning_rate": 0.02},
    ]
    dense = [dict(base, **c, laplacian="random_walk") for c in shapes]
    sparse = [dict(base, **c) for c in shapes] + [dict(base, n_eigenvectors=10)]
    solo = _solo("spectralcf", dense + sparse)
    members = [PackMember(spec.build(**c), _stopper()) for c in dense + sparse]
    type(members[0].model).fit_pack(members, TRAIN)
    assert [m.packed for m in members] == [True] * 3 + [False] * 4
    _assert_as_solo(members, solo)
    # the epochs differed (early stopping, patience 2): members left the pack at different steps
    assert len({m.model.epochs_run_ for m in members[:3]}) > 1
    sparse_members = [PackMember(spec.build(**c), _stopper()) for c in sparse[:3]]
    _SpectralPack(sparse_members, TRAIN).run()
    assert all(m.packed for m in sparse_members)
    _assert_as_solo(sparse_members, solo[3:6])


def test_a_spectralcf_pack_over_its_memory_budget_is_split() -> None:
    from neural.spectralcf import _split_by_memory

    spec = SPECS["spectralcf"]
    members = [PackMember(spec.build(**dict(contract_params(spec), embedding_size=d))) for d in (8, 8, 16, 4)]
    n = TRAIN.n_users + TRAIN.n_items
    need = [m.model._member_bytes(n) for m in members]  # type: ignore[attr-defined]
    assert need[2] > need[0] > need[3]
    parts = _split_by_memory(members, TRAIN, need[0] + need[1])
    assert [[members.index(m) for m in p] for p in parts] == [[0, 1], [2], [3]]


def test_pretrained_neumf_and_other_depths_run_apart_and_still_match() -> None:
    spec = SPECS["neumf"]
    base = {**contract_params(spec), "epochs": 3, "pretrain_epochs": 2}
    configs = [
        dict(base, layers="16,8"),
        dict(base, layers="16,8,4"),
        dict(base, layers="16,8", pretrain=True),
    ]
    members = [PackMember(spec.build(**c)) for c in configs]
    type(members[0].model).fit_pack(members, TRAIN)
    # a group of one (depth 3) and the pre-trained member run alone; nothing to pack them with
    assert [m.packed for m in members] == [False, False, False]
    for member, params in zip(members, configs):
        solo = spec.build(**params).fit(TRAIN)
        np.testing.assert_allclose(member.model.score(USERS), solo.score(USERS), rtol=1e-5, atol=1e-6)


def test_a_pack_over_its_memory_budget_is_trained_as_smaller_packs_with_the_same_results() -> None:
    from neural.neumf import _fit_in_memory, pack_bytes

    spec = SPECS["neumf"]
    configs = [
        dict(c, factors=8, layers="16,8", batch_size=32) for c in _variants("neumf") + _variants("neumf")[:1]
    ]
    members = [PackMember(spec.build(**c), _stopper()) for c in configs]
    two = pack_bytes([m.model for m in members[:2]], TRAIN)  # type: ignore[misc]
    assert pack_bytes([m.model for m in members], TRAIN) > two  # type: ignore[misc]
    parts = _fit_in_memory(members, TRAIN, two)
    assert [len(p) for p in parts] == [2, 2]
    solo = _solo("neumf", configs)
    type(members[0].model).fit_pack(members, TRAIN, memory_bytes=two)
    assert all(m.packed for m in members)
    _assert_as_solo(members, solo)


NCF_SPACE = {
    "factors": {"type": "categorical", "choices": [4, 8]},
    "learning_rate": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "n_negatives": {"type": "int", "low": 1, "high": 3},
}


def _validate(model: Recommender) -> dict[str, float]:
    return {"held": _held_out_score(model)}


def test_every_packed_trial_of_a_tuned_cell_equals_its_solo_run() -> None:
    spec = SPECS["gmf"]
    fixed = {"epochs": 6, "device": "cpu", "num_threads": 1, "random_state": 1}
    config = TunerConfig(
        n_trials=6, n_startup_trials=3, metric="held", validate_every=1, patience=2, pack_size=3
    )
    result = tune(spec, parse_space(NCF_SPACE), TRAIN, _validate, config, seed=3, fixed_params=fixed)
    assert len(result.trials) == 6 and (result.trials.state == "complete").all()
    for _, row in result.trials.iterrows():
        params = {k[len("param.") :]: v for k, v in row.items() if str(k).startswith("param.")}
        params = {
            k: int(v) if k in ("factors", "batch_size", "n_negatives") else v for k, v in params.items()
        }
        model, stopper = (
            spec.build(**{**fixed, **params}),
            EarlyStopping(_held_out_score, every=1, patience=2),
        )
        model.fit(TRAIN, epoch_callback=stopper)
        assert stopper.best_epoch == row.best_epoch
        assert stopper.best_value == pytest.approx(row.value, rel=1e-4, abs=1e-6)


def test_an_interrupted_pack_resumes_to_the_trials_of_an_uninterrupted_sweep(tmp_path: Path) -> None:
    spec, space = spec_of(Quadratic), parse_space(SPACE_X)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    whole = tune(
        spec,
        space,
        TRAIN,
        _quadratic_validate,
        _tuner(pack_size=3),
        seed=11,
        study_name="whole",
        storage=storage,
    )
    # "killed" after two packs, with two trials of the third left RUNNING by the dead process
    tune(
        spec,
        space,
        TRAIN,
        _quadratic_validate,
        _tuner(n_trials=6, pack_size=3),
        seed=11,
        study_name="cut",
        storage=storage,
    )
    study = open_study("cut", storage, "maximize")
    study.ask(), study.ask()
    resumed = tune(
        spec,
        space,
        TRAIN,
        _quadratic_validate,
        _tuner(pack_size=3),
        seed=11,
        study_name="cut",
        storage=storage,
    )
    assert list(resumed.trials["param.x"]) == list(whole.trials["param.x"])
    assert resumed.best_params == whole.best_params
    # packs sample differently from one-at-a-time (constant liar, told per pack) ...
    sequential = tune(spec, space, TRAIN, _quadratic_validate, _tuner(), seed=11)
    assert list(sequential.trials["param.x"]) != list(whole.trials["param.x"])
    # ... and pack_size=1 is the sequential protocol itself
    one = tune(spec, space, TRAIN, _quadratic_validate, _tuner(pack_size=1), seed=11)
    assert list(one.trials["param.x"]) == list(sequential.trials["param.x"])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"pack_size": 0}, "tuner.pack_size=0 must be >= 1"),
        ({"pack_size": 2, "workers": 2}, "use one or the other"),
    ],
)
def test_bad_pack_settings_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_tuner_config(TunerConfig(**kw))
