"""``generate_report``: MLflow runs -> a complete, citable report folder, written atomically.

Files written into ``out_dir`` (replaced as a whole, never half-written):

* ``README.md``        Markdown report (leaderboards, significance, cost, protocol card, provenance)
* ``leaderboard.tex``  booktabs tables with captions
* ``report.html``      self-contained page with the plots embedded as PNG
* ``leaderboard.csv``  long format for machines (first line is a ``#`` comment)
* ``report.json``      the whole report document (every number and provenance field)
* ``CITATION.bib``     BibTeX entry of this report

The report id is the sha256 of the canonical JSON of the report's *content* (tables, numbers,
provenance, protocol, skipped/refused runs, settings, date of the newest run): the same runs give
the same id wherever and whenever the report is regenerated; any changed number changes it.

No file names a secret or a path of the machines involved: the tracking URI is ``$MLFLOW_TRACKING_URI``
when it came from the environment or has a password, store and data files are named relative to the
working directory or as ``<store>/``, ``<mirror>/``, ``<cache>/``, ``<local>/`` + name
(:mod:`benchmark.portable`), also for runs logged before this was so.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.fingerprint import sha256_json
from benchmark.io import atomic_dir
from benchmark.portable import (
    TRACKING_URI_REF,
    portable_doc,
    portable_path,
    portable_text,
    portable_tracking_uri,
)
from benchmark.redaction import publication_url_problem
from benchmark.registry import shipped_file
from benchmark.reporting import plots, render
from benchmark.reporting.collect import Collection, ReportInputError, collect_runs
from benchmark.reporting.reference import attach_reference, read_reference, reproduction_summary
from benchmark.reporting.stats import CONFIDENCE
from benchmark.reporting.tables import (
    DEFAULT_CUTOFFS,
    DEFAULT_MAIN_METRIC,
    DEFAULT_METRICS,
    MARK_BETTER,
    MARK_WORSE,
    Leaderboard,
    Refusal,
    build_leaderboards,
    resolve_columns,
)
from benchmark.tracking import schema as S

#: Standard definitions, shown unless the run's protocol.json defines the metric itself.
METRIC_DEFINITIONS = {
    "ndcg": "DCG@k / IDCG@k with binary relevance and log2(rank + 1) discount (see protocol.json for the "
    "IDCG variant)",
    "recall": "hits in the top k / number of the user's test items",
    "precision": "hits in the top k / k",
    "map": "mean over hits in the top k of precision at the hit's rank, divided by min(k, #test items)",
    "hit_rate": "1 if at least one test item is in the top k, else 0",
    "item_coverage": "share of the catalogue recommended to at least one user in the top k",
}

FILES = ("README.md", "leaderboard.tex", "report.html", "leaderboard.csv", "report.json", "CITATION.bib")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("reprorec")
    except Exception:
        return "0.0.0+unknown"


def _clean(x: Any) -> Any:
    """NaN/inf -> None so that the JSON is standard (and hashes the same everywhere)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        items = sorted(x) if isinstance(x, set) else x
        return [_clean(v) for v in items]
    return x


def _link(dashboard_url: str | None, exp_id: str, run_id: str | None = None) -> str:
    from benchmark.tracking.ui import runs_url

    return runs_url(dashboard_url, exp_id, run_id) if dashboard_url else ""


