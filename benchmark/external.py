"""Recommendations made by any other code, judged by the shared evaluator on reprorec's own splits.

A paper's model run in its authors' code sits on the same leaderboard as the tuned baselines (same
split, same evaluator, same significance tests and intervals) in two steps (``reprorec-score``):

1. :func:`export_split` writes the split of a cell as files in a documented format
   (:data:`SPLIT_FORMAT`, the dataset's own ids): ``train.tsv`` and ``validation.tsv`` (the external
   code tunes on these, then trains its final model on both together, as reprorec's refit does),
   ``test.tsv``, ``users.tsv`` (every user that is evaluated, and the list length each needs),
   ``candidates.tsv`` in a sampled protocol (each user's ranked items: relevant + negatives), and
   ``split.json`` (dataset and split fingerprints, the sha256 of every file, the evaluation rules);
2. the external code writes a recommendation file, :class:`ExternalRecommendations` turns it into
   scores, :func:`check_recommendations` checks it against the split and the evaluator, and the
   cell runs like any other with ``tuner=none`` and family ``external``: its key holds the file's
   sha256, so a changed file is a new cell.

Recommendation file: CSV or TSV (by suffix; ``.gz`` allowed) with a header naming ``user``, ``item``
and exactly one of ``rank`` (1 = first) or ``score`` (higher = better). The rules, each an error that
names the file, the column and the value unless it says otherwise:

* unknown user or item ids, missing values, a rank that is not an integer >= 1, a score that is not
  finite: error;
* the same (user, item) twice, or the same rank twice for one user: error;
* a user the evaluator evaluates without a list: error. Listed users that are not evaluated (no
  test items) are ignored and counted;
* items excluded for the user (their train + validation items) and, in a sampled protocol, items
  outside the user's candidates: error; with ``drop_invalid`` they are dropped (the evaluator never
  ranks them, for any model, so the items below move up) and counted;
* a list, after dropping, shorter than the longest cutoff (or than the user's candidate count if it
  is smaller): error. An unlisted item could only be placed by the tie rule, i.e. the benchmark would
  invent recommendations the code never made: lower ``evaluation.cutoffs`` instead;
* equal scores in a score file: the evaluator's tie rule, as for every model. Unlisted items rank
  below every listed one, tied among themselves (AUC counts them as ties).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import DataError
from benchmark.io import atomic_dir
from benchmark.models import ModelTags, Param, Recommender

#: The export format written by :func:`export_split` (``split.json``'s ``format``).
SPLIT_FORMAT = "reprorec-split/1"
#: Columns of a recommendation file: both id columns, and exactly one of the order columns.
ID_COLUMNS = ("user", "item")
ORDER_COLUMNS = ("rank", "score")
#: How many offending values an error message shows.
_SHOW = 5


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (what an external cell's key and run record)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sep(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in (".csv", ".tsv"):
        raise DataError(f"{path.name}: a recommendation file is .csv or .tsv (optionally .gz)")
    return "," if suffixes[-1] == ".csv" else "\t"


def read_recommendations(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check a recommendation file: ``user``, ``item`` (str ids) and ``rank`` or ``score``.

    Raises:
        DataError: naming the file, the column and the first offending values.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError(f"{name}: recommendation file not found")
    try:
        frame = pd.read_csv(path, sep=_sep(path), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: cannot be read as a table with a header: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ID_COLUMNS if c not in frame.columns]
    order = [c for c in ORDER_COLUMNS if c in frame.columns]
    if missing or len(order) != 1:
        raise DataError(
            f"{name}: the header must name {list(ID_COLUMNS)} and exactly one of {list(ORDER_COLUMNS)}; "
            f"it names {list(frame.columns)}"
        )
    column = order[0]
    frame = frame[[*ID_COLUMNS, column]].copy()
    for c in ID_COLUMNS:
        frame[c] = frame[c].str.strip()
        _refuse(name, c, frame.index[frame[c] == ""], frame, "is empty")
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    if column == "rank":
        bad = ~(np.isfinite(values) & (values >= 1) & (values == np.floor(values)))
        _refuse(name, column, frame.index[bad], frame, "is not an integer >= 1")
    else:
        _refuse(name, column, frame.index[~np.isfinite(values)], frame, "is not a finite number")
    dup = frame.duplicated(list(ID_COLUMNS), keep="first")
    _refuse(name, "user,item", frame.index[dup], frame, "is listed twice")
    frame[column] = values
    if column == "rank":
        _refuse(
            name, "rank", frame.index[frame.duplicated(["user", "rank"])], frame, "is used twice for one user"
        )
    return frame.reset_index(drop=True)


def _refuse(name: str, column: str, rows: pd.Index, frame: pd.DataFrame, what: str) -> None:
    """DataError for the rows of ``frame`` whose ``column`` breaks a rule (none: nothing)."""
    if len(rows) == 0:
        return
    cols = column.split(",")
    shown = "; ".join(
        f"line {int(i) + 2}: {column}={','.join(_text(frame.at[i, c]) for c in cols)!r}" for i in rows[:_SHOW]
    )
    more = f" (and {len(rows) - _SHOW} more)" if len(rows) > _SHOW else ""
    raise DataError(f"{name}: column {column!r} {what} on {len(rows)} line(s): {shown}{more}")


def _text(value: Any) -> str:
    """A value as the file wrote it (a parsed whole number without its '.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ExternalRecommendations(Recommender):
    """The recommendation lists of another program, as scores for the shared evaluator.

    Not a learning model: ``fit`` reads the file (checking its sha256 against the one the cell was
    keyed with) and maps its ids into the split's id space; ``score`` returns ``-position`` for the
    listed items of each user (position 1 = first; in a score file, the dense rank of the scores, so
    equal scores stay tied) and a floor below every position for unlisted items.

    Args:
        path: the recommendation file (see the module docstring for its format and rules).
        sha256: the file's expected sha256 (``reprorec-score`` fills it in); a file that changed
            since is refused.
        drop_invalid: drop excluded (seen) and non-candidate items instead of refusing the file.
        note: free text shown with the row (where the lists come from).
    """

    param_specs: ClassVar[dict[str, Param]] = {
        "path": Param("str"),
        "sha256": Param("str"),
        "drop_invalid": Param("bool"),
        "note": Param("str"),
    }
    tags: ClassVar[ModelTags] = ModelTags()

    def __init__(self, path: str = "", sha256: str = "", drop_invalid: bool = False, note: str = "") -> None:
        self.path = path
        self.sha256 = sha256
        self.drop_invalid = drop_invalid
        self.note = note

    def fit(self, train: InteractionMatrix) -> ExternalRecommendations:
        """Read the file into ``positions_`` (a users x items CSR of 1-based list positions)."""
        self.validate_params()
        path = Path(self.path)
        if not path.is_file():
            raise DataError(f"{path.name}: recommendation file not found")
        digest = file_sha256(path)
        if self.sha256 and digest != self.sha256:
            raise DataError(
                f"{path.name}: sha256 {digest[:12]}... differs from the {self.sha256[:12]}... this cell was "
                "started with: the file changed; score it again (a new cell)"
            )
        frame = read_recommendations(path)
        users = _codes(path.name, "user", frame["user"], train.user_ids)
        items = _codes(path.name, "item", frame["item"], train.item_ids)
        column = "rank" if "rank" in frame.columns else "score"
        if column == "rank":
            position = frame["rank"].to_numpy(dtype=np.float64)
        else:  # dense rank of the scores within each user: equal scores keep an equal position
            position = (
                pd.Series(frame["score"].to_numpy(), index=users)
                .groupby(level=0)
                .rank(method="dense", ascending=False)
                .to_numpy(dtype=np.float64)
            )
        n_users, n_items = train.shape
        self.positions_ = sp.csr_matrix((position, (users, items)), shape=(n_users, n_items))
        self.positions_.sort_indices()
        self.n_items_ = n_items
        # Float32 represents every position up to 2**24 exactly; the floor is below all of them.
        self.floor_ = -float(position.max() + 1.0) if len(position) else -1.0
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.full((len(users), self.n_items_), self.floor_, dtype=np.float32)
        rows = self.positions_[users]
        r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
        out[r, rows.indices] = -rows.data.astype(np.float32)
        return out


def _codes(name: str, column: str, ids: pd.Series, known: np.ndarray) -> np.ndarray:
    """Indices of the ``ids`` (strings) in the split's id space; unknown ids are an error."""
    index = {str(v): i for i, v in enumerate(known.tolist())}
    codes = ids.map(index)
    unknown = ids[codes.isna()]
    if len(unknown):
        first = list(dict.fromkeys(unknown.tolist()))
        shown = ", ".join(repr(v) for v in first[:_SHOW])
        raise DataError(
            f"{name}: column {column!r} has {len(first)} id(s) the split does not know, on "
            f"{len(unknown)} line(s): {shown}{' ...' if len(first) > _SHOW else ''} (ids are the "
            "dataset's own, as in the exported train.tsv)"
        )
    return codes.to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class RecommendationCheck:
    """What :func:`check_recommendations` found (everything it did not refuse)."""

    users_evaluated: int
    users_listed: int
    users_ignored: int
    dropped_excluded: int
    dropped_not_candidates: int
    shortest_list: int
    list_length_needed: int


def check_recommendations(
    model: ExternalRecommendations, evaluator: Any, *, file: str
) -> RecommendationCheck:
    """Check fitted external lists against the evaluator's users, exclusions and candidates.

    Raises:
        DataError: a rule of the module docstring is broken (naming ``file``, users and items).
    """
    pos: sp.csr_matrix = model.positions_
    test: InteractionMatrix = evaluator.test
    users = np.asarray(evaluator.users, dtype=np.int64)
    listed = np.diff(pos.indptr) > 0
    evaluated = np.zeros(pos.shape[0], dtype=bool)
    evaluated[users] = True
    lists = pos[users].tocsr()
    lists.data = np.ones_like(lists.data, dtype=np.float32)

    no_list = users[~listed[users]]
    if len(no_list):
        raise DataError(
            f"{file}: {len(no_list)} evaluated user(s) have no list: "
            f"{_ids(test.user_ids, no_list)} (users.tsv of the exported split names every one)"
        )
    excluded = lists.multiply(evaluator.excluded(users)).tocsr()
    n_excluded = int(excluded.nnz)
    if n_excluded and not model.drop_invalid:
        raise DataError(
            f"{file}: {n_excluded} recommended (user, item) pair(s) are the user's train/validation items, "
            f"which the evaluator never ranks: {_pairs(test, users, excluded)}; remove them, or pass "
            "--drop-invalid"
        )
    lists = (lists - excluded).tocsr()
    lists.eliminate_zeros()
    ranked = evaluator.ranked_items(users)
    n_outside = 0
    if ranked is not None:
        outside = (lists - lists.multiply(ranked)).tocsr()
        outside.eliminate_zeros()
        n_outside = int(outside.nnz)
        if n_outside and not model.drop_invalid:
            raise DataError(
                f"{file}: {n_outside} recommended (user, item) pair(s) are not among the user's candidates "
                f"of this sampled protocol (candidates.tsv of the exported split): "
                f"{_pairs(test, users, outside)}; remove them, or pass --drop-invalid"
            )
        lists = lists.multiply(ranked).tocsr()
    need = list_lengths(evaluator, users, ranked)
    length = np.diff(lists.indptr)
    short = np.flatnonzero(length < need)
    if len(short):
        shown = ", ".join(f"{test.user_ids[users[i]]!r}: {length[i]} < {need[i]}" for i in short[:_SHOW])
        raise DataError(
            f"{file}: {len(short)} user list(s) are shorter than the longest cutoff {evaluator.max_k} "
            f"(after removing excluded items) ({shown}); unlisted items would be placed by the tie rule, "
            "i.e. recommendations the code never made: write longer lists or lower evaluation.cutoffs"
        )
    return RecommendationCheck(
        users_evaluated=len(users),
        users_listed=int(listed.sum()),
        users_ignored=int((listed & ~evaluated).sum()),
        dropped_excluded=n_excluded,
        dropped_not_candidates=n_outside,
        shortest_list=int(length.min()) if len(length) else 0,
        list_length_needed=int(need.max()) if len(need) else 0,
    )


def list_lengths(evaluator: Any, users: np.ndarray, ranked: sp.csr_matrix | None) -> np.ndarray:
    """The list length each user needs: the longest cutoff, or fewer when fewer items can be ranked
    (the user's candidates in a sampled protocol, else the items that are not excluded)."""
    available = (
        np.diff(ranked.indptr)
        if ranked is not None
        else evaluator.n_items - np.diff(evaluator.excluded(users).indptr)
    )
    return np.minimum(evaluator.max_k, available)


def _pairs(test: InteractionMatrix, users: np.ndarray, matrix: sp.csr_matrix) -> str:
    """The first offending (user id, item id) pairs of a ``[len(users), n_items]`` matrix."""
    r, c = matrix.nonzero()
    return ", ".join(
        f"({test.user_ids[users[a]]!r}, {test.item_ids[b]!r})" for a, b in list(zip(r, c))[:_SHOW]
    )


def _ids(ids: np.ndarray, rows: np.ndarray) -> str:
    shown = ", ".join(repr(ids[r]) for r in rows[:_SHOW])
    return shown + (" ..." if len(rows) > _SHOW else "")


# ---------------------------------------------------------------------------- export


def _write_table(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n")
    return {"sha256": file_sha256(path), "rows": len(frame), "columns": list(frame.columns)}


def export_split(
    prepared: Any, evaluator: Any, out_dir: str | os.PathLike[str], *, command: str
) -> dict[str, Any]:
    """Write a prepared cell's split (see the module docstring) into ``out_dir``; return the manifest.

    ``out_dir`` must not exist or be empty. The files are written into a temporary folder beside it
    and moved into place at the end (:func:`benchmark.io.atomic_dir`), so an interrupted export
    leaves nothing half-written.

    Args:
        prepared: the :class:`benchmark.tuning.prepare.PreparedCell` whose split is exported.
        evaluator: its test evaluator (:func:`benchmark.tuning.prepare.evaluator_on_test`).
        out_dir: the folder to create.
        command: the ``reprorec-score score`` command that scores lists made from this export.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out.name}: the export folder exists and is not empty; choose a new one")
    split = prepared.split
    cfg = prepared.config
    users = np.asarray(evaluator.users, dtype=np.int64)
    ranked = evaluator.ranked_items(users)
    with atomic_dir(out) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is meant to be read
        files: dict[str, Any] = {}
        parts = {"train": split.train, "validation": split.validation, "test": split.test}
        for part, matrix in parts.items():
            if matrix is not None:
                files[f"{part}.tsv"] = _write_table(matrix.to_frame(external_ids=True), tmp / f"{part}.tsv")
        files["users.tsv"] = _write_table(
            pd.DataFrame(
                {
                    "user": split.test.user_ids[users],
                    "n_test_items": evaluator.n_relevant[users],
                    "list_length": list_lengths(evaluator, users, ranked),
                }
            ),
            tmp / "users.tsv",
        )
        if ranked is not None:
            rows = np.repeat(users, np.diff(ranked.indptr))
            files["candidates.tsv"] = _write_table(
                pd.DataFrame(
                    {"user": split.test.user_ids[rows], "item": split.test.item_ids[ranked.indices]}
                ),
                tmp / "candidates.tsv",
            )
        settings = evaluator.settings
        manifest = {
            "format": SPLIT_FORMAT,
            "dataset": {"name": cfg.dataset.name, "fingerprint": prepared.dataset_fingerprint},
            "split": {"name": cfg.split.name, "seed": cfg.seed, "fingerprints": dict(split.fingerprints)},
            "protocol": cfg.protocol,
            "evaluation": {
                k: settings[k] for k in ("protocol", "n_negatives", "tie_rule", "cutoffs", "metrics", "seed")
            }
            | {"exclude": "train+validation", "candidates": "candidates.tsv" if ranked is not None else None},
            "files": files,
            "how_to": {
                "tune_on": ["train.tsv", "validation.tsv"] if split.validation is not None else [],
                "final_training_data": ["train.tsv", "validation.tsv"]
                if split.validation is not None
                else ["train.tsv"],
                "recommend_for": "users.tsv: every user, at least list_length items each, none of the user's "
                "train/validation items" + (", only items of candidates.tsv" if ranked is not None else ""),
                "file_format": "CSV or TSV with a header: user, item, and rank (1 = first) or score "
                "(higher = better); the ids of these files",
                "score_with": command,
            },
        }
        (tmp / "split.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return manifest


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.+-]{0,63}$")


def check_name(name: str, registered: set[str]) -> str:
    """The leaderboard name of an external model: a plain name no registered model uses."""
    if not _NAME.match(name):
        raise DataError(
            f"--name {name!r}: use a letter followed by up to 63 letters, digits or '_.+-' (it names the row)"
        )
    if name in registered:
        raise DataError(f"--name {name!r} is a registered reprorec model; name the external row differently")
    return name
