# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything on first use (idempotent: the stamp is rebuilt only when a requirements file changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.oxnet-installed
DEMO_OUT ?= output/demo

.PHONY: demo test lint format install clean-venv bench fuzz

install: $(STAMP)

$(STAMP): requirements/base.txt requirements/constraints.txt tools/install_detectron2.py setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/base.txt -c requirements/constraints.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out $(DEMO_OUT)

test: lint
	OMP_NUM_THREADS=2 $(PY) -m pytest tests

# ruff's lint rules and formatting (pyproject.toml says which rules and why): any finding fails, so
# `make test` and CI fail too. `make format` rewrites the tree and fixes what ruff can fix safely.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The readers' fuzz tests with many random examples (`make test` runs a few derandomized ones).
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	OXNET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=2 $(PY) -m pytest -q \
		tests/data/test_fuzz_readers.py tests/data/importers/test_fuzz_importers.py

# The paper's Table 1 on synthetic chest X-rays: 13 rows x 3 seeds on the CPU, a few hours (BENCHMARKS.md).
bench: $(STAMP)
	$(PY) -m oxnet.bench table1 --data synthetic --out output/bench/synthetic

clean-venv:
	rm -rf $(VENV)
