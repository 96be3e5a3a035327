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

.PHONY: test demo demo-smoke install bench multitask clipart fairseq speech-tools

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

# Two pytest workers (pytest-xdist), whole files each: every test runs one torch thread (tests/conftest.py), so one
# process leaves a core of this 2-core machine idle; a session fixture is trained once per worker that needs it
# (tests/conftest.py keeps the files of the costliest one on one worker, and hands out the costliest files first).
# The motion tests read CMU clips from Debian's assimp-testmodels: installed, or fetched once into ~/.cache/ofasys_fs
# (without it they are skipped, saying so).
test: $(STAMP) $(FAIRSEQ_STAMP) speech-tools
	$(PY) -m run_scripts.demo.data_motion
	$(PY) -m pytest -q -n auto --maxprocesses 2 --dist loadfile --durations=25 tests

$(FAIRSEQ_STAMP): $(STAMP)
	$(PY) -m pip install -q $$($(FAIRSEQ_REQUIREMENTS) | grep -v '^fairseq-fixed')
	$(PY) -m pip install -q --no-deps --no-build-isolation $$($(FAIRSEQ_REQUIREMENTS) | grep '^fairseq-fixed')
	touch $@

fairseq: $(FAIRSEQ_STAMP)

# The main job: data, preprocessing, training, evaluation and pictures in demo_out/ (run_scripts/demo/README.md).
demo: $(STAMP) speech-tools
	$(PY) -m run_scripts.demo.run_demo --out demo_out

# The same steps on a few rows for about 60 updates; `make test` runs it too (tests/test_demo_smoke.py).
demo-smoke: $(STAMP) speech-tools
	$(PY) -m run_scripts.demo.run_demo --smoke --out demo_out/smoke

# Generalist versus specialists on the real-photo tasks (docs/multitask.md); about 15 minutes on one core.
multitask: $(STAMP)
	$(PY) -m run_scripts.multitask.harness --tasks photo --updates-per-task 1500 --seed 1

# The harness's clipart set (`--tasks clipart`) reads Open Clip Art drawings and their authors' titles from Debian's
# openclipart-png (public domain; 131 MB download, 154 MB installed). Only that set needs it.
clipart:
	test -d /usr/share/openclipart/png || apt-get install -y -q openclipart-png || (apt-get update -q && apt-get install -y -q openclipart-png)

# Speed against Hugging Face BART and CTranslate2 of the same size, data throughput, how cost grows with the work
# and training on a busy machine (run_scripts/bench/RESULTS.md).
# Installs setup.cfg's `bench` extra (transformers, ctranslate2); each script ends with one `RATIO name=value ...` line.
bench: $(STAMP)
	$(PY) -m pip install -q $$($(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(" ".join(c["options.extras_require"]["bench"].split()))')
	$(PY) -m run_scripts.bench.train_bench
	$(PY) -m run_scripts.bench.generate_bench
	$(PY) -m run_scripts.bench.data_bench
	$(PY) -m run_scripts.bench.scale_bench --out bench_out/scale
	$(PY) -m run_scripts.bench.busy_bench
