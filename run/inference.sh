#!/usr/bin/env bash
# Method 1: retrieval-guided img2img (SD 1.5 Realistic Vision V5.1 + sd-vae-ft-mse) -> inference/method_1/*.jpg + manifest.csv
# Needs $DATA_DIR/test/info_trans.csv (run/translation.sh) and $DATA_DIR/test/retrieval.csv (run/retrieval.sh).
# Knobs pass through: bash run/inference.sh --SUBMISSION=1 --POSTPROCESS=1 ... (see --help). Several GPUs:
#   accelerate launch -m inference.method1 [--NAME=value ...]
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.method1 "$@"