def _table_doc(t: Leaderboard) -> dict[str, Any]:
    label = {c.key: c.label for c in t.columns}
    rows = []
    for r in t.rows:
        prov = [
            {
                "run_id": run.run_id,
                "run_name": run.run_name,
                "seed": run.seed,
                "experiment_id": run.experiment_id,
                "git_commit": run.tags.get(S.GIT_COMMIT, ""),
                "git_dirty": run.tags.get(S.GIT_DIRTY, ""),
                "fp_split": run.split_fingerprint,
                "fp_dataset": run.tags.get(S.FP_DATASET, ""),
                "fp_train": run.tags.get(S.FP_TRAIN, ""),
                "fp_validation": run.tags.get(S.FP_VALIDATION, ""),
                "fp_test": run.tags.get(S.FP_TEST, ""),
                "fp_test_candidates": run.tags.get(S.FP_CANDIDATES, ""),
                "config_hash": run.tags.get(S.CONFIG_HASH, ""),
                "versions": run.tags.get(S.VERSIONS, ""),
                "hardware": run.tags.get(S.HARDWARE, ""),
                "command": run.tags.get(S.COMMAND, ""),
                "hyperparameters": {
                    k[len(S.PARAM_PREFIX_MODEL) :]: v
                    for k, v in sorted(run.params.items())
                    if k.startswith(S.PARAM_PREFIX_MODEL)
                },
            }
            for run in r.runs
        ]
        rows.append(
            {
                "model": r.model,
                "family": r.family,
                "seeds": r.seeds,
                "n_users": r.n_users,
                "n_users_skipped": r.n_users_skipped,
                "cells": {k: asdict(v) for k, v in r.cells.items()},
                "bold": sorted(r.bold),
                "p_value": r.p_value,
                "p_adjusted": r.p_adjusted,
                "mark": r.mark,
                "pairing_note": r.pairing_note,
                "cost": r.cost,
                "curves": r.curves,
                "untuned": r.untuned,
                "protocol": r.protocol,
                "provenance": prov,
            }
        )
    sig = [
        {
            "model": r.model,
            "p_value": r.p_value,
            "p_adjusted": r.p_adjusted,
            "mark": r.mark if r.mark in (MARK_BETTER, MARK_WORSE) else "",
        }
        for r in t.rows
        if math.isfinite(r.p_value)
    ]
    metric_names = {c.metric for c in t.columns}
    proto = t.card.get("protocol_json", {})
    # the evaluator's own definitions (logged with every cell), else the older top-level key
    settings = (proto.get("evaluation") or {}).get("settings") or {}
    proto_defs = settings.get("metric_definitions") or proto.get("metric_definitions", {})
    defs = {
        m: (
            proto_defs.get(m)
            if isinstance(proto_defs, dict) and m in proto_defs
            else METRIC_DEFINITIONS.get(m, "")
        )
        for m in sorted(metric_names)
    }
    refs = [
        {**x, "label": x["metric"] + (f"@{x['cutoff']}" if x["cutoff"] is not None else "")}
        for x in t.references
    ]
    main_refs = [x for x in refs if f"{x['metric']}_at_{x['cutoff']}" == t.main_key]
    return {
        "title": t.title,
        "slug": t.slug,
        "dataset": t.dataset,
        "split": t.split,
        "protocol": t.protocol,
        "split_fingerprints": t.split_fingerprints,
        "columns": [{"key": c.key, "label": c.label, "metric": c.metric, "k": c.k} for c in t.columns],
        "missing_columns": t.missing_columns,
        "main_key": t.main_key,
        "main_label": label.get(t.main_key, t.main_key),
        "reference_model": t.reference_model,
        "test": t.test,
        "correction": t.correction,
        "n_tests": len(sig),
        "significance": sig,
        "notes": t.notes,
        "rows": rows,
        "card": t.card,
        "metric_definitions": {k: v for k, v in defs.items() if v},
        "references": refs,
        "reproduction": reproduction_summary(refs) if refs else None,
        "reproduction_main": reproduction_summary(main_refs) if main_refs else None,
    }


