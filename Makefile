# Two set-up commands: `make train` and `make test`. Both create .venv and install into it.
# torch is pinned by constraints.txt (a CPU wheel on the development machines; newer versions pull CUDA builds).
# `make train CONSTRAINTS=` installs without the pin, keeping a torch build already in .venv (a GPU one, say).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= constraints.txt
PIP := $(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS))
MODEL ?= fast

.PHONY: install dev train test benchmark clean default-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files re-run the install only when the project's metadata changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) --editable .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) --editable '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

train: install  # `convnet train` checks its options, then fetches MNIST when it is not cached yet
	$(BIN)/convnet train --model $(MODEL)

# The integration tests read the real MNIST from the user's cache (CONVNET_REAL_HOME where set): fetched here, once,
# so that a fresh machine runs them rather than skipping them.
test: dev
	$(BIN)/python -m ruff check --quiet src tests benchmarks examples
	$(if $(CONVNET_REAL_HOME),CONVNET_HOME=$(CONVNET_REAL_HOME)) $(BIN)/convnet data fetch mnist
	$(BIN)/python -m pytest -q

benchmark: install
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# The model shipped inside the package (convnet predict works with no training): `robust`, trained by convnet on
# 2 CPU processes of one thread each (DDP; per-process batch 64 = the recipe's 128 in all), about 13 minutes.
SHIPPED := src/convnet/weights/default
default-model: install
	$(BIN)/convnet data fetch mnist
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc-per-node 2 -m convnet train --model robust --seed 1 \
		--batch-size 64 --val-split 0.1 --device cpu --precision fp32 --out runs/default-model --overwrite
	mkdir -p $(SHIPPED)
	cp runs/default-model/model.safetensors runs/default-model/model.json $(SHIPPED)/
	$(BIN)/convnet evaluate $(SHIPPED)
