# `make demo` and `make test` both start by creating .venv and installing the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# A small real sweep on the embedded digits dataset (their own ε: target 0.1), evaluated with
# AutoAttack at the target ε (`--eval standard`). ASHA stops weak trials early, so the best
# configurations get all 15 epochs.
DEMO_FLAGS ?= --dataset digits --trials 8 --epochs 15 --eval standard

.PHONY: install demo test clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(INSTALLED)

demo: install
	$(VENV)/bin/orch sweep er-classifier $(DEMO_FLAGS)

test: install
	$(PY) -m pytest -q

clean:
	rm -rf results mlruns mlflow.db .pytest_cache