def report_command(
    tracking_uri: str,
    experiment: str | None,
    sweep_run_id: str | None,
    out_dir: Path,
    reference: Path | None,
    extra: Sequence[str] = (),
    *,
    from_env: bool = False,
    cwd: Path | None = None,
) -> str:
    """The ``reprorec-report`` command line that regenerates the report, portable and secret-free.

    Args:
        tracking_uri: the tracking URI the report was read from.
        experiment: experiment name (when no sweep is given).
        sweep_run_id: the sweep run reported, if any.
        out_dir: the report folder.
        reference: the ``--reference`` CSV, if any.
        extra: further options, already formatted.
        from_env: the URI came from ``MLFLOW_TRACKING_URI`` (only the caller knows: a sweep exports
            its URI there for its jobs, so equality with the variable would not tell).
        cwd: paths under this folder are shown relative to it (default: the working directory).

    Returns:
        One shell line. The store is ``"$MLFLOW_TRACKING_URI"`` when the URI came from the environment
        or carries a password, else its path relative to ``cwd`` or ``<store>/<file name>``; the other
        paths likewise (the report is read on other machines, and may be public).
    """
    cwd = Path.cwd() if cwd is None else cwd
    uri = portable_tracking_uri(tracking_uri, from_env=from_env, cwd=cwd)
    # Not shlex-quoted: single quotes would keep the shell from expanding the variable.
    store = f'"{TRACKING_URI_REF}"' if uri == TRACKING_URI_REF else shlex.quote(uri)
    args = ["--sweep", sweep_run_id] if sweep_run_id else ["--experiment", experiment or "reprorec"]
    args += ["--out", portable_path(str(out_dir), cwd=cwd)]
    if reference is not None:
        args += ["--reference", portable_path(str(reference), cwd=cwd)]
    args += [portable_text(a, cwd=cwd) for a in extra]  # e.g. a --dashboard-url with a password
    return f"reprorec-report --tracking-uri {store} {shlex.join(args)}"


def _run_commands(tables: list[Leaderboard]) -> str:
    """The command lines that produced the runs shown, oldest first, each with its commit when
    they differ (cells reused from earlier sweeps, or re-run after a code change)."""
    used = sorted(
        {r.run_id: r for t in tables for row in t.rows for r in row.runs}.values(), key=lambda r: r.start_time
    )
    pairs: list[tuple[str, str]] = []
    for r in used:
        pair = (r.tags.get(S.GIT_COMMIT, "")[:12], r.tags.get(S.COMMAND, ""))
        if pair[1] and pair not in pairs:
            pairs.append(pair)
    if len(pairs) <= 1:
        return pairs[0][1] if pairs else ""
    return "\n".join(f"# at commit {commit or '?'}\n{cmd}" for commit, cmd in pairs)


def build_document(
    coll: Collection,
    tables: list[Leaderboard],
    refused: list[Refusal],
    *,
    settings: dict[str, Any],
    report_cmd: str,
    dashboard_url: str | None,
    from_env: bool = False,
    url: str | None = None,
) -> dict[str, Any]:
    """The report as one JSON-able document; ``report_id`` = sha256 of its content part.

    Every string of the document is made portable (:mod:`benchmark.portable`): no
    password, no absolute path of the machines that ran the cells or made the report. The content
    is rewritten *before* it is hashed and without reference to the working directory, so the id
    covers what the report shows and stays the same wherever the report is regenerated.

    Args:
        coll: what :func:`collect_runs` read.
        tables: the leaderboards.
        refused: the refused groups of runs.
        settings: the report options (metrics, cutoffs, test, ...).
        report_cmd: the command line that regenerates the report (see :func:`report_command`).
        dashboard_url: base URL of a running MLflow UI, or None.
        from_env: the tracking URI came from ``MLFLOW_TRACKING_URI`` (see :func:`report_command`).
        url: where the report is published (see :func:`generate_report`), or None.

    Returns:
        The document (content, ``report_id``, commands, source).
    """
    newest = max(c.end_time for c in coll.cells)
    date = datetime.fromtimestamp(newest / 1000, tz=UTC).strftime("%Y-%m-%d")
    run_cmd = _run_commands(tables) or coll.sweep_command
    name = ", ".join(coll.experiment_names)
    content = portable_doc(
        _clean(
            {
                "title": f"reprorec leaderboard: {name}"
                + (f" (sweep {coll.sweep_run_id})" if coll.sweep_run_id else ""),
                "version": _version(),
                "date": date,
                "settings": settings,
                "tables": [_table_doc(t) for t in tables],
                "refused": [asdict(r) for r in refused],
                "skipped_runs": [asdict(s) for s in coll.skipped],
                "sweep_command": run_cmd,
            }
        )
    )
    report_id = sha256_json(content)
    doc = copy.deepcopy(content)
    doc["report_id"] = report_id
    doc["commands"] = {"sweep": content["sweep_command"], "report": report_cmd}
    exp0 = coll.experiment_ids[0]
    # Links depend on where a dashboard runs, not on the results: added after the id is computed
    # (to the run's id in this store, which an imported run does not share with its stable id).
    in_store = {c.run_id: c.store_run_id or c.run_id for c in coll.cells}
    for t in doc["tables"]:
        for r in t["rows"]:
            for p in r["provenance"]:
                p["link"] = _link(dashboard_url, p["experiment_id"], in_store.get(p["run_id"], p["run_id"]))
    doc["source"] = {
        "tracking_uri": portable_tracking_uri(coll.tracking_uri, from_env=from_env, cwd=Path.cwd()),
        "experiments": coll.experiment_names,
        "experiment_ids": coll.experiment_ids,
        "sweep_run_id": coll.sweep_run_id,
        "dashboard_url": dashboard_url or "",
        "dashboard_runs_url": _link(dashboard_url, exp0, coll.sweep_run_id),
        "url": url or "",
    }
    # A last pass over what was added after the id (links and the dashboard URL may carry a
    # password); the content is portable already, so this changes nothing there.
    return portable_doc(doc)


