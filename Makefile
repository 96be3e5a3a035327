# The two commands of the README: `make demo` (the main job) and `make test` (which installs fairseq first, so
# that the fairseq plugin's tests run; `make fairseq` alone does that).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt setup.cfg setup.py | sha256sum | cut -c1-16)
# fairseq for ofasys_fs/fairseq_plugin (docs/fairseq.md): setup.cfg's `fairseq` extra, pinned. fairseq-fixed is
# built against the installed torch (no build isolation, after the other requirements); pip caches the wheel.
FAIRSEQ_STAMP := $(VENV)/.fairseq-installed
FAIRSEQ_REQUIREMENTS = $(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(c["options.extras_require"]["fairseq"].strip())'

.PHONY: test demo demo-smoke install bench fairseq

$(STAMP): requirements.txt setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: $(STAMP) $(FAIRSEQ_STAMP)
	$(PY) -m pytest -q --durations=25 tests

$(FAIRSEQ_STAMP): $(STAMP)
	$(PY) -m pip install -q $$($(FAIRSEQ_REQUIREMENTS) | grep -v '^fairseq-fixed')
	$(PY) -m pip install -q --no-deps --no-build-isolation $$($(FAIRSEQ_REQUIREMENTS) | grep '^fairseq-fixed')
	touch $@

fairseq: $(FAIRSEQ_STAMP)

# The main job: data, preprocessing, training, evaluation and pictures in demo_out/ (run_scripts/demo/README.md).
demo: $(STAMP)
	$(PY) -m run_scripts.demo.run_demo --out demo_out

# The same steps on a few rows for about 60 updates; `make test` runs it too (tests/test_demo_smoke.py).
demo-smoke: $(STAMP)
	$(PY) -m run_scripts.demo.run_demo --smoke --out demo_out/smoke

# Speed against Hugging Face BART of the same size, and data throughput (run_scripts/bench/RESULTS.md).
# Installs setup.cfg's `bench` extra (transformers); each script ends with one `RATIO name=value ...` line.
bench: $(STAMP)
	$(PY) -m pip install -q "$$($(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(c["options.extras_require"]["bench"].strip())')"
	$(PY) -m run_scripts.bench.train_bench
	$(PY) -m run_scripts.bench.generate_bench
	$(PY) -m run_scripts.bench.data_bench
