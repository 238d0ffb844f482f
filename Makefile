# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# GPU users: make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_PRESET ?= original
DEMO_MINUTES ?= 3

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/djenerator demo --out $(DEMO_DIR) --preset $(DEMO_PRESET) --minutes $(DEMO_MINUTES)

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/presets.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info
