"""Readers of published split files: the exact train/test (and candidates) papers evaluated on.

Each reader is a pure function of file paths returning a :class:`~benchmark.splits.split.Split`.
The dataset of such a protocol *is* train ∪ test: the id space of the split is the sorted union of
the user and item ids that occur in its files (including the candidate negatives), so items or
users that occur nowhere in the files are not part of it.

Formats (see the PROVENANCE.md files of the dataset mirror):

* MCRec (Hu et al. KDD 2018) ml-100k: ``*.train.rating`` tab-separated ``user item rating``;
  ``*.test.rating`` space-separated ``user item item ...`` (one line per test user).
* NeuMF (He et al. WWW 2017) ml-1m: ``train.rating`` (here the reconstructed gzip copy) and
  ``test.rating``, tab-separated ``user item rating timestamp``; ``test.negative`` lines
  ``(user,item)`` + 99 tab-separated negatives, which become ``test_candidates``. Timestamps are
  dropped: the reconstructed train file has none (all 0).
* SpectralCF (Zheng et al. RecSys 2018) ml-1m: ``train_users.dat`` / ``test_users.dat`` lines
  ``user item item ...``.
* CVAE (Li & She KDD 2017) citeulike-a/t: ``cf-{train,test}-P-users.dat``, line ``u`` (0-based
  user id) = ``n item item ...``; ``n`` is verified against the line (``DataError`` with file:line).
* CMN (Ebesu et al. SIGIR 2018) citeulike-a: npz (pickled) with ``train_data`` rows ``(user, item)``
  and ``test_data`` dict ``user -> (positive, [100 negatives])``.

Candidates policy: a candidate that is a train or test interaction of its user would leak (or make
the positive its own negative). ``on_dirty_candidates="drop"`` (default) removes such candidates
with a warning and records ``n_candidates_dropped``; ``"error"`` raises ``LeakageError``. Duplicate
candidates of one user collapse to one (``n_duplicate_candidates``). Measured on the mirror: in NeuMF's
``ml-1m.test.negative`` 156 users' lists contain their own test item (NeuMF's evaluation collapses
it, as its score dict is keyed by item, so dropping it reproduces NeuMF); in CMN's citeulike-a npz
1,115 negatives are training items of their user (CMN ranked them as negatives; we drop them, so
CMN-protocol numbers can differ slightly from the published ones). Train/test overlap is always a
``LeakageError``; a duplicated (user, item) line inside one file is a ``DataError``.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import DataError, LeakageError, UnknownNameError
from benchmark.fingerprint import sha256_json
from benchmark.splits import store
from benchmark.splits.split import Split
from benchmark.splits.splitters import _json_params, user_stats

READER_VERSION = 1  # bump when a reader's output changes: part of the published cache key
DirtyPolicy = Literal["drop", "error"]


# ---------------------------------------------------------------------------------------- parsing
def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:
        return fh.read()


def _to_int(tokens: np.ndarray, path: Path, lines: np.ndarray, field: str) -> np.ndarray:
    """Tokens (bytes) to int64; the first non-integer raises DataError with file:line."""
    try:
        return tokens.astype(np.int64)
    except ValueError:
        num = pd.to_numeric(pd.Series(tokens).str.decode("utf-8", errors="replace"), errors="coerce")
        bad = np.flatnonzero(num.isna().to_numpy() | (num.to_numpy() != np.floor(num.to_numpy())))
        k = int(bad[0]) if len(bad) else 0
        raise DataError(
            "not an integer id",
            file=str(path),
            line=int(lines[k]) + 1,
            field=field,
            value=tokens[k].decode("utf-8", errors="replace"),
        ) from None


def read_token_lines(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Whitespace-separated integer tokens of a text file (gzip allowed), vectorised.

    Returns:
        ``(values, line, n_lines)``: every token as int64, the 0-based line of each token, and the
        number of lines (a final line without newline counts).
    """
    path = Path(path)
    raw = _read_bytes(path)
    b = np.frombuffer(raw, dtype=np.uint8)
    ws = (b == 32) | (b == 9) | (b == 13) | (b == 10)
    prev_ws = np.concatenate(([True], ws[:-1]))
    starts = np.flatnonzero(~ws & prev_ws)
    line = np.cumsum(b == 10)[starts] if len(b) else np.zeros(0, dtype=np.int64)
    n_lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    tokens = np.array(raw.split(), dtype=object).astype(bytes) if starts.size else np.zeros(0, dtype="S1")
    return _to_int(tokens, path, line, "id"), line.astype(np.int64), n_lines


