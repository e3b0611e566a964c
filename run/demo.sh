#!/usr/bin/env bash
# The newcomer's job: every stage on the embedded sample with tiny random models (SMOKE=1), offline, on the CPU.
#   1. translation  2. retrieval  3. Method 1 on the sample's 6 test rows (+ the ad copy set on them)
#   4. Method 2: captions -> LoRA -> LLM prompts -> generation  5. a validation split, both methods on it
#   6. evaluation of both, side by side -> report.json + gallery.html + a comparison table
# Real models: README.md gives one command per stage. Rerunning the demo reuses everything already done.
source "$(dirname "$0")/_env.sh"
# DEMO_DATA_DIR / DEMO_OUT given relative to where the user stands; the defaults live in the repo
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DATA_DIR="$(absolute "${DEMO_DATA_DIR:-$REPO/data/sample}")"
DEMO_OUT="$(absolute "${DEMO_OUT:-$REPO/outputs/demo}")"
cd "$REPO"
export SMOKE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DATA_DIR
start=$(date +%s)
step() { echo; echo "== demo $1 ($(( $(date +%s) - start )) s)"; }

step "0/6: the embedded sample -> $DATA_DIR"
"$PYTHON" data/sample/make_sample.py "$DATA_DIR"
step "1/6: translation vi->en -> $DATA_DIR/{train,test}/info_trans.csv"
bash run/translation.sh
step "2/6: retrieval -> $DATA_DIR/test/retrieval.csv"
bash run/retrieval.sh
step "3/6: Method 1 (img2img from the retrieved banner) -> $DEMO_OUT/method_1/, with the copy set -> method_1_text/"
OUT_DIR="$DEMO_OUT/method_1" bash run/inference.sh
bash run/text_layer.sh --IN_DIR="$DEMO_OUT/method_1" --INFO="$DATA_DIR/test/info.csv" --OUT_DIR="$DEMO_OUT/method_1_text"
step "4/6: Method 2 (captions -> SD 2.1 LoRA -> LLM prompts -> generation) -> $DEMO_OUT/method_2/"
bash run/method2.sh --train.OUT_DIR="$DEMO_OUT/lora" --generate.LORA="$DEMO_OUT/lora" \
  --generate.OUT_DIR="$DEMO_OUT/method_2"

# scoring needs ground truth: hold out a quarter of the sample's train rows and run the same methods on them
VAL="$DEMO_OUT/val_split"
step "5/6: validation split -> $VAL, then retrieval, Method 1 and Method 2 on it"
bash run/evaluate.sh split --SOURCE_DIR="$DATA_DIR/train" --SPLIT_DIR="$VAL" --FRACTION=0.25
DATA_DIR="$VAL" bash run/retrieval.sh
DATA_DIR="$VAL" OUT_DIR="$DEMO_OUT/val_method_1" bash run/inference.sh
DATA_DIR="$VAL" bash run/method2.sh --train.OUT_DIR="$DEMO_OUT/val_lora" --generate.LORA="$DEMO_OUT/val_lora" \
  --generate.OUT_DIR="$DEMO_OUT/val_method_2"
step "6/6: evaluation of both methods -> $DEMO_OUT/val_method_{1,2}/{report.json,scores.csv,gallery.html}"
DATA_DIR="$VAL" bash run/evaluate.sh --PRED_DIR="$DEMO_OUT/val_method_1" --GT_DIR="$VAL/test"
DATA_DIR="$VAL" bash run/evaluate.sh --PRED_DIR="$DEMO_OUT/val_method_2" --GT_DIR="$VAL/test" \
  --BESIDE_DIRS="$DEMO_OUT/val_method_1"
bash run/evaluate.sh compare --PRED_DIRS="$DEMO_OUT/val_method_1,$DEMO_OUT/val_method_2" \
  --NAMES="Method 1,Method 2" --OUT_CSV="$DEMO_OUT/compare.csv"

echo
echo "== demo done in $(( $(date +%s) - start )) s (SMOKE=1: tiny random models, so the banners are noise)"
echo "   banners:  $DEMO_OUT/method_1/, $DEMO_OUT/method_1_text/, $DEMO_OUT/method_2/ ($(ls "$DEMO_OUT/method_2" | grep -c '\.jpg$') JPEGs for $(( $(wc -l < "$DATA_DIR/test/info.csv") - 1 )) test rows)"
echo "   gallery:  $DEMO_OUT/val_method_2/gallery.html (Method 2 beside Method 1)   table: $DEMO_OUT/compare.csv"
