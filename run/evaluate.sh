#!/usr/bin/env bash
# Score predictions against ground truth (report.json, scores.csv, gallery.html into PRED_DIR):
#   PRED_DIR=<predictions> GT_DIR=<folder with info.csv and images/> bash run/evaluate.sh
# A validation split of a train folder to score on (then DATA_DIR=<split> runs any method unchanged):
#   bash run/evaluate.sh split --SOURCE_DIR=<train folder> --SPLIT_DIR=data/val_split
# Side by side: bash run/evaluate.sh compare --PRED_DIRS=a,b,c
source "$(dirname "$0")/_env.sh"
case "${1:-}" in
  split) shift; exec "$PYTHON" -m evaluation.make_split "$@" ;;
  compare) shift; exec "$PYTHON" -m evaluation.compare "$@" ;;
  *) exec "$PYTHON" -m evaluation.evaluate "$@" ;;
esac
