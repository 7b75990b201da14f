#!/usr/bin/env bash
# The test suite: sets up .venv if needed (tools/setup_env.sh), lints
# (flake8 and isort, configured in setup.cfg), then pytest.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
LINTED=(mmacmix mmacmix_mmcv_lite.py tools .dev_scripts tests setup.py)
.venv/bin/python -m flake8 "${LINTED[@]}"
.venv/bin/python -m isort --check-only --diff "${LINTED[@]}"
exec .venv/bin/python -m pytest tests "$@"
