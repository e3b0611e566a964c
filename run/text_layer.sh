#!/usr/bin/env bash
# The ad copy (headline, second line, offer badge, disclaimer) set on a folder of finished banners, after any
# post-processing:  bash run/text_layer.sh --IN_DIR=inference/method_1 --INFO=data/test/info.csv --OUT_DIR=outputs/m1_text
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.text_layer "$@"
