#!/usr/bin/env bash
# tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args]
# Honours NNODES, NODE_RANK, MASTER_ADDR and PORT like dist_train.sh.
# PYTHON: the interpreter (default: see tools/find_python.sh).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NUM_PROCS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
# shellcheck source=tools/find_python.sh
source "$(dirname "$0")/find_python.sh"

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NUM_PROCS" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
