# The two commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt setup.cfg setup.py | sha256sum | cut -c1-16)

.PHONY: test demo demo-smoke install bench speech-tools

$(STAMP): requirements.txt setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Text-to-speech data and scoring (tests, demo): flite (Debian; flite + libflite1: 13 MB download, 28 MB installed) and
# the pocketsphinx recogniser (PyPI wheel 29 MB with its English model; --no-deps: its sounddevice dependency is
# only for live microphones).
speech-tools: $(STAMP)
	command -v flite >/dev/null || apt-get install -y -q flite || (apt-get update -q && apt-get install -y -q flite)
	$(PY) -c "import pocketsphinx" 2>/dev/null || $(PY) -m pip install -q --no-deps pocketsphinx==5.1.1

test: $(STAMP) speech-tools
	$(PY) -m pytest -q --durations=25 tests

# The main job: data, preprocessing, training, evaluation and pictures in demo_out/ (run_scripts/demo/README.md).
demo: $(STAMP) speech-tools
	$(PY) -m run_scripts.demo.run_demo --out demo_out

# The same steps on a few rows for about 60 updates; `make test` runs it too (tests/test_demo_smoke.py).
demo-smoke: $(STAMP) speech-tools
	$(PY) -m run_scripts.demo.run_demo --smoke --out demo_out/smoke

# Speed against Hugging Face BART of the same size, and data throughput (run_scripts/bench/RESULTS.md).
# Installs setup.cfg's `bench` extra (transformers); each script ends with one `RATIO name=value ...` line.
bench: $(STAMP)
	$(PY) -m pip install -q "$$($(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(c["options.extras_require"]["bench"].strip())')"
	$(PY) -m run_scripts.bench.train_bench
	$(PY) -m run_scripts.bench.generate_bench
	$(PY) -m run_scripts.bench.data_bench
