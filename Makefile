# reprorec: every target creates/uses the virtual environment .venv with the pinned, tested set of
# packages (requirements/constraints.txt). Needs only Python 3.11 with pip and venv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.reprorec-installed
# `make test` leaves out the minutes-long `slow` tests (neural models trained on ml-100k): `make test-slow`,
# and the fault-injection suite (sweeps killed at every fault point, ~10 min): `make test-faults`.
PYTEST_ARGS ?= -m "not slow and not faults"
EXPERIMENT ?= default

.PHONY: venv benchmark test test-slow test-faults lint typecheck clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt pip setuptools
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[test,cluster]"
	touch $@

venv: $(STAMP)

# The main job: the default experiment (every baseline on ml-100k, full tuning budget) ending in
# the leaderboard report under results/ (untracked: the checkout stays clean), then compared value by
# value with the committed report under reports/ (when there is one).
benchmark: venv
	$(BIN)/reprorec -m experiment=$(EXPERIMENT) report.out_dir=results/$(EXPERIMENT)
	@if [ -f reports/$(EXPERIMENT)/leaderboard.csv ]; then \
	  $(BIN)/python scripts/compare_leaderboards.py results/$(EXPERIMENT) reports/$(EXPERIMENT) --warn-only; fi

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m slow

test-faults: venv
	$(BIN)/python -m pytest -m faults tests/faults

lint: venv
	$(BIN)/ruff check benchmark baselines neural tests scripts
	$(BIN)/ruff format --check benchmark baselines neural tests scripts

typecheck: venv
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .reprorec/test-cache