def read_user_lists(path: str | Path, *, layout: Literal["user", "count"]) -> pd.DataFrame:
    """Read ``user item item ...`` (``layout="user"``) or ``n item item ...`` (``"count"``) lines.

    With ``"count"`` the user is the 0-based line number and the count is verified.

    Returns:
        Frame ``user, item`` (int64), one row per pair, in file order.
    """
    path = Path(path)
    values, line, n_lines = read_token_lines(path)
    first = np.ones(len(values), dtype=bool)
    first[1:] = line[1:] != line[:-1]
    head_line, head_val = line[first], values[first]
    per_line = np.bincount(line, minlength=n_lines)
    if layout == "count":
        blank = np.flatnonzero(per_line == 0)
        if len(blank):
            raise DataError("empty line (expected `n item ...`)", file=str(path), line=int(blank[0]) + 1)
        wrong = np.flatnonzero(per_line[head_line] - 1 != head_val)
        if len(wrong):
            k = int(wrong[0])
            n_items = int(per_line[head_line[k]] - 1)
            raise DataError(
                f"first token says {int(head_val[k])} items but the line has {n_items}",
                file=str(path),
                line=int(head_line[k]) + 1,
                field="count",
                value=int(head_val[k]),
            )
        users = line[~first]
    elif layout == "user":
        users = head_val[np.searchsorted(head_line, line[~first])]
    else:
        raise ValueError(f"layout must be 'user' or 'count', got {layout!r}")
    frame = pd.DataFrame({"user": users, "item": values[~first]})
    _no_duplicates(frame, path)
    return frame


