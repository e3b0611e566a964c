#!/usr/bin/env bash
# The test suite: offline, CPU only, tiny random models plus the few real models that ship inside PyPI packages.
# Extra arguments go to pytest (e.g. bash run/test.sh -k retrieval).
#   bash run/test.sh                  the whole suite (what CI runs: .ci/run)
#   bash run/test.sh -m "not slow"    the quick subset: skips end-to-end runs marked slow (pytest.ini)
source "$(dirname "$0")/_env.sh"
cd "$REPO"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
"$PYTHON" -m pytest -q "$@"  # no path: pytest.ini's testpaths (tests/); a path: only that
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here, not a pass
if [ "$status" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$status"
