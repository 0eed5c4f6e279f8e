# projbench: `make demo` installs everything into .venv and runs the whole protocol offline;
# `make test` runs the test suite. Both work on a fresh machine with Python 3.11 and no GPU.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-multiprocess bench fuzz lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[demo,test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m benchmark run --model llava15-tiny --task textile

test: install
	$(PY) -m pytest -q

# Tests that start several real processes: multi-process equivalence (torchrun, gloo on CPU: 2 processes give
# the results of 1) and two concurrent runs on one results folder and cache (locks). Not in `make test`: every
# process start costs several seconds of CPU. CI runs both targets.
test-multiprocess: install
	$(PY) -m pytest -q -m 'multiprocess or stress'

bench: install
	$(PY) -m pytest benchmarks -q -s --benchmark-only --benchmark-columns=min,mean,median,rounds

# Crash and concurrency checks: two real processes on one results folder, then SIGKILL at TRIALS random moments
# of a tiny run, each resumed to metrics identical to an uninterrupted run (benchmarks/fuzz_resume.py).
TRIALS ?= 10
fuzz: install
	$(PY) -m pytest tests -q -m stress -p no:cacheprovider
	$(PY) benchmarks/fuzz_resume.py --trials $(TRIALS)

# Mutation testing of the modules that compute numbers (cosmic-ray; slow, never part of `make test`).
# MODULES=metrics probe  limits it to some modules; MINUTES=20 bounds each; CHANGED=main mutates changed lines only.
mutate: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[mutate]'
	nice -n 19 $(PY) mutation/mutate.py $(MODULES) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(CHANGED),--changed $(CHANGED))

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache .benchmarks .mutation
