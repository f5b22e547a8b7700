#!/usr/bin/env bash
# README command 1: set up .venv on a fresh CPU machine and run the main job on the embedded default data.
#
#   bash scripts/quickstart.sh            # output under runs/quickstart/ (LONGTRACE_RUN_DIR overrides)
#
# Today the main job builds a small training dataset offline with `longtrace data build` and the embedded config
# data_gen/configs/quickstart.json (synthetic world, BM25 index, walks, template questions, scripted search-agent
# trajectories, tiers, 4K-token contexts with a byte-level BPE trained on the world, HF export: ~15 s), then scores
# the bundled sample of responses with the reward package (validity checks, rule judge, entity rubric,
# positive-only group combination).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
RUN_DIR="${LONGTRACE_RUN_DIR:-$ROOT/runs/quickstart}"
mkdir -p "$RUN_DIR"

echo "== training data from a synthetic world (offline): $RUN_DIR/data/dataset"
"${LONGTRACE_VENV:-$ROOT/.venv}/bin/longtrace" data build data_gen/configs/quickstart.json --workdir "$RUN_DIR/data"
echo "== scoring reward/data/sample_responses.jsonl (rule judge + entity rubric, eta=0.3, positive-only)"
"${LONGTRACE_VENV:-$ROOT/.venv}/bin/longtrace" reward score \
    --input reward/data/sample_responses.jsonl \
    --output "$RUN_DIR/scored.jsonl" --no-resume --show 20
echo "== scores written to $RUN_DIR/scored.jsonl"
