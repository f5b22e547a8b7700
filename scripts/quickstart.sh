#!/usr/bin/env bash
# README command 1: set up .venv on a fresh CPU machine and run the main job on the embedded default data.
#
#   bash scripts/quickstart.sh            # output under runs/quickstart/ (LONGTRACE_RUN_DIR overrides)
#
# Today the main job builds a small training dataset offline with `longtrace data build` and the embedded config
# data_gen/configs/quickstart.json (synthetic world, BM25 index, walks, template questions, scripted search-agent
# trajectories, tiers, 4K-token contexts with a byte-level BPE trained on the world, HF export: ~15 s), scores the
# bundled sample of responses with the reward package (validity checks, rule judge, entity rubric, positive-only
# group combination), then runs a rollout step for real on CPU: two torch engines (tiny random Qwen3) behind
# sglang-router, groups scored.
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

echo "== rollout: 2 torch engines (tiny random Qwen3) behind sglang-router, GRPO groups generated and scored"
"${LONGTRACE_VENV:-$ROOT/.venv}/bin/python" - "$RUN_DIR/prompts.jsonl" <<'PY'
import json, sys
with open("reward/data/sample_responses.jsonl") as f, open(sys.argv[1], "w") as out:
    seen = set()
    for line in f:
        r = json.loads(line)
        info = r.get("extra_reward_info") or r.get("metadata", {}).get("extra_reward_info")
        if not info or info["question"] in seen:
            continue
        seen.add(info["question"])
        out.write(json.dumps({"prompt": info["question"], "label": r["label"], "metadata": {"extra_reward_info": info}}) + "\n")
PY
"${LONGTRACE_VENV:-$ROOT/.venv}/bin/longtrace" tiny-model --out "$RUN_DIR/tiny-qwen3" >/dev/null
"${LONGTRACE_VENV:-$ROOT/.venv}/bin/longtrace" rollout --prompt-data "$RUN_DIR/prompts.jsonl" \
    --output "$RUN_DIR/rollout.jsonl" --model-path "$RUN_DIR/tiny-qwen3" --backend torch --num-engines 2 \
    --torch-threads 1 --rollout-batch-size 2 --n-samples-per-prompt 4 --rollout-max-response-len 64 \
    --log-dir "$RUN_DIR/engine-logs" 2>&1 | grep -v "HTTP Request"
echo "== rollout samples written to $RUN_DIR/rollout.jsonl (a random tiny model: rewards are 0, the plumbing is real)"
