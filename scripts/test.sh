#!/usr/bin/env bash
# The project's test command (README): set up .venv if needed, then run the test suite.
#
#   bash scripts/test.sh                 # everything under tests/
#   bash scripts/test.sh -k rubric -x    # extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
exec "${LONGTRACE_VENV:-$ROOT/.venv}/bin/python" -m pytest "${@:-tests}"
