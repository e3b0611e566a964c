#!/usr/bin/env bash
# Method 2: text-to-image with SD 2.1 + the LoRA of run/train_sd.sh, prompted by run/prompts.sh
# -> inference/method_2/*.jpg + manifest.csv. Needs $DATA_DIR/test/info_trans.csv and (else each row falls back to
# its copy) $DATA_DIR/test/llava_prompt.json. Knobs: --help. Several GPUs: accelerate launch -m inference.method2
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.method2 "$@"
