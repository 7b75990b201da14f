#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with the pinned
# stack, then install mmacmix into it in editable mode. Idempotent: a stamp
# of the requirement files lets a second run return at once.
#
#   TORCH_SPEC      torch to install (default torch==2.13.0)
#   TORCH_PIP_ARGS  extra pip arguments for torch, e.g. a CUDA index URL
#   MAX_JOBS        parallel compile jobs for mmcv's ops (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.mmacmix-stack"
want=$(cat requirements/*.txt setup.py tools/setup_env.sh | sha256sum | cut -d' ' -f1)

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

echo "[setup_env] setting up $VENV (the first mmcv build takes ~10 min on 2 cores)"
[ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip=("$PY" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" -r requirements/build.txt
# shellcheck disable=SC2086
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_PIP_ARGS:-}
# Nothing installed later may replace that torch or bring setuptools>=81.
constraints="$VENV/constraints.txt"
echo "torch==$("$PY" -c 'import torch; print(torch.__version__)')" > "$constraints"
echo "setuptools>=77,<81" >> "$constraints"
# mmcv 2.1.0 has no wheel for this torch: build it with its ops against the
# torch above. pip caches the built wheel, so only the first build pays.
MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${pip[@]}" --no-build-isolation -c "$constraints" mmcv==2.1.0
"${pip[@]}" -c "$constraints" -r requirements/runtime.txt \
    -r requirements/tests.txt
"${pip[@]}" --no-deps -r requirements/mim.txt
"${pip[@]}" --no-build-isolation --no-deps -e .
"$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmacmix" \
    || { echo "[setup_env] the environment does not import" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup_env] ready: $VENV"
