# Two commands: `make demo` and `make test`. Everything else is set up on the way.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup demo test lint checkpoint bench browser clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium drives the browser tests (never `playwright install`, which downloads browsers).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

demo: setup
	$(PY) app.py $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check longvmnet tests app.py
	$(VENV)/bin/ruff format --check longvmnet tests app.py

test: setup browser lint
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The whole recipe behind the bundled checkpoint (data, backbone probes, training, evaluation, ablations),
# then the demo's files beside its weights (out-of-domain statistics, calibration, find-object precision).
checkpoint: setup
	$(PY) -m longvmnet.train.recipe $(RECIPE_ARGS)
	$(PY) -m longvmnet.explain.domain --data runs/recipe/data --cache runs/recipe/cache
	$(PY) -m longvmnet.explain.calibration --data runs/recipe/data --cache runs/recipe/cache
	$(PY) -m longvmnet.explain.find --data runs/recipe/data --cache runs/recipe/cache

bench: setup
	$(VENV)/bin/longvmnet bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
