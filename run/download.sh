#!/usr/bin/env bash
# Fetch the real models before any stage runs: exactly the files each stage's loader reads (never the multi-GB
# single-file checkpoints some repositories also hold), into the Hugging Face cache; prints what and how much.
#   bash run/download.sh [--METHOD=1|2|all] [--ONLY=sd21,llm] [--SD21=org/name@revision ...]
#   bash run/download.sh list | check [--METHOD=...]      (see --help; the list of models is models.py)
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m models "$@"
