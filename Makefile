# Two entry points, each doing its own set-up on a fresh machine with Python 3.11:
#   make run   installs everything and runs the default IEEE 13-node market
#   make test  installs everything and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/p2pgame solve

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/best_response.py
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) build *.egg-info
