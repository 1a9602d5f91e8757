"""The leakage audit of a split, logged with every cell and shown in the protocol card.

Three kinds of leakage make offline results look better than a deployed model could be
(Ji, Sun, Zhang & Li, "A Critical Study on Data Leakage in Recommender System Offline Evaluation",
ACM TOIS 41(3), 2023; Meng, McCreadie, Macdonald & Ounis, "Exploring Data Splitting Strategies for
the Evaluation of Recommendation Models", RecSys 2020):

* **shared pairs**: a (user, item) in two parts. :meth:`Split.check` refuses such splits; the audit
  records the counts (all 0) so that the card states what was checked;
* **future data** (timestamped data only): the training data (train + validation, what the final
  model is fitted on) holds interactions that happen *after* a test user's first test interaction:
  the model learns from the future of the moment it is asked to predict. Measured three ways:

  - ``after_each_test_user``: for each test user, the share of all training interactions later
    than that user's first test interaction, averaged over test users (Ji et al.'s measure; 0 for
    a global temporal split, large for random splits);
  - ``own_after_first_test``: the share of the test users' own training interactions that are
    later than their own first test interaction (per-user random splits leak here too);
  - ``after_split_point``: the share of training interactions later than the earliest test
    interaction (the global split point);

  each is given for test (against train + validation) and for validation (against train, what
  tuning saw); above :data:`WARN_SHARE` the card prints a warning. Leakage is reported, not
  refused: the published protocols reprorec reproduces use random splits, and the reader decides;
* **test used in tuning**: the evaluator the tuning trials used must rank the validation part, be
  disjoint from test and exclude train only; the test part is ranked once, after tuning. The cell
  records both at run time (:func:`tuning_evaluator_audit`) and the card states them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.splits.split import Split

#: Above this share of future training interactions the protocol card warns (1%).
WARN_SHARE = 0.01


def future_data(seen: InteractionMatrix, target: InteractionMatrix) -> dict[str, Any] | None:
    """How much of ``seen`` (training data) is later than the ``target`` interactions it predicts.

    None when either part has no timestamps. Shares are fractions in [0, 1] (see the module docstring).
    """
    if seen.timestamps is None or target.timestamps is None or target.nnz == 0 or seen.nnz == 0:
        return None
    t_users = target.row_indices()
    first = np.full(target.n_users, np.inf)
    np.minimum.at(first, t_users, target.timestamps.astype(np.float64))
    users = np.unique(t_users)
    seen_ts = seen.timestamps.astype(np.float64)
    ordered = np.sort(seen_ts)
    later = len(ordered) - np.searchsorted(ordered, first[users], side="right")
    per_user = later / len(ordered)
    s_users = seen.row_indices()
    own = np.isin(s_users, users)
    own_later = seen_ts[own] > first[s_users[own]]
    split_point = float(first[users].min())
    return {
        "users": len(users),
        "after_each_test_user": float(per_user.mean()),
        "after_each_test_user_max": float(per_user.max()),
        "users_with_future_data": float((later > 0).mean()),
        "own_after_first_test": float(own_later.mean()) if own_later.size else 0.0,
        "after_split_point": float((seen_ts > split_point).mean()),
        "split_point": split_point,
    }


#: Audits by split fingerprint: every model of a (dataset, split, seed) run in one process shares it.
_AUDITS: dict[str, dict[str, Any]] = {}


def leakage_audit(split: Split) -> dict[str, Any]:
    """The audit of ``split``: shared pairs, future data of test and validation, and warnings."""
    if split.fingerprint not in _AUDITS:
        if len(_AUDITS) >= 8:
            _AUDITS.clear()
        _AUDITS[split.fingerprint] = _audit(split)
    return dict(_AUDITS[split.fingerprint])


def _audit(split: Split) -> dict[str, Any]:
    shared = split.shared_pairs()
    audit: dict[str, Any] = {"shared_pairs": shared, "disjoint": not any(shared.values())}
    test = future_data(split.train_full, split.test)
    validation = future_data(split.train, split.validation) if split.validation is not None else None
    audit["timestamps"] = test is not None
    audit["test"] = test
    audit["validation"] = validation
    warnings = []
    for part, fd in (("test", test), ("validation", validation)):
        if fd is None:
            continue
        for key in ("after_each_test_user", "own_after_first_test", "after_split_point"):
            if fd[key] > WARN_SHARE:
                warnings.append(f"{part}: {key} = {fd[key]:.1%} > {WARN_SHARE:.0%}")
    audit["warn_share"] = WARN_SHARE
    audit["warnings"] = warnings
    return audit


def tuning_evaluator_audit(evaluator: Any, split: Split) -> dict[str, Any]:
    """What the evaluator of the tuning trials ranked, checked against the split's parts."""
    ranked: InteractionMatrix = evaluator.test
    fps = split.fingerprints
    return {
        "part_fingerprint": ranked.fingerprint,
        "is_validation": fps["validation"] is not None and ranked.fingerprint == fps["validation"],
        "is_test": ranked.fingerprint == fps["test"],
        "pairs_shared_with_test": int(ranked.matrix.multiply(split.test.matrix).nnz),
        "excludes": evaluator.exclude_description,
    }


def summary(audit: dict[str, Any]) -> str:
    """One line for the protocol card."""
    shared = audit.get("shared_pairs", {})
    text = [
        "parts disjoint (" + ", ".join(f"{k} {v}" for k, v in shared.items()) + " shared pairs)"
        if audit.get("disjoint")
        else "PARTS OVERLAP: " + ", ".join(f"{k} {v}" for k, v in shared.items())
    ]
    for part in ("test", "validation"):
        fd = audit.get(part)
        if fd:
            text.append(
                f"{part}: {fd['after_each_test_user']:.1%} of the training interactions are later than each "
                f"{part} user's first {part} interaction (mean over {fd['users']} users), "
                f"{fd['own_after_first_test']:.1%} of the users' own, "
                f"{fd['after_split_point']:.1%} after the split point"
            )
    if not audit.get("timestamps"):
        text.append("no timestamps: future data not measurable")
    tuning = audit.get("tuning")
    if tuning is not None:
        ok = (
            tuning.get("is_validation")
            and not tuning.get("is_test")
            and not tuning.get("pairs_shared_with_test")
        )
        text.append(
            "tuning trials ranked the validation part only (checked: its fingerprint, 0 pairs shared "
            "with test)"
            if ok
            else f"TUNING EVALUATOR NOT THE VALIDATION PART: {tuning}"
        )
    if audit.get("test_evaluations") is not None:
        text.append(f"test ranked {audit['test_evaluations']} time(s), after tuning")
    if audit.get("warnings"):
        parts = sorted({w.split(":")[0] for w in audit["warnings"]})
        text.append(
            f"WARNING: future training data above {audit['warn_share']:.0%} for {' and '.join(parts)}"
        )
    return "; ".join(text)
