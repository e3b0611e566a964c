# Sourced by every run/*.sh: work from the repo root and pick the project's Python.
# PYTHON overrides; otherwise the venv made by run/setup.sh, otherwise python3 on PATH.
set -euo pipefail
# folders given relative to where the user stands, before we move to the repo root
for v in DATA_DIR OUT_DIR PRED_DIR GT_DIR TRAIN_DIR DEMO_DATA_DIR DEMO_OUT; do
  if [ -n "${!v:-}" ] && [[ "${!v}" != /* && "${!v}" != none ]]; then export "$v=$PWD/${!v}"; fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHON
export DATA_DIR="${DATA_DIR:-data}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# SMOKE=1: tiny random models built offline; never reach for the hub (each failed hub call retries ~47 s)
if [ "${SMOKE:-0}" = "1" ]; then export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; fi
