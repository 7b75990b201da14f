#!/usr/bin/env bash
# tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# One node: NUM_PROCS processes. Several nodes: run it on each with
# NNODES, NODE_RANK, MASTER_ADDR and PORT set. Without GPUs it trains on CPU
# with gloo.
set -euo pipefail
CONFIG=$1
NUM_PROCS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NUM_PROCS" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"
