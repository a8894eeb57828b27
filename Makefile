# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PRESET ?= default
BIN     = $(VENV)/bin

.PHONY: setup setup-dev reproduce smoke test nbtest pytest export clean-nbs readme check-clean

# torch first, pinned: an unpinned torch (or one pulled in by another package) fetches gigabytes of CUDA wheels.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"

# PYTHONWARNINGS: not setuptools' "Editable installation" notice (a UserWarning of the build backend, printed on every install)
$(VENV)/.core: $(BIN)/python pyproject.toml
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

## The main job on the built-in data: outputs/$(PRESET)/{report.md,report.html,results.json,figures/,notebooks/}
reproduce: $(VENV)/.core
	$(BIN)/dtir reproduce --preset $(PRESET)

smoke: $(VENV)/.core
	$(BIN)/dtir reproduce --preset smoke --out outputs/smoke

## Notebook tests (smoke presets) then pytest.
test: $(VENV)/.dev
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

nbtest: $(VENV)/.dev
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2

pytest: $(VENV)/.dev
	$(BIN)/python -m pytest -q

export: $(VENV)/.dev
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/python tools/readme.py

readme: $(VENV)/.dev
	$(BIN)/python tools/readme.py

## Fails if nbdev-export / nbdev-clean / the README generator would change tracked files.
check-clean: export
	git diff --exit-code -- dtir nbs README.md
