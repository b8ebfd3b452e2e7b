# berth: the everyday commands. `make test` sets up a fresh machine and runs the suite.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test unit integration lint check demo bench clean

setup:
	./scripts/setup.sh

test: check
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration tests/compat

lint: check

# ruff and mypy: part of `make test`, so CI holds the code to them.
check: setup
	$(VENV)/bin/ruff check lowrun shim engine tests bench scripts
	$(VENV)/bin/mypy lowrun shim engine

demo: setup
	./scripts/demo.sh

bench: setup
	$(PY) bench/lowrun_run.py
	$(PY) bench/shim_lifecycle.py
	$(PY) bench/images_pull.py
	$(PY) bench/images_rootfs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
