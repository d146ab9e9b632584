# Two set-up commands: `make train` and `make test`. Both create .venv and install into it.
# torch is pinned by constraints.txt (a CPU wheel on the development machines; newer versions pull CUDA builds).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt
MODEL ?= fast

.PHONY: install dev train test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files re-run the install only when the project's metadata changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --editable .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) --editable '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

train: install
	$(BIN)/convnet data fetch mnist
	$(BIN)/convnet train --model $(MODEL)

test: dev
	$(BIN)/python -m pytest -q

benchmark: install
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
