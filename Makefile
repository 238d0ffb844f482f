# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# GPU users: make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_PRESET ?= auto
DEMO_STEPS ?=
DEMO_MINUTES ?=
# DEMO_STEPS: training steps each `make demo` adds (default 500 from the shipped base model);
# DEMO_MINUTES: a cap on training time (default: none with a base model, 3 min without one, e.g. on a GPU)

.PHONY: setup demo test bench clean chromium

setup: $(STAMP)

# Set-up in four numbered steps, each with what it installs, about how long it takes (2 CPU cores, a fast line)
# and how long it took; pip prints its own download bars.
STEP = @t0=$$(date +%s); echo "[$(1)/4] $(2)"; $(3) && echo "      done in $$(( $$(date +%s) - t0 )) s"

$(STAMP): pyproject.toml Makefile
	$(call STEP,1,creating the virtual environment $(VENV) (~10 s),$(PYTHON) -m venv $(VENV))
	$(call STEP,2,upgrading pip (~10 s),$(PIP) install -q --upgrade pip)
	$(call STEP,3,installing PyTorch $(TORCH_SPEC) (~1 min; the CPU wheel is ~200 MB to download),$(PIP) install --progress-bar on $(TORCH_SPEC))
	$(call STEP,4,installing djenerator with its dependencies and test tools (~1-2 min; about 60 packages),$(PIP) install --progress-bar on -e '.[test]')
	@touch $(STAMP)
	@echo "set-up done: $(VENV)"

demo: setup
	$(VENV)/bin/djenerator demo --out $(DEMO_DIR) --preset $(DEMO_PRESET) \
	  $(if $(DEMO_STEPS),--steps $(DEMO_STEPS)) $(if $(DEMO_MINUTES),--minutes $(DEMO_MINUTES))

test: setup chromium
	$(PY) -m pytest

# The browser test drives Debian's Chromium (never a downloaded browser); install it when we can.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: could not install Debian's chromium; the browser test will be skipped"; \
	else echo "note: Debian's chromium is missing and installing it needs root and apt-get; the browser test will be skipped"; fi

bench: setup
	$(PY) benchmarks/presets.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info
