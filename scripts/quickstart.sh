#!/usr/bin/env bash
# README command 1: set up .venv on a fresh CPU machine and run the main job on the embedded default data.
#
#   bash scripts/quickstart.sh            # output under runs/quickstart/ (LONGTRACE_RUN_DIR overrides)
#
# The main job, end to end on CPU (a few minutes after the install on 2 cores):
#   1. `longtrace data build` with the embedded config data_gen/configs/quickstart.json: synthetic world, BM25
#      index, knowledge-graph walks, template questions, scripted search-agent trajectories, tiered distractors,
#      2K-token contexts counted with a byte-level BPE trained on the world, HF dataset export (~10 s);
#   2. `longtrace reward score` on the bundled sample responses (validity, rule judge, entity rubric, eta=0.3);
#   3. `longtrace tiny-model`: a random-initialised Qwen3 (0.5M parameters) using the data build's tokenizer;
#   4. `longtrace train`: GRPO under Ray - Megatron-core trainer (local spec, gloo), two real SGLang 0.5.23 engines on
#      its CPU backend behind sglang-router (scripts/setup_sglang_cpu.sh builds their environment; where it cannot,
#      the torch fallback engine runs and a line says why), rewards, weight sync to the engines every step, eval,
#      checkpoint, wandb (offline) and metrics.jsonl; a per-step table on the console. A random model earns no reward: the numbers show the
#      plumbing, `python benchmarks/learn.py` shows a tiny model learning.
# Re-running resumes: the data build skips finished stages and training continues from the last checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh"
bash "$ROOT/scripts/setup_sglang_cpu.sh" --if-available
cd "$ROOT"
RUN_DIR="${LONGTRACE_RUN_DIR:-$ROOT/runs/quickstart}"
BIN="${LONGTRACE_VENV:-$ROOT/.venv}/bin"
STEPS="${LONGTRACE_QUICKSTART_STEPS:-4}"
mkdir -p "$RUN_DIR"

echo "== 1/4 training data from a synthetic world (offline): $RUN_DIR/data/dataset"
"$BIN/longtrace" data build data_gen/configs/quickstart.json --workdir "$RUN_DIR/data"

echo "== 2/4 scoring reward/data/sample_responses.jsonl (rule judge + entity rubric, eta=0.3, positive-only)"
"$BIN/longtrace" reward score --input reward/data/sample_responses.jsonl \
    --output "$RUN_DIR/scored.jsonl" --no-resume --show 20

echo "== 3/4 tiny random Qwen3 with the data build's tokenizer: $RUN_DIR/tiny-qwen3"
if [[ ! -f "$RUN_DIR/tiny-qwen3/config.json" ]]; then
    "$BIN/longtrace" tiny-model --out "$RUN_DIR/tiny-qwen3" --tokenizer "$RUN_DIR/data/local_bpe_8192"
fi

ENGINES="$("$BIN/python" -c 'from slime_ext.sglang_env import resolve_backend
backend, note = resolve_backend("auto", "cpu")
print("SGLang 0.5.23 engines on its CPU backend" if backend == "sglang" else f"torch fallback engines ({note})")')"
echo "== 4/4 GRPO training, $STEPS rollout steps (Ray, Megatron-core trainer, 2 $ENGINES behind sglang-router)"
"$BIN/longtrace" train --cpu --hf-checkpoint "$RUN_DIR/tiny-qwen3" \
    --prompt-data "$RUN_DIR/data/dataset/data/train.jsonl" \
    --eval-prompt-data quickstart "$RUN_DIR/data/dataset/data/eval.jsonl" --eval-interval 2 \
    --n-samples-per-eval-prompt 1 --eval-max-response-len 32 \
    --num-rollout "$STEPS" --rollout-batch-size 2 --n-samples-per-prompt 4 --rollout-max-response-len 64 \
    --num-engines 2 --torch-threads 1 --lr 1e-3 \
    --run-dir "$RUN_DIR/train" --save "$RUN_DIR/checkpoints" --load "$RUN_DIR/checkpoints" --save-interval 2 \
    --use-wandb --wandb-mode offline --wandb-project longtrace-quickstart 2> "$RUN_DIR/train.log" \
    || { echo "training failed; last lines of $RUN_DIR/train.log:" >&2; tail -40 "$RUN_DIR/train.log" >&2; exit 1; }
echo "== done: metrics $RUN_DIR/train/metrics.jsonl, wandb offline run under $RUN_DIR/train/wandb" \
     "(wandb sync to upload), checkpoints $RUN_DIR/checkpoints"
