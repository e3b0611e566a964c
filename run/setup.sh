#!/usr/bin/env bash
# Make .venv and install the pinned requirements (about 2-4 minutes; ~6 GB, torch included).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON_BOOTSTRAP:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -c "import torch, diffusers, transformers, open_clip, sentence_transformers; print('installed: torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__)"
