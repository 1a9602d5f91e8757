"""Links into the MLflow UI (the dashboard a report points to and ``reprorec-dashboard`` opens)."""

from __future__ import annotations

import urllib.parse

#: MLflow 3 opens experiments it takes for GenAI on the traces/overview tab; this query pins the
#: classic "model training" runs view.
WORKFLOW_QUERY = "workflowType=machine_learning"


def runs_url(
    base_url: str, experiment_id: str, run_id: str | None = None, *, search: str = "", view: str = ""
) -> str:
    """The runs view of an experiment (or one run's page) in the MLflow UI.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:5000``.
        experiment_id: the experiment.
        run_id: link to this run's page instead of the list.
        search: an MLflow search filter for the list (e.g. only the cell runs).
        view: a shared view key (see :func:`install_cells_view`): its columns and filter apply.
    """
    url = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if run_id:
        return f"{url}/{run_id}?{WORKFLOW_QUERY}"
    query = WORKFLOW_QUERY + (f"&searchFilter={urllib.parse.quote(search)}" if search else "")
    query += f"&viewStateShareKey={urllib.parse.quote(view)}" if view else ""
    return f"{url}?{query}"


#: The MLflow search filter of the cell runs (no sweep runs, no trial runs).
CELLS_FILTER = "tags.`reprorec.run_type` = 'cell'"
