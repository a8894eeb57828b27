# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PRESET ?= default
BIN     = $(VENV)/bin

.PHONY: setup setup-dev reproduce smoke test unit-tests smoke-check nbtest pytest export clean-nbs readme check-clean

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

## The library's notebook tests and pytest, then every analysis notebook (--all) at the smoke preset through
## `dtir reproduce` (one run folder, so the notebooks share their models, as in the main job) and a check of every
## results key and figure. nbdev-test leaves nbs/analyses/ to that run: executed by nbdev-test, each analysis notebook
## trained all its models again in a folder of its own (9 of the 10.4 minutes nbdev-test took on the 2-core CPU, on top
## of the same notebooks in CI's smoke run). The parts run one after the other: beside the smoke run (each on one thread)
## the unit tests took 6.5 instead of 4.6 min and a kernel shutdown under that load printed an IPKernelApp error that
## tests/test_progress.py rightly refuses. CHECK_FLAGS adds options to tools/check_results.py (CI: --browser FILE).
SMOKE_OUT   ?= outputs/smoke
CHECK_FLAGS ?=
REAL_FLAG    = $(if $(wildcard ../shared/data/rain100l),--real,)
test: unit-tests smoke-check

## nbdev-test of the library's notebooks, then pytest
unit-tests: $(VENV)/.dev
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --skip-folder-re '^([_.]|analyses$$)'
	$(BIN)/python -m pytest -q --durations=8; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

## every analysis notebook at the smoke preset, then the check of its results keys, figures and report
smoke-check: $(VENV)/.dev
	$(BIN)/dtir reproduce --preset smoke --all --out $(SMOKE_OUT)
	$(BIN)/python tools/check_results.py $(SMOKE_OUT) --all $(REAL_FLAG) $(CHECK_FLAGS)

## nbdev-test of every notebook, the analysis notebooks included (each at smoke, in a temporary folder of its own)
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
