#!/usr/bin/env bash
# The newcomer's job: every stage on the embedded sample with tiny random models (SMOKE=1), offline, on the CPU.
#   1. translation  2. retrieval  3. Method 1 on the sample's 6 test rows  -> outputs/demo/method_1/*.jpg
#   4. a validation split of the sample's train rows, Method 1 on it  5. evaluation -> report.json + gallery.html
# Real models: README.md gives one command per stage. Rerunning the demo reuses everything already done.
source "$(dirname "$0")/_env.sh"
cd "$REPO"
export SMOKE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DATA_DIR="${DEMO_DATA_DIR:-data/sample}"
DEMO_OUT="${DEMO_OUT:-outputs/demo}"
start=$(date +%s)
step() { echo; echo "== demo $1 ($(( $(date +%s) - start )) s)"; }

step "0/5: the embedded sample -> $DATA_DIR"
"$PYTHON" data/sample/make_sample.py "$DATA_DIR"
step "1/5: translation vi->en -> $DATA_DIR/{train,test}/info_trans.csv"
bash run/translation.sh
step "2/5: retrieval -> $DATA_DIR/test/retrieval.csv"
bash run/retrieval.sh
step "3/5: Method 1 (img2img from the retrieved banner) -> $DEMO_OUT/method_1/"
OUT_DIR="$DEMO_OUT/method_1" bash run/inference.sh

# scoring needs ground truth: hold out a quarter of the sample's train rows and run the same method on them
VAL="$DEMO_OUT/val_split"
step "4/5: validation split -> $VAL, then retrieval + Method 1 on it"
bash run/evaluate.sh split --SOURCE_DIR="$DATA_DIR/train" --SPLIT_DIR="$VAL" --FRACTION=0.25
DATA_DIR="$VAL" bash run/retrieval.sh
DATA_DIR="$VAL" OUT_DIR="$DEMO_OUT/val_method_1" bash run/inference.sh
step "5/5: evaluation -> $DEMO_OUT/val_method_1/{report.json,scores.csv,gallery.html}"
DATA_DIR="$VAL" bash run/evaluate.sh --PRED_DIR="$DEMO_OUT/val_method_1" --GT_DIR="$VAL/test"

echo
echo "== demo done in $(( $(date +%s) - start )) s (SMOKE=1: tiny random models, so the banners are noise)"
echo "   banners:  $DEMO_OUT/method_1/ ($(ls "$DEMO_OUT/method_1" | grep -c '\.jpg$') JPEGs for $(( $(wc -l < "$DATA_DIR/test/info.csv") - 1 )) test rows)"
echo "   gallery:  $DEMO_OUT/val_method_1/gallery.html   score: $DEMO_OUT/val_method_1/report.json"
