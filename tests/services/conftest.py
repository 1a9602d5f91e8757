"""Fixtures shared by the services tests: PostgreSQL + MLflow server on 127.0.0.1 per module."""

from __future__ import annotations

import pytest

from benchmark import services


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    """(folder, state) of services started for the module; skipped when PostgreSQL is missing."""
    try:
        services.pg_bin("initdb")
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("svc") / ".services"
    state = services.up(folder)
    try:
        yield folder, state
    finally:
        services.down(folder)
