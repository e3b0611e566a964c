#!/usr/bin/env bash
# Method 2 image prompts: an LLM writes an English image description per test row, few-shot from the nearest captioned
# training rows -> $DATA_DIR/test/llava_prompt.json ({bannerImage: prompt}).
# Needs $DATA_DIR/{train,test}/info_trans.csv (run/translation.sh) and $DATA_DIR/train/llava_caption.json
# (run/caption.sh; without it: --NO_CAPTIONS=zero_shot). Knobs pass through: bash run/prompts.sh --BATCH_SIZE=64 ...
# A rerun skips the prompts made with the same settings and copy (llava_prompt_report.json records them, and the rows
# that fell back: those have no prompt) and refuses, naming what differs, those made otherwise; --OVERWRITE=1 redoes them.
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m prompt_engineer.generate_prompts "$@"
