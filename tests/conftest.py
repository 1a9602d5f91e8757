"""Test configuration: dataset mirror detection, isolated cache, markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_MIRROR = REPO.parent / "shared" / "datasets"

# Real-data tests read the offline mirror; CI points REPROREC_MIRROR at ../shared/datasets.
if not os.environ.get("REPROREC_MIRROR") and _DEFAULT_MIRROR.is_dir():
    os.environ["REPROREC_MIRROR"] = str(_DEFAULT_MIRROR)

MIRROR = Path(os.environ["REPROREC_MIRROR"]) if os.environ.get("REPROREC_MIRROR") else None


def pytest_configure(config: pytest.Config) -> None:
    # Tests never write into the user's cache folder: a cache shared by the whole test session.
    if not os.environ.get("REPROREC_CACHE"):
        cache = REPO / ".reprorec" / "test-cache"
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["REPROREC_CACHE"] = str(cache)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MIRROR is not None and MIRROR.is_dir():
        return
    skip = pytest.mark.skip(reason="no dataset mirror: set REPROREC_MIRROR to ../shared/datasets")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mirror() -> Path:
    if MIRROR is None or not MIRROR.is_dir():
        pytest.skip("no dataset mirror")
    return MIRROR
