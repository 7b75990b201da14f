#!/usr/bin/env bash
# The GPU checks of the project in one short run (expected to take about 5
# minutes on one H200, not run yet; the budget is 8):
#   1. the test suite's CUDA cases (tests/test_cuda.py, marker `cuda`): every
#      custom autograd function on CUDA against its CPU result and the
#      float64 oracle, each backbone's forward/backward against the CPU's,
#      bf16 and fp16 AMP train steps of every toy config (configs/toy);
#   2. tools/dist_train.sh on a toy config with 1 process: NCCL, --amp;
#   3. the benchmark table on CUDA (tools/analysis_tools/benchmark.py): ours vs
#      the stock baselines (SwinACmix-T vs mmdet's Swin-T, PVTACmix-S vs
#      mmdet's PVT-S (backbones), the ResNet-ACmix-50 classifier vs
#      torchvision's ResNet-50) at batch 8, 224x224, fp32 and bf16
#      autocast, train step and inference, torch.cuda
#      max_memory_allocated.
#
# Usage: bash .dev_scripts/device_check.sh [OUT_DIR]
#   OUT_DIR defaults to $OUT when set, else work_dirs/device_check. It gets
#   pytest.log, dist_train/ (toy data, logs), benchmark_<pair>.json,
#   benchmark.md (the tables) and summary.txt.
#
# It sets nothing up; it expects the project's environment: Python with
# CUDA torch, mmcv (mmcv-lite, whose ops mmacmix provides, or mmcv built with
# its CUDA ops), mmengine, mmdet, mmseg, mmpretrain, pytest and mmacmix (this
# checkout is put first on PYTHONPATH), as .venv/ in the checkout or the
# interpreter in $PYTHON (default: .venv's, else `python`). On a GPU machine
# with torch but no OpenMMLab and no network: requirements/bare_gpu.txt's
# wheels in a --target folder (docs/performance_checks.md). Nothing is
# downloaded: the models are built with random weights, the toy data is
# generated.
#
# Environment: PYTHON (interpreter), PORT (dist_train's master port, default
# 29650), BENCH_RUNS / BENCH_WARMUP (timed and warm-up steps per benchmark
# entry, default 10 / 3), COMPILE=BACKEND (also benchmark every entry
# compiled with torch.compile and that backend, e.g. inductor; minutes
# more). Without CUDA every CUDA part is skipped (the CUDA tests report as
# skipped) and it exits 0; with CUDA it exits 1 if any check failed.
set -uo pipefail
if [ $# -gt 1 ]; then
    echo "error: usage: bash .dev_scripts/device_check.sh [OUT_DIR]" >&2
    exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT_DIR=${1:-${OUT:-work_dirs/device_check}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$REPO/.venv/bin/python;
    else PYTHON=python; fi
fi
export PYTHON
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
BENCH_RUNS=${BENCH_RUNS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-3}
FAILED=()
SKIPPED=()

section() { printf '\n==== %s ====\n' "$*"; }
skip() { echo "SKIPPED: $* (no CUDA)"; SKIPPED+=("$*"); }
result() {  # NAME STATUS
    if [ "$2" -eq 0 ]; then echo "PASSED: $1"; else
        echo "FAILED: $1 (exit $2)"; FAILED+=("$1"); fi
}

section "environment"
"$PYTHON" - <<'EOF'
import torch
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
      f'available: {torch.cuda.is_available()}')
if torch.cuda.is_available():
    print(f'device: {torch.cuda.get_device_name()}, '
          f'bf16: {torch.cuda.is_bf16_supported()}, '
          f'NCCL: {torch.distributed.is_nccl_available()}')
EOF
if ! HAS_CUDA=$("$PYTHON" -c \
        'import torch; print(int(torch.cuda.is_available()))'); then
    echo "error: $PYTHON cannot import torch" >&2
    exit 1
fi

section "1. CUDA test cases (pytest -m cuda tests/test_cuda.py)"
"$PYTHON" -m pytest -m cuda tests/test_cuda.py -q -ra -p no:cacheprovider \
    2>&1 | tee "$OUT_DIR/pytest.log"
result "CUDA test cases" "${PIPESTATUS[0]}"

section "2. tools/dist_train.sh, 1 process, NCCL, --amp"
if [ "$HAS_CUDA" = 1 ]; then
    WORK=$OUT_DIR/dist_train
    CONFIG=$REPO/configs/toy/retinanet_pvt_acmix_toy_coco.py
    rm -rf "$WORK" && mkdir -p "$WORK"
    (
        set -e
        cd "$WORK"
        "$PYTHON" "$REPO/tools/misc/make_toy_data.py" --out data/toy
        PORT=${PORT:-29650} bash "$REPO/tools/dist_train.sh" "$CONFIG" 1 \
            --amp --work-dir "$WORK/run"
        LOG=$(ls run/*/*.log)
        grep -q "Distributed training: True" "$LOG"
        grep -q "backend='nccl'" "$LOG"
        test -f run/epoch_1.pth
        echo "trained 1 epoch with NCCL and AMP: $WORK/run/epoch_1.pth"
    ) 2>&1 | tee "$OUT_DIR/dist_train.log"
    result "dist_train.sh with NCCL" "${PIPESTATUS[0]}"
else
    skip "tools/dist_train.sh with NCCL"
fi

section "3. benchmark: ours vs the stock baselines, CUDA, batch 8, 224x224"
# baseline first: the ratio column is ours / baseline
PAIRS=(
    "swin_t mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py:backbone configs/mask_rcnn_swin_acmix_t_1x_coco.py:backbone"
    "pvt_s mmdet::pvt/retinanet_pvt-s_fpn_1x_coco.py:backbone configs/retinanet_pvt_acmix_s_1x_coco.py:backbone"
    "resnet50 torchvision::resnet50 configs/resnet_acmix_50_in1k.py"
)
if [ "$HAS_CUDA" = 1 ]; then
    MD=$OUT_DIR/benchmark.md
    echo "# device_check.sh benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))" \
        > "$MD"
    echo >> "$MD"
    for pair in "${PAIRS[@]}"; do
        read -r name baseline ours <<< "$pair"
        echo "-- $name, fp32 and bf16"
        "$PYTHON" tools/analysis_tools/benchmark.py "$baseline" "$ours" \
            --device cuda --dtype fp32 bf16 --batch 8 --shape 224 224 \
            --runs "$BENCH_RUNS" --warmup "$BENCH_WARMUP" \
            ${COMPILE:+--compile "$COMPILE"} \
            --json "$OUT_DIR/benchmark_${name}.json" --markdown "$MD"
        result "benchmark $name" $?
    done
    echo "tables: $MD"
else
    skip "benchmark on CUDA (${#PAIRS[@]} pairs, fp32 and bf16)"
fi

section "summary"
{
    echo "device_check.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
    for item in "${SKIPPED[@]}"; do echo "skipped: $item (no CUDA)"; done
    for item in "${FAILED[@]}"; do echo "failed: $item"; done
    if [ ${#FAILED[@]} -eq 0 ]; then echo "all checks passed"; fi
} | tee "$OUT_DIR/summary.txt"
[ ${#FAILED[@]} -eq 0 ]
