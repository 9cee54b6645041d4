# clipforge: the two commands of the README.
#   make demo   set up .venv and run the main job (emoji data -> train -> eval -> index -> search)
#   make test   set up .venv and run ruff + the test suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core

.PHONY: demo test lint venv clean bench

# The demo needs the runtime packages only; the tests add the dev extras (transformers, playwright, onnxruntime,
# ...) on top, which keeps the demo's install step short on a fresh machine.
$(CORE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	# Animal-MNIST's data are two pickles; its loader imports tensorflow, which clipforge never uses.
	# pytablericons' SVG files are read directly; its module imports pygame, which clipforge never uses.
	$(BIN)/pip install -q --no-deps animal-mnist==0.4 pytablericons==1.0.1
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# OpenCLIP's own model code is the parity reference for OpenAI-layout weights; its wheel is read, not installed
# (it needs torchvision, which does not import beside the CPU torch wheel). Without it those tests skip.
.whl/.openclip:
	mkdir -p .whl
	$(BIN)/pip download -q --no-deps open_clip_torch==3.3.0 -d .whl && touch $@ || echo "open_clip wheel unavailable: its parity tests will skip"

test: $(STAMP) lint .whl/.openclip
	$(BIN)/python -m pytest -q -n 2 --timeout 900 tests

demo: $(CORE_STAMP)
	$(BIN)/clipforge demo

clean:
	rm -rf $(VENV) runs
