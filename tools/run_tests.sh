#!/usr/bin/env bash
# The test suite: sets up .venv if needed (tools/setup_env.sh), then pytest.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest tests "$@"
