# make run   -> set up (venv, pinned torch, project, data) and run the main job
# make test  -> set up and run the test suite
# Override torch for CUDA machines, e.g. make run TORCH="torch==2.13.0" TORCH_INDEX="--index-url <your cuda wheel index>"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
MAIN_ARGS ?= episodes=300 compare_with=[uniform,random]
DATA_ROOT ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test data bench clean-venv
setup: $(VENV)/.installed data

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH)"   # torch first, pinned: an unpinned torch pulls CUDA wheels
	$(BIN)/pip install -q -e ".[test]"
	touch $@

data:
	@if [ ! -s $(DATA_ROOT)/train-images-idx3-ubyte.gz ] && [ ! -s $(DATA_ROOT)/train-images-idx3-ubyte ]; then \
		echo "Fashion-MNIST not found in $(DATA_ROOT): installing Debian's dataset-fashion-mnist"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

run: setup
	$(BIN)/python -m amc.search experiment=resnet20_macs50 $(MAIN_ARGS)

test: setup   # AMC_REQUIRE_LAUNCHERS: the joblib and Ray multirun tests must run, not skip
	AMC_REQUIRE_LAUNCHERS=1 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python experiments/benchmark_prune.py
