# The two commands: `make run` and `make test` (README). Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m app.launcher run

test: $(VENV)/.installed-dev
	$(PY) -m app.launcher test $(PYTEST_ARGS)

# The peer queues of bench/queue_bench.py and the bare app's pool; wrk comes from the system (apt-get install wrk).
$(VENV)/.installed-bench: bench/requirements.txt $(VENV)/.installed-dev
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(VENV)/.installed-bench
	bash bench/run.sh

clean:
	rm -rf $(VENV) .data