def read_delimited(path: str | Path, names: Sequence[str], *, sep: str = "\t") -> pd.DataFrame:
    """Read a headerless delimited file of integer columns ``names`` (gzip allowed)."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=list(names),
            dtype=str,
            compression="infer",
            keep_default_na=False,
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed line: {exc}", file=str(path)) from None
    out = {}
    for col in names:
        s = frame[col]
        num = pd.to_numeric(s, errors="coerce")
        bad = np.flatnonzero(num.isna().to_numpy())
        if len(bad):
            k = int(bad[0])
            raise DataError("not a number", file=str(path), line=k + 1, field=col, value=s.iloc[k])
        out[col] = num.to_numpy()
    result = pd.DataFrame(out)
    for col in ("user", "item"):
        if col in result and (result[col] != np.floor(result[col])).any():
            k = int(np.flatnonzero(result[col] != np.floor(result[col]))[0])
            raise DataError("not an integer id", file=str(path), line=k + 1, field=col, value=result[col][k])
        if col in result:
            result[col] = result[col].astype(np.int64)
    _no_duplicates(result, path)
    return result


def _no_duplicates(frame: pd.DataFrame, path: Path) -> None:
    dup = frame.duplicated(["user", "item"]).to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise DataError(
            "duplicate (user, item) pair",
            file=str(path),
            field="user,item",
            value=(int(frame["user"].iloc[k]), int(frame["item"].iloc[k])),
        )


# ---------------------------------------------------------------------------------------- assembly
def assemble(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    candidates: pd.DataFrame | None = None,
    extra_users: np.ndarray | None = None,
    on_dirty_candidates: DirtyPolicy = "drop",
    params: Mapping[str, Any] | None = None,
) -> Split:
    """Build a split from frames of external ids (``user, item[, rating]``) in their union id space."""
    frames = [train, test] + ([candidates] if candidates is not None else [])
    users = [f["user"].to_numpy() for f in frames] + ([extra_users] if extra_users is not None else [])
    user_ids = np.unique(np.concatenate(users)).astype(np.int64)
    item_ids = np.unique(np.concatenate([f["item"].to_numpy() for f in frames])).astype(np.int64)
    rating = "rating" if "rating" in train and "rating" in test else None
    tr = InteractionMatrix.from_frame(
        train, rating_col=rating, user_ids=user_ids, item_ids=item_ids, name=f"{name}/train"
    )
    te = InteractionMatrix.from_frame(
        test, rating_col=rating, user_ids=user_ids, item_ids=item_ids, name=f"{name}/test"
    )
    overlap = tr.matrix.multiply(te.matrix).nnz
    if overlap:
        raise LeakageError(f"published split {name}: train and test share {overlap} (user, item) pairs")
    info: dict[str, Any] = {"splitter": "published", "published": name, **(params or {})}
    cand = None
    if candidates is not None:
        cu = pd.Index(user_ids).get_indexer(pd.Index(candidates["user"]))
        ci = pd.Index(item_ids).get_indexer(pd.Index(candidates["item"]))
        cand = sp.csr_matrix((np.ones(len(cu), dtype=np.float32), (cu, ci)), shape=tr.shape)
        cand.sum_duplicates()
        cand.data[:] = 1.0
        info["n_duplicate_candidates"] = int(len(cu) - cand.nnz)
        dirty = cand.multiply(tr.matrix + te.matrix).tocsr()
        dirty.eliminate_zeros()
        if dirty.nnz:
            msg = f"published split {name}: {dirty.nnz} candidates are train/test interactions of their user"
            if on_dirty_candidates == "error":
                raise LeakageError(msg)
            warnings.warn(msg + "; dropped", RuntimeWarning, stacklevel=3)
            cand = (cand - dirty.astype(bool).astype(np.float32)).tocsr()
            cand.eliminate_zeros()
        info["n_candidates_dropped"] = int(dirty.nnz)
        info["n_candidates"] = int(cand.nnz)
    info.update(user_stats(tr, te))
    return Split(train=tr, test=te, test_candidates=cand, params=_json_params(info)).check()


# ---------------------------------------------------------------------------------------- readers
def read_mcrec(train_path: str | Path, test_path: str | Path, *, name: str = "mcrec") -> Split:
    """MCRec split: tab ``user item rating`` train + ``user item item ...`` test lines."""
    train = read_delimited(train_path, ["user", "item", "rating"])
    test = read_user_lists(test_path, layout="user")
    return assemble(name, train[["user", "item"]], test)


def read_neumf(
    train_path: str | Path,
    test_path: str | Path,
    negatives_path: str | Path,
    *,
    name: str = "neumf",
    on_dirty_candidates: DirtyPolicy = "drop",
) -> Split:
    """NeuMF leave-one-out split + 99 sampled negatives per test user as ``test_candidates``."""
    cols = ["user", "item", "rating", "timestamp"]
    train = read_delimited(train_path, cols)[["user", "item", "rating"]]
    test = read_delimited(test_path, cols)[["user", "item", "rating"]]
    negatives_path = Path(negatives_path)
    neg = _read_negative_lines(negatives_path, test)
    return assemble(
        name,
        train,
        test,
        candidates=pd.DataFrame({"user": neg["user"], "item": neg["item"]}),
        on_dirty_candidates=on_dirty_candidates,
        params={"n_negatives_per_user": sorted(set(neg["per_line"].tolist()))},
    )


def _read_negative_lines(path: Path, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """``(user,item)\\tneg\\tneg...`` lines -> (user, negative item) pairs, heads checked.

    Every line must start with a (user, item) pair of the test file and list at least one negative.
    """
    raw = _read_bytes(path).translate(bytes.maketrans(b"(,)", b"   "))
    b = np.frombuffer(raw, dtype=np.uint8)
    ws = (b == 32) | (b == 9) | (b == 13) | (b == 10)
    starts = np.flatnonzero(~ws & np.concatenate(([True], ws[:-1])))
    line = np.cumsum(b == 10)[starts].astype(np.int64)
    n_lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    values = _to_int(np.array(raw.split(), dtype=object).astype(bytes), path, line, "id")
    pos = np.arange(len(values)) - np.searchsorted(line, line)  # token position inside its line
    per_line = np.bincount(line, minlength=n_lines) - 2
    short = np.flatnonzero(per_line < 1)
    if len(short):
        raise DataError("line without (user,item) head and negatives", file=str(path), line=int(short[0]) + 1)
    head_user, head_item = values[pos == 0], values[pos == 1]
    heads = pd.DataFrame({"user": head_user, "item": head_item})
    merged = heads.merge(
        test[["user", "item"]].drop_duplicates(), how="left", on=["user", "item"], indicator=True
    )
    missing = np.flatnonzero((merged["_merge"] == "left_only").to_numpy())
    if len(missing):
        k = int(missing[0])
        raise DataError(
            "(user,item) head is not a pair of the test file",
            file=str(path),
            line=k + 1,
            value=(int(head_user[k]), int(head_item[k])),
        )
    neg = pos >= 2
    return {"user": head_user[line[neg]], "item": values[neg], "per_line": per_line}


def read_spectralcf(train_path: str | Path, test_path: str | Path, *, name: str = "spectralcf") -> Split:
    """SpectralCF ``train_users.dat`` / ``test_users.dat`` (``user item item ...`` lines)."""
    return assemble(
        name, read_user_lists(train_path, layout="user"), read_user_lists(test_path, layout="user")
    )


def read_cvae(train_path: str | Path, test_path: str | Path, *, name: str = "cvae") -> Split:
    """CVAE/CDL ``cf-train-P-users.dat`` / ``cf-test-P-users.dat`` (count-first lines)."""
    train = read_user_lists(train_path, layout="count")
    test = read_user_lists(test_path, layout="count")
    _, _, n_train_lines = read_token_lines(train_path)
    _, _, n_test_lines = read_token_lines(test_path)
    if n_train_lines != n_test_lines:
        raise DataError(
            f"train has {n_train_lines} user lines but test has {n_test_lines}", file=str(test_path)
        )
    # Every line is a user, also one with no test items: keep them all in the id space.
    return assemble(name, train, test, extra_users=np.arange(n_train_lines, dtype=np.int64))


def read_cmn(npz_path: str | Path, *, name: str = "cmn", on_dirty_candidates: DirtyPolicy = "drop") -> Split:
    """CMN npz: ``train_data`` (user, item) rows; ``test_data`` user -> (positive, negatives)."""
    npz_path = Path(npz_path)
    try:
        with np.load(npz_path, allow_pickle=True) as z:
            train_arr = np.asarray(z["train_data"], dtype=np.int64)
            test_obj = z["test_data"]
            test_data = test_obj.item() if test_obj.shape == () else test_obj
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"cannot read CMN npz ({exc})", file=str(npz_path)) from None
    if train_arr.ndim != 2 or train_arr.shape[1] != 2:
        raise DataError(
            "train_data must have shape (n, 2)", file=str(npz_path), field="train_data", value=train_arr.shape
        )
    if not isinstance(test_data, Mapping):
        raise DataError(
            "test_data must be a dict user -> (item, negatives)",
            file=str(npz_path),
            field="test_data",
            value=type(test_data).__name__,
        )
    # The pickled dict forces one pass over its (user -> tuple) entries; everything after is numpy.
    users = np.fromiter(test_data.keys(), dtype=np.int64, count=len(test_data))
    entries = list(test_data.values())
    pos = np.fromiter((e[0] for e in entries), dtype=np.int64, count=len(entries))
    neg_lists = [np.asarray(e[1], dtype=np.int64) for e in entries]
    n_neg = np.fromiter((len(n) for n in neg_lists), dtype=np.int64, count=len(neg_lists))
    train = pd.DataFrame({"user": train_arr[:, 0], "item": train_arr[:, 1]})
    _no_duplicates(train, npz_path)
    test = pd.DataFrame({"user": users, "item": pos})
    cands = pd.DataFrame(
        {
            "user": np.repeat(users, n_neg),
            "item": np.concatenate(neg_lists) if neg_lists else np.zeros(0, np.int64),
        }
    )
    return assemble(
        name,
        train,
        test,
        candidates=cands,
        on_dirty_candidates=on_dirty_candidates,
        params={"n_negatives_per_user": sorted(set(n_neg.tolist()))},
    )


# ---------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class PublishedSplit:
    """A published split: the dataset whose resources hold its files, and the reader.

    Attributes:
        name: registry name (``mcrec_ml100k``).
        dataset: dataset registry name whose resources hold the files.
        resources: resource keys, passed to ``reader`` in order as paths.
        reader: the reader function.
        source: the paper / repository the files come from.
    """

    name: str
    dataset: str
    resources: tuple[str, ...]
    reader: Callable[..., Split]
    source: str


_CVAE = "Li & She, KDD 2017 (CVAE), files of eelxpeng/CollaborativeVAE via the Dacrema repo"
PUBLISHED_SPLITS: dict[str, PublishedSplit] = {
    p.name: p
    for p in [
        PublishedSplit(
            "mcrec_ml100k",
            "ml-100k",
            ("mcrec_train", "mcrec_test"),
            read_mcrec,
            "Hu et al., KDD 2018 (MCRec); Dacrema et al. TOIS 2021 Table 46",
        ),
        PublishedSplit(
            "neumf_ml1m",
            "ml-1m",
            ("neumf_train_reconstructed", "neumf_test", "neumf_negatives"),
            read_neumf,
            "He et al., WWW 2017 (NeuMF); train reconstructed, see PROVENANCE",
        ),
        PublishedSplit(
            "spectralcf_ml1m",
            "ml-1m",
            ("spectralcf_train", "spectralcf_test"),
            read_spectralcf,
            "Zheng et al., RecSys 2018 (SpectralCF); Dacrema TOIS Tables 32/36",
        ),
        PublishedSplit(
            "cvae_citeulike_a_p1", "citeulike-a", ("cvae_train_1", "cvae_test_1"), read_cvae, _CVAE
        ),
        PublishedSplit(
            "cvae_citeulike_a_p10", "citeulike-a", ("cvae_train_10", "cvae_test_10"), read_cvae, _CVAE
        ),
        PublishedSplit(
            "cvae_citeulike_t_p1", "citeulike-t", ("cvae_train_1", "cvae_test_1"), read_cvae, _CVAE
        ),
        PublishedSplit(
            "cvae_citeulike_t_p10", "citeulike-t", ("cvae_train_10", "cvae_test_10"), read_cvae, _CVAE
        ),
        PublishedSplit(
            "cmn_citeulike_a",
            "citeulike-a",
            ("cmn_npz",),
            read_cmn,
            "Ebesu et al., SIGIR 2018 (CMN); Dacrema TOIS Table 4",
        ),
    ]
}


def get_published(name: str) -> PublishedSplit:
    """The published split ``name``; :class:`UnknownNameError` lists the known ones."""
    try:
        return PUBLISHED_SPLITS[name]
    except KeyError:
        raise UnknownNameError("published split", name, list(PUBLISHED_SPLITS)) from None


def read_published(name: str, paths: Sequence[str | Path]) -> Split:
    """Read published split ``name`` from its files (in the order of its ``resources``)."""
    spec = get_published(name)
    if len(paths) != len(spec.resources):
        raise ValueError(f"{name} needs {len(spec.resources)} files {spec.resources}, got {len(paths)}")
    return spec.reader(*[Path(p) for p in paths], name=name)


def _resource_file(
    dataset: str, key: str, mirror: str | Path | None, cache_dir: str | Path | None
) -> tuple[Path, str]:
    """A verified local path of a dataset resource (mirror first, then cache / download) and the
    sha256 of its content, hashed once by the data layer."""
    from benchmark.data.fetch import locate_resource

    f = locate_resource(dataset, key, mirror=mirror, cache_dir=cache_dir)
    return f.path, f.sha256


def load_published_split(
    name: str,
    *,
    mirror: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> Split:
    """Get the files of published split ``name`` (verified), read them, and cache the result.

    Files come from :func:`benchmark.data.fetch.fetch_resource` (mirror first, then the cache or a
    download; sha256 checked before use). The parsed split is stored under ``<cache>/splits`` keyed
    by the files' sha256 and the reader version.
    """
    spec = get_published(name)
    files = [_resource_file(spec.dataset, key, mirror, cache_dir) for key in spec.resources]
    paths = [p for p, _ in files]
    digests = {key: sha for key, (_, sha) in zip(spec.resources, files, strict=True)}

    def build() -> Split:
        split = read_published(name, paths)
        params = {**split.params, "dataset": spec.dataset, "source": spec.source, "files_sha256": digests}
        return Split(
            train=split.train,
            test=split.test,
            test_candidates=split.test_candidates,
            params=_json_params(params),
        ).check()

    if not use_cache:
        return build()
    key = sha256_json(
        {"published": name, "files": digests, "reader": READER_VERSION, "store": store.STORE_VERSION}
    )
    return store.cached_split(
        store.splits_dir(cache_dir) / store.safe_name("published", name, key[:16]), build
    )
