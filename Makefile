# Two commands for a newcomer: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is pinned and installed first, so nothing pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export AIRSIGHT_HOME ?= $(CURDIR)/.airsight
EXAMPLES := $(AIRSIGHT_HOME)/examples

.PHONY: install chromium demo test bench bench-import bench-forecast bench-personalize bench-catalog bench-serving airflow lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	# deploy: the Celery provider, Redis and MLflow's auth app, for tests/deploy (the Celery deployment)
	$(PY) -m pip install --quiet -e ".[dev,deploy]"
	touch $@

# The peers (StatsForecast, implicit) live in their own venv: StatsForecast pins pandas below 3,
# and the test venv stays on pandas 3. Airsight runs on both.
BENCH_VENV ?= .venv-bench
BPY := $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.installed: pyproject.toml
	test -x $(BPY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BPY) -m pip install --quiet --upgrade pip
	$(BPY) -m pip install --quiet "$(TORCH_SPEC)"
	$(BPY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

demo: install
	$(VENV)/bin/airsight example-data $(EXAMPLES)
	AIRSIGHT_GROUPS_DIR=$(EXAMPLES)/groups.d $(VENV)/bin/airsight demo

# Airflow's UI, scheduler and DAG processor on PostgreSQL (see the README's Airflow section).
airflow: install
	test -d $(EXAMPLES)/groups.d || $(VENV)/bin/airsight example-data $(EXAMPLES)
	AIRSIGHT_GROUPS_DIR=$${AIRSIGHT_GROUPS_DIR:-$(EXAMPLES)/groups.d} $(PY) -m pipelines.launch.airflow_local

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# Debian's chromium for the browser test (tests/ui), installed when run as root (CI is); elsewhere the test skips.
chromium:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else echo "chromium is not installed (apt-get install chromium, as root): tests/ui will skip"; fi

bench: bench-import bench-forecast bench-personalize bench-catalog bench-serving

bench-import: $(BENCH_VENV)/.installed
	$(BPY) benchmarks/bench_import.py --out benchmarks/results

bench-forecast: $(BENCH_VENV)/.installed
	$(BPY) benchmarks/bench_forecast.py --out benchmarks/results

bench-personalize: $(BENCH_VENV)/.installed
	$(BPY) benchmarks/bench_personalize.py --out benchmarks/results

bench-catalog: $(BENCH_VENV)/.installed
	$(BPY) benchmarks/bench_catalog.py --out benchmarks/results

bench-serving: $(BENCH_VENV)/.installed
	$(BPY) benchmarks/bench_serving.py --out benchmarks/results

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(AIRSIGHT_HOME)
