"""The Optuna study storage: where every cell's study, and the lease table, live.

A sqlite file next to the tracking store (``optuna.db``) by default, or a database server shared by
several machines (``tuner.storage=services`` / ``postgresql+psycopg2://...``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna

from benchmark.errors import ConfigError
from benchmark.io import sqlite_path
from benchmark.redaction import redact_url

#: How long a PostgreSQL / MySQL connection attempt may take before the storage is reported unreachable.
CONNECT_TIMEOUT_S = 10


def engine_options(storage: str) -> dict[str, Any]:
    """SQLAlchemy engine options of a storage URL: a long lock wait for sqlite, a connect timeout else."""
    if storage.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if storage.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def open_storage(storage: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open (creating its tables on first use) an Optuna RDB storage.

    The sweep creates it once before jobs fan out; the retry covers processes that still race on
    the first use (SQLite reports the loser as a UNIQUE / locked error). A server that cannot be
    reached (SQLAlchemy's ``OperationalError``, after :data:`CONNECT_TIMEOUT_S`) fails at once: a
    :class:`ConfigError` naming the URL with its password redacted.
    """
    import sqlalchemy.exc

    db = sqlite_path(storage)
    if db is not None:  # built in a temporary file and renamed: a kill never leaves half a schema
        from benchmark.io import create_sqlite_atomically

        create_sqlite_atomically(db, _build_optuna_schema, what=f"the Optuna storage {db.name}")
    for i in range(attempts):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine_options(storage))
        except ImportError:  # optuna's wrapping of a missing driver (psycopg2 without the extra)
            raise ConfigError(
                f"Optuna storage {redact_url(storage)} needs the database driver of "
                f"{storage.split('://', 1)[0]!r}, which is not installed; for PostgreSQL "
                "(postgresql+psycopg2://, tuner.storage=services): pip install 'reprorec[cluster]'"
            ) from None
        except Exception as exc:
            unreachable = db is None and isinstance(exc, sqlalchemy.exc.OperationalError)
            if unreachable or i == attempts - 1:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ConfigError(
                    f"Optuna storage {redact_url(storage)} is not usable "
                    f"(connect timeout {CONNECT_TIMEOUT_S} s): {type(exc).__name__}: {first}"
                ) from None
            time.sleep(0.2 * (i + 1))
    raise AssertionError("unreachable")


def _build_optuna_schema(url: str) -> None:
    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def open_study(study_name: str, storage: str | None, direction: str) -> optuna.Study:
    """Create or load the study ``study_name`` (``storage`` None keeps it in memory)."""
    rdb = None if storage is None else open_storage(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(
            study_name=study_name,
            storage=rdb,
            direction=direction,  # type: ignore[arg-type]  # checked by check_tuner_config
            load_if_exists=True,
        )
