#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with the pinned
# stack, then install mmacmix into it in editable mode. By default only
# wheels, no compiler: mmcv-lite (mmcv without its compiled ops), whose ops
# mmacmix provides in PyTorch (mmacmix/ops, docs/get_started.md). Idempotent:
# a stamp of the requirement files and of the choice below lets a second run
# return at once.
#
#   --full-mmcv (or MMACMIX_FULL_MMCV=1)  build mmcv 2.1.0 with its own
#                   compiled ops instead (~10 min on 2 cores; a C++ compiler,
#                   nvcc for CUDA), for the ops mmacmix/ops does not have
#   TORCH_SPEC      torch to install when .venv has none (default
#                   torch==2.13.0); an installed torch is kept
#   TORCH_PIP_ARGS  extra pip arguments for torch, e.g. a CUDA index URL
#   MAX_JOBS        parallel compile jobs for mmcv's ops (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."

FULL_MMCV=${MMACMIX_FULL_MMCV:-0}
for arg in "$@"; do
    case "$arg" in
        --full-mmcv) FULL_MMCV=1 ;;
        *) echo "error: usage: bash tools/setup_env.sh [--full-mmcv]" >&2
           exit 2 ;;
    esac
done

VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.mmacmix-stack"
want=$( (cat requirements/*.txt setup.py tools/setup_env.sh
         echo "full-mmcv=$FULL_MMCV") | sha256sum | cut -d' ' -f1)

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

echo "[setup_env] setting up $VENV"
[ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip=("$PY" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" -r requirements/build.txt
if ! "$PY" -c 'import torch' 2>/dev/null; then
    # shellcheck disable=SC2086
    "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_PIP_ARGS:-}
fi
# Nothing installed later may replace that torch or bring setuptools>=81.
constraints="$VENV/constraints.txt"
echo "torch==$("$PY" -c 'import torch; print(torch.__version__)')" > "$constraints"
echo "setuptools>=77,<81" >> "$constraints"
# mmcv or mmcv-lite (they install the same package): a compiled mmcv that is
# there already is kept, as mmacmix uses its ops where they exist
has_compiled_mmcv() {
    "$PY" -c 'import importlib.metadata as m; m.version("mmcv")' 2>/dev/null
}
if [ "$FULL_MMCV" = 1 ] || has_compiled_mmcv; then
    "$PY" -m pip uninstall -q -y mmcv-lite 2>/dev/null || true
    # no wheel of mmcv 2.1.0 for this torch: built with its ops against the
    # torch above; pip caches the built wheel, so only the first build pays
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${pip[@]}" --no-build-isolation -c "$constraints" mmcv==2.1.0
else
    "${pip[@]}" -c "$constraints" mmcv-lite==2.1.0
fi
"${pip[@]}" -c "$constraints" -r requirements/runtime.txt \
    -r requirements/tests.txt
"${pip[@]}" --no-deps -r requirements/mim.txt
"${pip[@]}" --no-build-isolation --no-deps -e .
"$PY" -c "import mmacmix, mmcv.ops, mmdet.models, mmseg.models, mmpretrain" \
    || { echo "[setup_env] the environment does not import" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup_env] ready: $VENV ($("$PY" -m pip list 2>/dev/null | grep -o '^mmcv[-a-z]*'))"
