# projbench: `make demo` installs everything into .venv and runs the whole protocol offline;
# `make test` runs the test suite. Both work on a fresh machine with Python 3.11 and no GPU.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install install-deepspeed demo readme-demo test test-slow test-all test-multiprocess bench fuzz lint clean \
        gpu-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[demo,test]'
	touch $(STAMP)

install: $(STAMP)

# DeepSpeed (the `deepspeed` extra of pyproject.toml) for `--engine deepspeed` and its test. Without build isolation:
# its setup imports torch, and an isolated build would fetch a second torch. DS_BUILD_OPS=0: its ops are compiled
# on first use (on CPU one communication op, with the system's C++ compiler).
DS_STAMP := $(VENV)/.deepspeed
$(DS_STAMP): $(STAMP)
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation \
	  $$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["deepspeed"])')
	touch $(DS_STAMP)

install-deepspeed: $(DS_STAMP)

# The demo's recipe (README, "What the demo runs"): 100 photos per class and split keep the whole protocol, with
# its probe seeds and control tasks, within about two minutes of run on 2 idle cores.
demo: install
	$(PY) -m benchmark run --model llava15-tiny --task textile --max-per-class 100

# Rewrites the README's demo block (and docs/example-leaderboard.md) from a fresh run of the demo command above, in
# a temporary results folder; FROM=out.txt copies a saved stdout of `make demo` into the block instead.
readme-demo: install
	$(PY) scripts/readme_demo.py $(if $(FROM),--from $(FROM))

# `make test` is the quick suite: everything but whole-protocol runs (marked `slow` by tests/conftest.py), the
# multi-process and the stress tests. `make test-slow` runs the whole-protocol runs (the golden run, every adapter's
# full run, the SLURM sweep); `make test-all` both. CI runs test, test-slow and test-multiprocess.
test: install
	$(PY) -m pytest -q -m 'not slow and not stress and not multiprocess'

test-slow: install
	$(PY) -m pytest -q -m 'slow and not stress and not multiprocess'

test-all: install
	$(PY) -m pytest -q

# Tests that start several real processes: multi-process equivalence (torchrun, gloo on CPU: 2 processes give
# the results of 1; DDP, FSDP2 and DeepSpeed ZeRO-3, hence the DeepSpeed install) and two concurrent runs on one
# results folder and cache (locks). Not in `make test`: every process start costs several seconds of CPU. CI runs
# both targets.
test-multiprocess: install install-deepspeed
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

# LLaVA-1.5-7B at real size with random weights on one GPU (benchmarks/gpu_check.py), on a machine that cannot
# download: first, where an index is reachable, `bash benchmarks/gpu_wheels.sh download` fills wheels/; the target
# installs them and projbench (--no-deps) into that machine's Python, then writes GPU_CHECK_OUT.{json,md}.
GPU_PY ?= python3
GPU_CHECK_OUT ?= benchmarks/results/gpu_check
gpu-check:
	bash benchmarks/gpu_wheels.sh install
	$(GPU_PY) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT)

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache .benchmarks .mutation
