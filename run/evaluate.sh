#!/usr/bin/env bash
# Score predictions against ground truth (report.json, scores.csv, gallery.html into the predictions folder):
#   bash run/evaluate.sh --PRED_DIR=<predictions> --GT_DIR=<folder with info.csv and images/> [--TRAIN_DIR=...]
# A validation split of a train folder to score on (then DATA_DIR=<split> runs any method unchanged):
#   bash run/evaluate.sh split --SOURCE_DIR=<train folder> --SPLIT_DIR=data/val_split
# Side by side: bash run/evaluate.sh compare --PRED_DIRS=a,b,c
# Knobs are flags (see --help); the environment sets only DATA_DIR (default pool: $DATA_DIR/train) and SMOKE.
source "$(dirname "$0")/_env.sh"
case "${1:-}" in
  split) shift; exec "$PYTHON" -m evaluation.make_split "$@" ;;
  compare) shift; exec "$PYTHON" -m evaluation.compare "$@" ;;
  *) exec "$PYTHON" -m evaluation.evaluate "$@" ;;
esac
