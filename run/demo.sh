#!/usr/bin/env bash
# The newcomer's job: every stage on the embedded sample with tiny random models (SMOKE=1), offline, on the CPU.
# Writes banners and an HTML gallery under outputs/demo/. Real models: see README.md, one command per stage.
source "$(dirname "$0")/_env.sh"
export SMOKE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DATA_DIR="${DEMO_DATA_DIR:-data/sample}"
DEMO_OUT="${DEMO_OUT:-outputs/demo}"
"$PYTHON" data/sample/make_sample.py "$DATA_DIR"
echo "== the embedded sample is in $DATA_DIR"
