#!/usr/bin/env bash
# What travels to the GPU machine besides the tree (issue 26): the packages it lacks (hydra-core,
# omegaconf, antlr4: it has torch, lightning, tensorboard, torchmetrics, rich, pytest, hypothesis),
# as wheels for its Python 3.12 in .gpu/wheels (ignored by git; carried by the device tool).
# Then, on the device (docs/speed.md):
#   pip install -q --no-index --no-deps --target .gpu/site .gpu/wheels/*.whl &&
#   PYTHONPATH=$PWD/.gpu/site:$PWD python benchmarks/gpu_check.py --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu/wheels && mkdir -p .gpu/wheels
pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --no-deps \
    -d .gpu/wheels "hydra-core==1.3.*" "omegaconf==2.3.*" "pytest-xdist" "execnet"
# antlr4's runtime (Hydra's parser) is published as source only: a pure-Python wheel built here
pip wheel -q --no-deps -w .gpu/wheels "antlr4-python3-runtime==4.9.3"
ls .gpu/wheels
du -sh .gpu
