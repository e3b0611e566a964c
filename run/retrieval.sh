#!/usr/bin/env bash
# Retrieval: for each test row the TOP_K most similar training rows -> $DATA_DIR/test/retrieval.csv
# (indexes cached under $DATA_DIR/{train,test}/index/). Knobs: --help. Several GPUs:
#   accelerate launch -m retrieval.retrieve
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m retrieval.retrieve "$@"
