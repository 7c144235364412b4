# Quick start: `make demo` runs the example job, `make test` runs the whole test suite.
# Both create .venv/ and install mlv into it (editable, with the test extras) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_store.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_trace.py
	$(PY) bench/bench_remote.py
	$(PY) bench/bench_paths.py
	$(PY) bench/bench_remote_run.py
	$(PY) bench/bench_example.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_exp.py
	$(PY) bench/bench_score.py
	$(PY) bench/bench_serve.py
	$(PY) bench/bench_cli.py
	$(PY) bench/bench_import_dvc.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis bench/.work
