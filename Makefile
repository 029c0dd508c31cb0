# Quick start: `make demo` runs the embedded demo end to end, `make test` passes every test.
# Both set up .venv first. torch is installed from the local CPU build before the project so that
# the project's `torch>=...` range is already satisfied and pip pulls no CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/ldaq demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -ra

bench: setup
	$(BIN)/ldaq bench

clean:
	rm -rf $(VENV) *.egg-info test-output
