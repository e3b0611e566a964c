#!/usr/bin/env bash
# Caption every training banner with LLaVA-1.5 -> $DATA_DIR/train/llava_caption.json ({bannerImage: caption}), for Method 2.
# Uses $DATA_DIR/train/info_trans.csv (run/translation.sh) where it has a row's English copy, else info.csv's Vietnamese.
# Knobs pass through: bash run/caption.sh --GREEDY=1 --BATCH_SIZE=32 --SKIP_BAD=1 ... (see --help). A rerun skips the
# captions made with the same settings (llava_caption_report.json records them) and refuses, naming what differs, those
# made otherwise; --OVERWRITE=1 redoes them. Several GPUs:
#   accelerate launch -m preprocessing.caption [--NAME=value ...]
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m preprocessing.caption "$@"
