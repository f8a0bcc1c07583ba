# Two entry points for a fresh machine (Python 3.11): `make demo` (the DVC pipeline) and `make test`.
# Both create or reuse .venv and install the locked dependencies with pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean-venv

# The pipeline's commands (bacl, dvc, papermill, jupyter) run from the environment.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Last step: the notebooks' kernel (papermill -k python3) is this environment's Python.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (bacl)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: the DVC pipeline (dvc.yaml) on params.yaml, i.e. generate the
# synthetic benchmark, train stage 1, BACL and the baseline, evaluate both, run the notebooks into reports/.
demo: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
