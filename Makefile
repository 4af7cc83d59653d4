# One file of commands for people and CI. Every target creates/refreshes .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

.PHONY: install serve test lint format bench-serve reliability reliability-soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make serve: serve the embedded default models from checkpoints/ on port 8000
serve: $(STAMP)
	DYNALAY_PORT=$(PORT) $(PY) -m service

## make test: lint, then the whole test suite on CPU (what .ci/run calls)
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## make bench-serve: load-test a local server with real images (adaptive vs forced actions)
bench-serve: $(STAMP)
	$(PY) -m service.bench --model-dir checkpoints --out reports/bench_serve.json

## make reliability: fuzzing, hostile corpus, 4x overload, SIGTERM drain, model faults, limits
reliability: $(STAMP)
	timeout 900 $(PY) -m pytest tests/reliability -q -m "not slow"

## make reliability-soak: the above plus minutes of overload with an RSS drift check
reliability-soak: $(STAMP)
	timeout 1800 $(PY) -m pytest tests/reliability -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
