#!/usr/bin/env bash
# Wheels for the GPU check (benchmarks/gpu_check.py) on a machine that cannot download: Python 3.12 with torch,
# transformers 5.17, accelerate, peft, timm, pluggy, filelock, tabulate and matplotlib already there.
#
#   bash benchmarks/gpu_wheels.sh download   # here, with an index: fills wheels/ (not committed, .gitignore'd)
#   bash benchmarks/gpu_wheels.sh install    # there, offline: what is missing or too old, then projbench itself
#
# What travels: transformers 5.25 (projbench passes the KV cache as `cache=`, the keyword since 5.24; 5.17 has
# only `past_key_values=`) with the versions of its own requirements that 5.25 needs (huggingface-hub 2.4,
# tokenizers 0.23, safetensors 0.8, kernels, typer, regex), and scikit-learn with scipy, joblib and threadpoolctl
# (the metrics). Not needed by the check, so left behind: datasets (hub datasets), open_clip_torch (CLIP
# baselines), torchvision (only timm/open_clip backbones import it).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-wheels}
PINS=(transformers==5.25.0 huggingface-hub==2.4.0 tokenizers==0.23.3 safetensors==0.8.0 "kernels>=0.19.1,<0.20"
      typer regex scikit-learn==1.9.1 scipy joblib threadpoolctl)

case "${1:-}" in
  download)
    mkdir -p "$WHEELS"
    # --no-deps: the GPU machine already has everything else these need (numpy, packaging, pyyaml, tqdm,
    # requests, fsspec, filelock, click ...); pulling dependencies would fetch torch again.
    python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      --platform any -d "$WHEELS" "${PINS[@]}"
    du -sh "$WHEELS"; ls "$WHEELS"
    ;;
  install)
    # Offline, from the wheels here only; an unpinned package already installed (scipy, typer ...) is kept.
    python3 -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps "${PINS[@]}"
    python3 -m pip install --quiet --no-deps --no-build-isolation -e .
    python3 -c "import benchmark, transformers, sklearn; print('projbench ready; transformers', transformers.__version__)"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_wheels.sh download|install" >&2; exit 2 ;;
esac
