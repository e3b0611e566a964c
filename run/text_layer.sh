#!/usr/bin/env bash
# The ad copy (headline, second line, offer badge, disclaimer) set on a folder of finished banners, after any
# post-processing:  bash run/text_layer.sh --IN_DIR=inference/method_1 --INFO=data/test/info.csv --OUT_DIR=outputs/m1_text
# Headline where each row's init banner had its text: add --LAYOUT_CSV=inference/method_1/manifest.csv (or a
# retrieval.csv); --TEXT_DETECTOR=tesseract finds that text with Tesseract (bash run/ocr_setup.sh first).
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.text_layer "$@"
