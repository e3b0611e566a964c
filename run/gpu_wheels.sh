#!/usr/bin/env bash
# Downloads, here, the wheels that the lent GPU machine lacks for run/gpu_benchmark.sh into <repo>/.whl/ (git-ignored).
# That machine (Python 3.12, torch 2.11, transformers 5.17, huggingface_hub 1.33, ... ; no network) has every
# requirement of diffusers except diffusers itself and importlib_metadata, whose 10.x needs lazy-importer;
# zipp (>= 3.20 for importlib_metadata) is there in an unknown version, so it travels too (10 kB).
# Checked against diffusers 0.42.1's Requires-Dist (importlib_metadata, filelock, huggingface-hub>=1.32,<3, numpy,
# regex, requests, safetensors>=0.8.0, Pillow) and the machine's package list (.library/device/KINDS.md);
# the versions are the ones the project's own venv resolved.
#
#   bash run/gpu_wheels.sh        # once; then one device call: bash run/gpu_benchmark.sh, carrying .whl
#
# PYTHON overrides the interpreter that runs pip (any Python with pip: it downloads for 3.12 x86-64 whatever it is).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS=(diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2)
mkdir -p "$REPO/.whl"
cd "$REPO/.whl"
for spec in "${WHEELS[@]}"; do
  name="${spec%%==*}"; version="${spec#*==}"
  # one version of each only: two wheels of one package stop the whole install there
  for old in "${name//-/_}"-*.whl; do
    [ -e "$old" ] && [[ "$old" != "${name//-/_}-$version-"* ]] && { echo "removing $old (not $version)"; rm -f "$old"; }
  done
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d . "${WHEELS[@]}"
ls -l "$REPO/.whl"
du -sh "$REPO/.whl" | awk '{print "total " $1 " (a device call carries at most 64 MiB with the working tree)"}'
