#!/usr/bin/env bash
# Create the project's virtual environment (.venv) on a CPU machine and install the project into it.
#
#   bash scripts/setup_venv.sh          # idempotent: re-installs only when setup.py or the constraints change
#
# Environment: PYTHON (interpreter to build the venv from, default python3), LONGTRACE_VENV (default .venv).
# Every install goes through constraints/cpu.txt so that no CUDA build of torch is ever pulled in.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LONGTRACE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/constraints/cpu.txt"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

# A stamp of everything that decides what gets installed; skip pip when nothing changed.
STAMP="$VENV/.longtrace-install-stamp"
WANT="$(cat "$ROOT/setup.py" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi

echo "[setup] installing longtrace-rl (editable, CPU stack) into $VENV"
start=$SECONDS
set +e
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" -e "$ROOT[dev]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory"   # noise from local index mirrors
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then echo "[setup] pip install failed (exit $rc)" >&2; exit "$rc"; fi
"$VENV/bin/python" -c "import reward, slime_ext, data_gen" \
    || { echo "[setup] install finished but the packages do not import" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "[setup] done in $((SECONDS - start)) s"
