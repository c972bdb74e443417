# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torch: CPU machines (like CI's) take torch==2.13.0, a CPU wheel that lies on their disk; without the
# pin pip would download a multi-GB CUDA build. Where nvidia-smi answers, pip picks the default (CUDA)
# build. Override either way: `make install TORCH_SPEC='torch==2.8.0'`.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4,torch==2.13.0)

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1

.PHONY: install test test-slow demo lint format bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing $(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The fast suite on TEST_WORKERS processes, each test file whole on one of them (its module fixtures are
# built once); 2 workers took 353 s where one took 613 s on a 2-core machine. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test-slow: install
	$(BIN)/python -m pytest -q -m slow

demo: install
	$(BIN)/hfllm demo

lint: install
	$(BIN)/ruff check hfllm tests bench tools
	$(BIN)/ruff format --check hfllm tests bench tools

format: install
	$(BIN)/ruff check --fix hfllm tests bench tools
	$(BIN)/ruff format hfllm tests bench tools

bench: install
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/pretrain.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/generate.py

docs: install
	$(BIN)/python -m hfllm.config.reference > docs/config-reference.md.tmp && mv docs/config-reference.md.tmp docs/config-reference.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
