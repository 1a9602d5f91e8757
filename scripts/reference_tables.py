"""Write the published rows each ``dacrema/*`` report shows beside ours (``reports/reference/dacrema/``).

Reads the appendix rows staged in ``../shared/reference/dacrema_tois2021_appendix.csv`` (every
result row of Dacrema, Boglio, Cremonesi & Jannach, "A Troubling Analysis of Reproducibility and
Progress in Recommender Systems Research", ACM TOIS 39(2), 2021, online appendix; see its README)
and keeps, for every protocol, the rows of a model reprorec runs under the same name, with the
metric named as reprorec names the same definition (NDCG with the ideal DCG of all test items is
``ndcg_full_idcg``; with one test item per user, as in the leave-one-out protocols, it equals
``ndcg``; MAP with denominator min(k, |test|) is ``map``). The values are cited facts, compared
against, never tuning inputs.

    python scripts/reference_tables.py [--reference ../shared/reference/dacrema_tois2021_appendix.csv]
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = (
    "Ferrari Dacrema, Boglio, Cremonesi & Jannach, ACM TOIS 39(2) 2021, "
    "online appendix Table {table} ({what})"
)

#: experiment -> (appendix table, what it is, dataset, split, metric names by appendix name)
PROTOCOLS: dict[str, tuple[str, str, str, str, dict[str, str]]] = {
    "mcrec_ml100k": (
        "46",
        "MCRec protocol, MovieLens-100k",
        "ml-100k",
        "mcrec_ml100k",
        {"PREC": "precision", "REC": "recall", "NDCG": "ndcg_full_idcg"},
    ),
    "spectralcf_ml1m": (
        "32",
        "SpectralCF protocol, MovieLens-1M",
        "ml-1m",
        "spectralcf_ml1m",
        {"REC": "recall", "MAP": "map"},
    ),
    "cvae_citeulike_p1": (
        "15",
        "CVAE protocol, CiteULike-a, P=1",
        "citeulike-a",
        "cvae_citeulike_a_p1",
        {"REC": "recall"},
    ),
    "cvae_citeulike_p10": (
        "16",
        "CVAE protocol, CiteULike-a, P=10",
        "citeulike-a",
        "cvae_citeulike_a_p10",
        {"REC": "recall"},
    ),
    "cmn_citeulike": (
        "4",
        "CMN protocol, CiteULike-a",
        "citeulike-a",
        "cmn_citeulike_a",
        {"HR": "hit_rate", "NDCG": "ndcg"},
    ),
    "neumf_ml1m": (
        "55",
        "NeuMF protocol, MovieLens-1M",
        "ml-1m",
        "neumf_ml1m",
        {"HR": "hit_rate", "NDCG": "ndcg"},
    ),
}
SIMILARITIES = ("cosine", "dice", "jaccard", "asymmetric", "tversky")
#: appendix algorithm -> reprorec model (the rows of models reprorec does not run are left out)
MODELS: dict[str, str] = {
    "Random": "random",
    "TopPopular": "toppop",
    **{f"UserKNN CF {s}": f"userknn_{s}" for s in SIMILARITIES},
    **{f"ItemKNN CF {s}": f"itemknn_{s}" for s in SIMILARITIES},
    "P3alpha": "p3alpha",
    "RP3beta": "rp3beta",
    "EASE_R": "ease",
    "SLIM ElasticNet": "slim",
    "MF BPR": "mf_bpr",
    "PureSVD": "puresvd",
    "iALS": "ials",
    "NeuMF": "neumf",
    "SpectralCF": "spectralcf",
}


def tables(reference: Path) -> dict[str, str]:
    """The CSV text of every protocol's reference file."""
    with open(reference, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for name, (table, what, dataset, split, metrics) in PROTOCOLS.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "metric", "cutoff", "value", "source", "dataset", "split"])
        for r in rows:
            if (
                r["table"] != table
                or r["algorithm"] not in MODELS
                or r["metric"] not in metrics
                or not r["value"]
            ):
                continue
            source = SOURCE.format(table=table, what=what) + f', row "{r["algorithm"]}"'
            w.writerow(
                [
                    MODELS[r["algorithm"]],
                    metrics[r["metric"]],
                    r["cutoff"],
                    r["value"],
                    source,
                    dataset,
                    split,
                ]
            )
        out[name] = buf.getvalue()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, default=REPO.parent / "shared/reference/dacrema_tois2021_appendix.csv"
    )
    parser.add_argument("--out", type=Path, default=REPO / "reports/reference/dacrema")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in tables(args.reference).items():
        (args.out / f"{name}.csv").write_text(text, encoding="utf-8")
        print(f"{name}: {text.count(chr(10)) - 1} rows")


if __name__ == "__main__":
    main()
