# Two commands for a newcomer: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is pinned and installed first, so nothing pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export AIRSIGHT_HOME ?= $(CURDIR)/.airsight
EXAMPLES := $(AIRSIGHT_HOME)/examples

.PHONY: install demo test bench lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

demo: install
	$(VENV)/bin/airsight example-data $(EXAMPLES)
	AIRSIGHT_GROUPS_DIR=$(EXAMPLES)/groups.d $(VENV)/bin/airsight demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) benchmarks/bench_import.py --out benchmarks/results

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(AIRSIGHT_HOME)
