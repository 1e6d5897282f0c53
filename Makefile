# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each creates/updates the local virtualenv .venv first; nothing else needs installing by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aio-installed
PYTEST_ARGS ?=

.PHONY: demo test venv train clean-outputs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aio-train

train: $(STAMP)
	$(VENV)/bin/aio-train $(ARGS)

# pytest's exit code 5 ("no tests collected") is not a failure of the suite.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

clean-outputs:
	rm -rf outputs/runs outputs/multirun outputs/tables outputs/mlflow.db outputs/mlartifacts
