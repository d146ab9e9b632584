#!/bin/sh
# Every GPU figure in one call, for a machine lent for minutes. In order of what matters most: the GPU tests; the
# time-to-99.0/99.5 % table with each step replayed as a CUDA graph, then eager; the table under torch.compile; and,
# only when MEMBERS names them, an ensemble trained on the GPU (`speed.py --ensemble`, its run folders packed into
# $OUT so that the members come back). Each step has its own time limit, none
# runs past DEADLINE seconds from the start, and each adds its table to $OUT/tables.md (default OUT: gpu-results/) and
# its log to $OUT/logs.txt as soon as it ends, so a step cut short loses only itself. OUT must be new or empty (an
# earlier run's results are never mixed with or packed over), and the exit status is 1 when any step failed or was
# skipped.
#
#   mkdir -p .cache && cp -r ~/.cache/convnet/datasets .cache/   # the MNIST cache ($CONVNET_HOME/datasets): the
#                                                                # GPU machine may have no network; .cache/ is
#                                                                # git-ignored, so copy it along with the tree
#   CONVNET_HOME=.cache sh benchmarks/gpu_check.sh     # needs torch, numpy, safetensors (pytest for the tests)
#
# MEMBERS names the ensemble before it runs (MODEL or MODEL:EPOCHS each, seeds from FIRST_SEED per kind); none by
# default: the twelve named for this script were trained on the CPU instead (benchmarks/README.md), and their figure
# stands, so the same twelve on a GPU would be a second draw, not the figure.
# A smoke run on a CPU (the CUDA-only steps fail at once there, so it exits 1):
#   PYTHON=.venv/bin/python DEVICE=cpu QUICK=1 MEMBERS="fast:1 fast:1" DEADLINE=400 sh benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu-results}
MEMBERS=${MEMBERS:-}
FIRST_SEED=${FIRST_SEED:-30}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
QUICK=${QUICK:+--quick}
DEADLINE=${DEADLINE:-420}
case $DEADLINE in  # no step runs in under 10 s; "0…" would be octal to sh
    '' | *[!0-9]* | 0* | [1-9]) echo "DEADLINE must be whole seconds, at least 10, not '$DEADLINE'" >&2; exit 2 ;;
esac
if [ -e "$OUT" ] && { [ ! -d "$OUT" ] || [ -n "$(ls -A "$OUT")" ]; }; then
    echo "OUT ($OUT) must be a new or empty folder: it holds an earlier run's results, or is a file" >&2; exit 2
fi
mkdir -p "$OUT" || exit 2
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # absolute: tests run in folders of their own
START=$(date +%s)
FAILED=0

step() {  # step NAME SECONDS COMMAND...: the command's output added to $OUT/tables.md, its log to $OUT/logs.txt
    # (and kept in $OUT/last.log until the next step)
    name=$1 limit=$2
    shift 2
    left=$((DEADLINE - ($(date +%s) - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "== $name: skipped, $left s left"
        FAILED=1
        return 1
    fi
    echo "== $name (at most $limit s): $*"
    timeout "$limit" "$@" >"$OUT/step.md" 2>"$OUT/step.log"
    code=$?
    echo "== $name: exit $code after $(($(date +%s) - START)) s"
    cat "$OUT/step.md"
    [ "$code" -eq 0 ] || tail -n 15 "$OUT/step.log"
    { echo "## $name (exit $code)"; cat "$OUT/step.md"; echo; } >>"$OUT/tables.md"
    { echo "== $name (exit $code)"; cat "$OUT/step.log"; } >>"$OUT/logs.txt"
    failed=$(grep -c failed "$OUT/step.md")
    rm -f "$OUT/step.md"
    mv "$OUT/step.log" "$OUT/last.log"
    [ "$code" -eq 0 ] && [ "$failed" -eq 0 ] || { FAILED=1; return 1; }
}

"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"
# shellcheck disable=SC2086  # QUICK and MEMBERS are split into words on purpose
step tests 60 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_device.py
step gpu-graphs 90 "$PYTHON" benchmarks/gpu.py --device "$DEVICE" $QUICK --cuda-graphs
# The ensemble's steps as graphs too, unless graphs were refused or could not be recorded (out of memory while
# recording included); not for a time limit, or a failure after the recording, which eager steps would not mend.
GRAPHS=--cuda-graphs
grep -qsE "(ConfigError|gpu.py: error): --cuda-graphs" "$OUT/last.log" && GRAPHS=
step gpu-eager 90 "$PYTHON" benchmarks/gpu.py --device "$DEVICE" $QUICK
step gpu-compile 300 "$PYTHON" benchmarks/gpu.py --device "$DEVICE" $QUICK --compile
if [ -n "$MEMBERS" ]; then
    step ensemble 300 "$PYTHON" benchmarks/speed.py --device "$DEVICE" --skip-lesson --repeats 1 $GRAPHS \
        --first-seed "$FIRST_SEED" --keep "$OUT/members" --ensemble $MEMBERS
    # The members' folders as one archive in pieces under 16 MB each (what comes back from the machine), even when
    # the step was cut short: `cat members.tgz.* | tar xz` puts them together, and `convnet ensemble` averages them.
    tar czf - -C "$OUT" members 2>/dev/null | split -b 15000000 - "$OUT/members.tgz."
    rm -rf "$OUT/members"
fi
rm -f "$OUT/last.log"
exit "$FAILED"
