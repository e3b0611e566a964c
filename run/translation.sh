#!/usr/bin/env bash
# Translate $DATA_DIR/{train,test}/info.csv (vi) into info_trans.csv (en), cached and resumable.
# Knobs are flags: bash run/translation.sh --BACKEND=seq2seq --SEQ2SEQ_MODEL=Helsinki-NLP/opus-mt-vi-en (see --help);
# the environment sets only DATA_DIR and SMOKE.
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m preprocessing.translate "$@"