def render_all(doc: dict[str, Any]) -> dict[str, str]:
    """Every output file's text (done fully before anything touches the destination)."""
    both = {t["slug"]: plots.table_figures(t) for t in doc["tables"]}
    figs = {slug: {name: png for name, (png, _svg) in f.items()} for slug, f in both.items()}
    svgs = {f"figures/{slug}-{name}.svg": svg for slug, f in both.items() for name, (_png, svg) in f.items()}
    return {
        "README.md": render.markdown(doc, figures={slug: list(f) for slug, f in both.items()}),
        "leaderboard.tex": render.latex(doc),
        "report.html": render.html_page(doc, figs),
        "leaderboard.csv": render.leaderboard_csv(doc),
        "report.json": json.dumps(
            {"generated": render.header_line(doc), **doc}, indent=1, sort_keys=True, allow_nan=False
        )
        + "\n",
        "CITATION.bib": render.bibtex(doc),
        **svgs,  # vector figures for papers (the HTML page embeds the same figures as 200 dpi PNG)
    }


def generate_report(
    tracking_uri: str,
    *,
    experiment: str | None = None,
    sweep_run_id: str | None = None,
    out_dir: Path,
    reference: Path | None = None,
    dashboard_url: str | None = None,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    main_metric: str = DEFAULT_MAIN_METRIC,
    test: str = "wilcoxon",
    correction: str = "holm",
    split_by_fingerprint: bool = False,
    n_resamples: int = 2000,
    log: Any = None,
    from_env: bool = False,
    url: str | None = None,
) -> Path:
    """Read the FINISHED cell runs and write the report folder ``out_dir`` atomically.

    Args:
        tracking_uri: MLflow tracking URI of the store holding the sweep.
        experiment: experiment name (default ``reprorec``), unless ``sweep_run_id`` is given.
        sweep_run_id: report only the cells of this sweep run.
        out_dir: the report folder (replaced as a whole).
        reference: optional CSV ``model,metric,cutoff,value,source`` shown beside our values.
        dashboard_url: base URL of a running MLflow UI; rows then link to their runs.
        cutoffs: cutoffs of the table columns.
        metrics: metric names of the table columns.
        main_metric: the column the significance tests use (``ndcg_at_10``).
        test: ``wilcoxon`` (default) or ``ttest``.
        correction: multiple-testing correction over each table's comparisons: ``holm``
            (default, family-wise error rate) or ``bh`` (Benjamini-Hochberg, false discovery rate).
        split_by_fingerprint: put runs on different splits into separate tables instead of refusing.
        n_resamples: bootstrap resamples per interval.
        log: a file for warnings (refused tables, skipped runs); default stderr.
        from_env: ``tracking_uri`` came from ``MLFLOW_TRACKING_URI``: the report names the variable,
            not the URI (a URI with a password is never printed, whatever this says).
        url: where the report is published (``http(s)://``, no credentials): the ``url`` of its
            BibTeX entry and a line of the report. Like the dashboard links it is not part of the
            content the report id covers: moving a report does not change its results.

    Returns:
        ``out_dir``.

    Raises:
        ReportInputError: nothing to report (no finished cells, or every table refused), or a
            sqlite file / store folder that does not exist.
    """
    log = log or sys.stderr
    out_dir = Path(out_dir)
    if url is not None and (problem := publication_url_problem(url, "--url")):
        raise ReportInputError(problem)  # before the store is read: a typo costs nothing
    coll = collect_runs(tracking_uri, experiment=experiment, sweep_run_id=sweep_run_id)
    tables, refused = build_leaderboards(
        coll.cells,
        metrics=metrics,
        cutoffs=cutoffs,
        main_metric=main_metric,
        test=test,
        split_by_fingerprint=split_by_fingerprint,
        n_resamples=n_resamples,
        correction=correction,
    )
    for s in coll.skipped:
        print(f"reprorec-report: skipped run {s.run_id} ({s.name}): {s.reason}", file=log)
    for r in refused:
        print(f"reprorec-report: {r.message()}", file=log)
    if not tables:
        raise ReportInputError(
            "no table could be built: every group of runs was refused\n"
            + "\n".join(r.message() for r in refused)
        )
    if not resolve_columns(coll.cells, metrics, cutoffs)[0]:  # the main metric alone is no table
        raise ReportInputError(
            f"none of the requested metrics {list(metrics)} at cutoffs {list(cutoffs)} "
            "was logged by any run; "
            "logged test metrics: "
            + ", ".join(sorted({k for c in coll.cells for k in c.metrics if k.startswith(S.TEST_PREFIX)}))
        )
    if reference is not None:
        ref = read_reference(shipped_file(reference))
        for t in tables:
            attach_reference(t, ref)
    extra: list[str] = []
    if list(metrics) != list(DEFAULT_METRICS):
        extra += ["--metrics", ",".join(metrics)]
    if list(cutoffs) != list(DEFAULT_CUTOFFS):
        extra += ["--cutoffs", ",".join(map(str, cutoffs))]
    if main_metric != DEFAULT_MAIN_METRIC:
        extra += ["--main-metric", main_metric]
    if test != "wilcoxon":
        extra += ["--test", test]
    if correction != "holm":
        extra += ["--correction", correction]
    if split_by_fingerprint:
        extra += ["--split-by-fingerprint"]
    if dashboard_url:
        extra += ["--dashboard-url", dashboard_url]
    if url:
        extra += ["--url", url]
    cmd = report_command(tracking_uri, experiment, sweep_run_id, out_dir, reference, extra, from_env=from_env)
    settings = {
        "metrics": list(metrics),
        "cutoffs": [int(k) for k in cutoffs],
        "main_metric": main_metric,
        "test": test,
        "correction": correction,
        "confidence": CONFIDENCE,
        "n_resamples": n_resamples,
        "split_by_fingerprint": split_by_fingerprint,
    }
    doc = build_document(
        coll,
        tables,
        refused,
        settings=settings,
        report_cmd=cmd,
        dashboard_url=dashboard_url,
        from_env=from_env,
        url=url,
    )
    files = render_all(doc)  # everything rendered before the destination is touched
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")
    return out_dir


__all__ = ["FILES", "ReportInputError", "build_document", "generate_report", "render_all"]
