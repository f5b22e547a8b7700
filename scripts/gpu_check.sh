#!/usr/bin/env bash
# The GPU check: the trainer's and the rollout's GPU-only paths, in at most 9 minutes on one GPU with no network.
#
#   bash scripts/gpu_check.sh [--out DIR] [--wheels DIR] [--dry-run] [--only STAGE,STAGE]
#
# Stages (scripts/gpu_check.py has the details), each in its own process under its own timeout, in this order so that
# the longest, throughput, is the one a short allowance cuts:
#   env 30 s | attention 90 s | packing 60 s | train 90 s | sglang 90 s | throughput 180 s      (540 s at most)
# A stage whose package is missing (megatron-core, transformer-engine, sglang) skips with one line; results go to
# OUT/gpu_check.jsonl (one JSON object per stage) and a table is printed at the end. Exit status: 1 if a stage failed.
#
#   --wheels DIR   install the wheels in DIR (e.g. megatron-core for the machine's Python; each small enough to carry)
#                  into OUT/site with pip --no-index --no-deps, and put it on PYTHONPATH: the GPU machine has no network
#   --dry-run      the same stages at CPU sizes (tiny models, short sequences): the test suite runs this
#   --out DIR      default runs/gpu-check (a GPU machine's $OUT: what is written there comes back)
# Environment: PYTHON (default python3, or .venv/bin/python when it exists), GPU_CHECK_TIMEOUT_SCALE (multiplies every
# stage's timeout; the dry run on a loaded 2-core machine needs more than a GPU).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/runs/gpu-check" WHEELS="" DRY="" ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --wheels) WHEELS="$2"; shift 2 ;;
        --dry-run) DRY="--dry-run"; shift ;;
        --only) ONLY=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi
mkdir -p "$OUT"
RESULTS="$OUT/gpu_check.jsonl"
rm -f "$RESULTS"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$WHEELS" ]; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "[gpu-check] installing $(ls "$WHEELS"/*.whl | wc -l) wheel(s) from $WHEELS into $OUT/site"
        "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$OUT/site" "$WHEELS"/*.whl \
            || echo "[gpu-check] wheel install failed: the stages that need them will skip"
        export PYTHONPATH="$OUT/site:$PYTHONPATH"
    else
        echo "[gpu-check] no *.whl in $WHEELS"
    fi
fi
SCALE="${GPU_CHECK_TIMEOUT_SCALE:-1}"
echo "[gpu-check] $("$PYTHON" --version 2>&1), results in $RESULTS${DRY:+ (dry run: CPU sizes)}"
status=0
for entry in env:30 attention:90 packing:60 train:90 sglang:90 throughput:180; do
    stage="${entry%%:*}" limit="${entry##*:}"
    if [ -n "$ONLY" ] && [[ "$ONLY" != *",$stage,"* ]]; then continue; fi
    limit=$(awk -v l="$limit" -v s="$SCALE" 'BEGIN { v = int(l * s); print (v < 1 ? 1 : v) }')  # timeout 0 = none
    timeout --kill-after=10 "$limit" "$PYTHON" "$ROOT/scripts/gpu_check.py" "$stage" --out "$RESULTS" $DRY
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        printf '{"stage": "%s", "status": "fail", "reason": "timed out after %s s", "seconds": %s}\n' \
            "$stage" "$limit" "$limit" >> "$RESULTS"
        echo "[gpu-check] $stage: timed out after $limit s"
        status=1
    elif [ $rc -ne 0 ]; then
        status=1
    fi
done
"$PYTHON" "$ROOT/scripts/gpu_check.py" summary --out "$RESULTS" || status=1
exit $status
