#!/usr/bin/env bash
# The project's test command (README): set up .venv if needed, then run the test suite.
#
#   bash scripts/test.sh                 # everything under tests/
#   bash scripts/test.sh -k rubric -x    # extra arguments go to pytest
#
# It also sets up the SGLang CPU engine env (scripts/setup_sglang_cpu.sh --if-available: a machine without the
# sgl_kernel wheel, AVX-512 or Python 3.11 gets one line instead) and hands its interpreter to the tests as
# LONGTRACE_SGLANG_PYTHON; the tests that need the real SGLang server skip without it. A LONGTRACE_SGLANG_PYTHON that is
# already set is kept, and then no engine env is built.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh"
if [ -z "${LONGTRACE_SGLANG_PYTHON:-}" ]; then
    bash "$ROOT/scripts/setup_sglang_cpu.sh" --if-available
    SGLANG_PREFIX="${LONGTRACE_SGLANG_PREFIX:-$ROOT/.sglang-cpu}"
    case "$SGLANG_PREFIX" in /*) ;; *) SGLANG_PREFIX="$PWD/$SGLANG_PREFIX" ;; esac
    # the stamp marks a finished build (a build that failed or was interrupted leaves none)
    if [ -x "$SGLANG_PREFIX/venv/bin/python" ] && [ -f "$SGLANG_PREFIX/.longtrace-sglang-stamp" ]; then
        export LONGTRACE_SGLANG_PYTHON="$SGLANG_PREFIX/venv/bin/python"
    fi
fi
cd "$ROOT"
exec "${LONGTRACE_VENV:-$ROOT/.venv}/bin/python" -m pytest "${@:-tests}"
