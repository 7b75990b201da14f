#!/usr/bin/env bash
# The main job on the embedded default: set up .venv if needed, write the toy
# COCO data, train a small ACmix detector through the real mmdet runner and
# print its COCO bbox mAP; then plot its mixing rates (paper Fig. 5) and draw
# its detections on a validation image.
#   CONFIG    config to train (default: the toy ACmix detector)
#   WORK_DIR  where logs and checkpoints go (default: work_dirs/main_job)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
CONFIG=${CONFIG:-configs/toy/mask_rcnn_swin_acmix_toy_coco.py}
WORK_DIR=${WORK_DIR:-work_dirs/main_job}
PY=.venv/bin/python

[ -f data/toy/coco/annotations/instances_val2017.json ] \
    || "$PY" tools/misc/make_toy_data.py --out data/toy
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" \
    --work-dir "$WORK_DIR" | tee "$WORK_DIR/test_output.txt"
"$PY" - "$WORK_DIR/test_output.txt" <<'PYEOF'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith('metrics: ')][-1]
metrics = json.loads(line[len('metrics: '):])
print(f"\nCOCO bbox mAP (IoU .50:.95) = {metrics['coco/bbox_mAP']:.3f}  "
      f"mAP@.50 = {metrics['coco/bbox_mAP_50']:.3f}")
PYEOF

# the trained model's alpha/beta per layer and a demo image
CKPT=$(cat "$WORK_DIR/last_checkpoint")
"$PY" tools/analysis_tools/plot_rates.py "$CKPT" --out "$WORK_DIR/rates.png"
IMAGE=$(ls data/toy/coco/val2017/*.jpg | head -n 1)
"$PY" tools/demo/image_demo.py "$IMAGE" "$CONFIG" "$CKPT" \
    --out-file "$WORK_DIR/demo.png"
echo "mixing rates plot: $WORK_DIR/rates.png  demo image: $WORK_DIR/demo.png"
