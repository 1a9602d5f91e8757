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

.PHONY: venv benchmark test test-slow test-faults wheel-check lint typecheck clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt pip setuptools
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[test,cluster,neural]"
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

# The wheel as a user gets it: built, installed with its dependencies in a fresh venv outside the
# checkout, then a smoke sweep, its report and a user's own model YAML (REPROREC_CONF_PATH) run from
# an empty folder; the configs come from the wheel's data files. Installed without the `neural` extra,
# so all of it runs with torch absent (checked).
WHEEL_DIR ?= /tmp/reprorec-wheel-check
# the Python of the fresh venv (CI also runs it with each other supported version it finds)
WHEEL_PYTHON ?= $(PYTHON)
wheel-check: venv
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)/work/myconf/model
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation . -w $(WHEEL_DIR)/dist
	$(WHEEL_PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install -q -c requirements/constraints.txt $(WHEEL_DIR)/dist/*.whl
	printf 'name: ease_small\ncls: baselines.ease.EASE\nfamily: linear\nsearch_space: {}\nparams: {l2: 50.0}\n' \
	  > $(WHEEL_DIR)/work/myconf/model/ease_small.yaml
	cd $(WHEEL_DIR)/work && ../venv/bin/python -c "import benchmark; assert 'site-packages' in benchmark.__file__" \
	  && ! ../venv/bin/python -c "import torch" 2>/dev/null \
	  && ../venv/bin/python -c "from benchmark.registry import shipped_file as f; \
	       assert f('reports/reference/dacrema/neumf_ml1m.csv').is_file()" \
	  && ../venv/bin/reprorec -m experiment=smoke tracking.uri=sqlite:///mlflow.db progress=false \
	  && REPROREC_CONF_PATH=myconf ../venv/bin/reprorec -m experiment=smoke model=ease_small seed=0 \
	       tracking.uri=sqlite:///mlflow.db progress=false \
	  && ../venv/bin/reprorec-report --tracking-uri sqlite:///mlflow.db --out report \
	  && grep -q "ease_small" report/README.md && test -f report/report.json
	@echo "wheel-check: the installed wheel ran a sweep, a user model and a report outside the checkout, without torch"

lint: venv
	$(BIN)/ruff check benchmark baselines neural tests scripts
	$(BIN)/ruff format --check benchmark baselines neural tests scripts

typecheck: venv
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .reprorec/test-cache
