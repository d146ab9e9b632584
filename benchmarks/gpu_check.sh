#!/bin/sh
# Every GPU figure in one call, for a machine lent for minutes: the time-to-99.0/99.5 % table eager and compiled,
# then the ensemble benchmark (`speed.py --ensemble`) on the GPU. Each step has its own time limit and
# writes its table to $OUT (default: gpu-results/) as soon as it ends, so a step cut short loses only itself.
#
#   mkdir -p .cache && cp -r ~/.cache/convnet/datasets .cache/   # the MNIST cache ($CONVNET_HOME/datasets): the
#                                                                # GPU machine may have no network; .cache/ is
#                                                                # git-ignored, so copy it along with the tree
#   CONVNET_HOME=.cache sh benchmarks/gpu_check.sh     # needs torch, numpy, safetensors; nothing is installed
#
# MEMBERS chooses the ensemble (MODEL or MODEL:EPOCHS each): by default the four kinds that most often averaged to
# ≥ 99.8 % on the CPU, with their recipes' epochs (accurate 20, the others 30); the ensemble log prints each member
# as it ends, with its time.
# A smoke run on a CPU:
#   PYTHON=.venv/bin/python DEVICE=cpu QUICK=1 MEMBERS="fast:1 fast:1" sh benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu-results}
MEMBERS=${MEMBERS:-accurate deskewed strided deskewed-strided}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
QUICK=${QUICK:+--quick}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

step() {  # step NAME SECONDS COMMAND...: the command's table to $OUT/NAME.md, its log to $OUT/NAME.log
    name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): $*"
    timeout "$limit" "$@" >"$OUT/$name.md" 2>"$OUT/$name.log"
    echo "== $name: exit $?"
    cat "$OUT/$name.md"
}

"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA:', torch.cuda.is_available())"
# shellcheck disable=SC2086  # QUICK and MEMBERS are split into words on purpose
step gpu-eager 120 "$PYTHON" benchmarks/gpu.py --device "$DEVICE" $QUICK
step gpu-compile 180 "$PYTHON" benchmarks/gpu.py --device "$DEVICE" $QUICK --compile
step ensemble 270 "$PYTHON" benchmarks/speed.py --device "$DEVICE" --skip-lesson --repeats 1 --ensemble $MEMBERS
