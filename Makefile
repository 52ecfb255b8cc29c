# The README's commands. Each sets itself up on a fresh machine (Debian packages for headless
# MuJoCo rendering, a venv, pip installs) and is fast the second time.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
ARGS ?=

.PHONY: setup run test test-fast bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for headless rendering:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# a CPU build of torch when none is installed and there is no CUDA (it lies on local disk here)
	@$(PY) -c "import torch" 2>/dev/null || { \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch; \
	  else $(PY) -m pip install -q torch==2.13.0; fi; }
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: setup
	$(PY) -m agents.cem_planner env=cheetah $(ARGS)

test: setup
	$(PY) -m pytest -q -n auto --dist loadfile --durations=15 $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow" $(ARGS)

bench: setup
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
