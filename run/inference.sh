#!/bin/bash
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m inference.method1 "$@"
