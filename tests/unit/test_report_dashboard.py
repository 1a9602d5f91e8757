"""Dashboard links: the runs view of MLflow's UI, never the GenAI overview."""

from __future__ import annotations

import socket

from benchmark.cli.dashboard import free_port
from benchmark.tracking.ui import CELLS_FILTER, runs_url


def test_runs_url_opens_the_classic_runs_view():
    assert runs_url("http://127.0.0.1:5000/", "3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )


def test_run_page_link_keeps_the_model_training_view():
    assert runs_url("http://127.0.0.1:5000", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def test_cells_filter_is_url_encoded():
    url = runs_url("http://127.0.0.1:5000", "1", search=CELLS_FILTER)
    assert url.endswith("&searchFilter=tags.%60reprorec.run_type%60%20%3D%20%27cell%27")


def test_free_port_is_bindable_on_loopback():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_shared_view_key_is_passed_in_the_runs_url():
    url = runs_url("http://127.0.0.1:5000", "1", view="reprorec-cells")
    assert (
        url
        == "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=reprorec-cells"
    )


def test_cells_view_lists_test_metrics_and_fingerprint_columns_sorted_by_ndcg(tmp_path):
    import json

    import numpy as np
    from mlflow import MlflowClient

    from benchmark.cli.dashboard import SHARED_VIEW_PREFIX, install_cells_view
    from tests.tracking_fixtures import FakeCell, log_sweep, new_sqlite_store

    uri = new_sqlite_store(tmp_path)
    per_user = {"ndcg_at_10": np.ones(3), "recall_at_10": np.ones(3), "ndcg_at_20": np.ones(3)}
    exp_id, _, _ = log_sweep(uri, [FakeCell("toppop", "non-personalised", 0, per_user)])
    key = install_cells_view(uri, exp_id)
    tags = MlflowClient(tracking_uri=uri).get_experiment(exp_id).tags
    state = json.loads(tags[SHARED_VIEW_PREFIX + key])
    assert state["searchFilter"] == CELLS_FILTER
    assert state["orderByKey"] == "metrics.`test/ndcg_at_10`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:2] == ["metrics.`test/ndcg_at_10`", "metrics.`test/recall_at_10`"]
    assert "tags.`reprorec.fingerprint.split`" in state["selectedColumns"]
