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

# launch_accelerate MODULE [--NAME=value ...]: run a training script under accelerate (pinned), one process unless
# `accelerate config` was run; --help needs no launcher (accelerate would print its own banner first)
launch_accelerate() {
  local module="$1" arg
  shift
  for arg in "$@"; do
    if [ "$arg" = "--help" ] || [ "$arg" = "-h" ]; then exec "$PYTHON" -m "$module" "$@"; fi
  done
  local launch=()
  # without an `accelerate config` file, say what accelerate would otherwise warn about (precision is the script's knob)
  local has_config='import os, sys; from accelerate.commands.config.config_args import default_config_file as f
sys.exit(not os.path.isfile(f))'
  if ! "$PYTHON" -c "$has_config" 2>/dev/null; then
    launch=(--num_processes=1 --num_machines=1 --mixed_precision=no --dynamo_backend=no)
  fi
  # --quiet: a stopped run ends on the script's own one-line error, not on the launcher's traceback of the subprocess
  exec "$PYTHON" -m accelerate.commands.launch --quiet "${launch[@]}" -m "$module" "$@"
}
