"""Stand-in for other code: a model trained on an exported reprorec split, its lists written to a file.

It reads only the files of ``reprorec-score export`` (no reprorec import), as a paper's own code
would: PureSVD (Cremonesi, Koren & Turrin, RecSys 2010) with scikit-learn's TruncatedSVD on
train + validation, then each user's top-``list_length`` items of ``users.tsv`` without the user's
train/validation items (and only candidates in a sampled protocol)::

    reprorec-score export results/split dataset=ml-100k
    python scripts/external_example.py results/split results/svd.tsv --factors 50
    reprorec-score score results/svd.tsv --name sklearn_svd --note "external_example.py" dataset=ml-100k
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split_dir", type=Path, help="the folder written by reprorec-score export")
    parser.add_argument("out", type=Path, help="recommendation file to write (.tsv)")
    parser.add_argument("--factors", type=int, default=50)
    args = parser.parse_args()

    d = args.split_dir
    parts = [
        pd.read_csv(d / f, sep="\t", dtype=str) for f in ("train.tsv", "validation.tsv") if (d / f).exists()
    ]
    seen = pd.concat(parts, ignore_index=True)
    users = pd.read_csv(d / "users.tsv", sep="\t", dtype={"user": str})
    user_codes = {u: i for i, u in enumerate(pd.unique(pd.concat([seen["user"], users["user"]])))}
    item_ids = np.array(sorted(pd.unique(seen["item"])), dtype=object)
    item_codes = {it: i for i, it in enumerate(item_ids)}
    rows = seen["user"].map(user_codes).to_numpy()
    cols = seen["item"].map(item_codes).to_numpy()
    x = sp.csr_matrix((np.ones(len(seen)), (rows, cols)), shape=(len(user_codes), len(item_ids)))

    svd = TruncatedSVD(n_components=args.factors, algorithm="arpack", random_state=0).fit(x)
    wanted = users["user"].map(user_codes).to_numpy()
    scores = (x[wanted] @ svd.components_.T) @ svd.components_
    scores[x[wanted].nonzero()] = -np.inf  # never a train/validation item
    if (d / "candidates.tsv").exists():  # sampled protocol: rank the candidates only
        cand = pd.read_csv(d / "candidates.tsv", sep="\t", dtype=str)
        keep = np.full(scores.shape, False)
        pos = {u: i for i, u in enumerate(users["user"])}
        ok = cand["item"].isin(item_codes)
        keep[cand.loc[ok, "user"].map(pos), cand.loc[ok, "item"].map(item_codes)] = True
        scores[~keep] = -np.inf
    out = []
    for i, (user, length) in enumerate(zip(users["user"], users["list_length"], strict=True)):
        top = np.argsort(-scores[i], kind="stable")[:length]
        out.append(pd.DataFrame({"user": user, "item": item_ids[top], "rank": np.arange(1, len(top) + 1)}))
    pd.concat(out, ignore_index=True).to_csv(args.out, sep="\t", index=False)
    print(f"wrote {args.out} ({len(users)} users)")


if __name__ == "__main__":
    main()
