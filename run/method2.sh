#!/usr/bin/env bash
# The whole of Method 2: captions -> LoRA training -> LLM prompts -> generation, each step skipped when its output is
# up to date with its inputs and settings (inference/method2_all.py). A step's knobs: --<step>.NAME=value, and a config
# file for one step: --<step>=FILE.py, e.g.
#   bash run/method2.sh --train.NUM_EPOCHS=20 --generate.SUBMISSION=1      (steps: caption, train, prompts, generate)
#   bash run/method2.sh --STEPS=caption,train,distill,prompts,generate --generate=config/method2_fast.py
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.method2_all "$@"
