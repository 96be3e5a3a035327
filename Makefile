# The two commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt setup.cfg setup.py | sha256sum | cut -c1-16)

.PHONY: test demo install

$(STAMP): requirements.txt setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=25 tests

demo: $(STAMP)
	$(PY) run_scripts/demo/run_demo.py
