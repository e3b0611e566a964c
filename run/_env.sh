# Sourced by every run/*.sh. Paths (DATA_DIR, OUT_DIR, --FLAG=folder) are taken relative to where the user stands:
# the scripts run from the current folder with the repo on PYTHONPATH.
# PYTHON overrides the interpreter; otherwise the venv made by run/setup.sh, otherwise python3 on PATH.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# SMOKE=1: tiny random models built offline; never reach for the hub (each failed hub call retries ~47 s)
if [ "${SMOKE:-0}" = "1" ]; then export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; fi
