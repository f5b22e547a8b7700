#!/usr/bin/env bash
# The whole loop on a CPU (a laptop is enough): GRPO of a tiny random Qwen3-architecture model on the quickstart
# data, with the real pieces: megatron-core trainer (gloo), SGLang 0.5.23 on its CPU backend behind sglang-router
# (scripts/setup_sglang_cpu.sh; without it the torch fallback engine, with a line saying why), the entity rubric
# reward, wandb offline. A random tiny model earns ~0 reward: this checks the plumbing, not learning
# (benchmarks/learn.py shows learning).
#
# Trains:   `longtrace tiny-model` (2 layers, hidden 64) on `longtrace data build data_gen/configs/quickstart.json`
#           (synthetic world, 2K-token contexts counted with the byte-level BPE the build trains, which the tiny
#           model then uses as its tokenizer), 3 GRPO steps of 2 prompts x 4 samples, responses of at most 48 tokens.
# Hardware: an x86-64 CPU with AVX-512 for SGLang (any CPU for the fallback), ~6 GB of free memory (an SGLang engine
#           holds ~2 GB); no GPU, no network after `scripts/setup_venv.sh` and `scripts/setup_sglang_cpu.sh`.
# Run:      bash recipes/tiny-cpu.sh                  # output under runs/tiny-cpu (RUN_DIR overrides)
#           NUM_ROLLOUT=4 bash recipes/tiny-cpu.sh    # every value below is an environment variable
#           wandb files land in RUN_DIR (offline); `wandb sync RUN_DIR/wandb/offline-run-*` uploads them later.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/recipes/common.sh"
cd "$ROOT"

RUN_DIR="${RUN_DIR:-$ROOT/runs/tiny-cpu}"
VENV="${LONGTRACE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$VENV/bin/python}"
NUM_NODES=1

# ---------------------------------------------------------------- preparation: venv, data, tiny model (resumable)
DATA_DIR="${DATA_DIR:-$RUN_DIR/data}"
TINY_MODEL="${TINY_MODEL:-$RUN_DIR/tiny-qwen3}"
if [[ "${LT_DRY_RUN:-0}" != 1 ]]; then
    bash "$ROOT/scripts/setup_venv.sh"
    bash "$ROOT/scripts/setup_sglang_cpu.sh" --if-available
    mkdir -p "$RUN_DIR"
    lt_log "training data: longtrace data build data_gen/configs/quickstart.json -> $DATA_DIR/dataset"
    "$VENV/bin/longtrace" data build "${DATA_CONFIG:-data_gen/configs/quickstart.json}" --workdir "$DATA_DIR"
    if [[ ! -f "$TINY_MODEL/config.json" ]]; then
        lt_log "tiny model: longtrace tiny-model -> $TINY_MODEL"
        "$VENV/bin/longtrace" tiny-model --out "$TINY_MODEL" --tokenizer "$DATA_DIR/local_bpe_8192" >/dev/null
    fi
fi

# ---------------------------------------------------------------- model and checkpoints
MODEL_ARGS=(--hf-checkpoint "$TINY_MODEL")
SAVE_DIR="${SAVE_DIR:-$RUN_DIR/checkpoints}"
CKPT_ARGS=(--save "$SAVE_DIR" --save-interval "${SAVE_INTERVAL:-2}" --run-dir "$RUN_DIR")
LOAD="${LOAD:-$(lt_latest_checkpoint "$SAVE_DIR")}"
[[ -n "$LOAD" ]] && CKPT_ARGS+=(--load "$LOAD") && lt_log "resuming from $LOAD"

# ---------------------------------------------------------------- rollout: 2 prompts x 4 samples, short answers
ROLLOUT_ARGS=(
    --prompt-data "$DATA_DIR/dataset"
    --input-key "${INPUT_KEY:-input_messages}" --label-key "${LABEL_KEY:-label}" --metadata-key "${METADATA_KEY:-metadata}"
    --apply-chat-template
    --rollout-shuffle --rollout-seed "${ROLLOUT_SEED:-42}"
    --num-rollout "${NUM_ROLLOUT:-3}"
    --rollout-batch-size "${ROLLOUT_BATCH_SIZE:-2}"
    --n-samples-per-prompt "${N_SAMPLES_PER_PROMPT:-4}"
    --global-batch-size "${GLOBAL_BATCH_SIZE:-8}"
    --rollout-max-response-len "${MAX_RESPONSE_LEN:-48}"
    --rollout-max-context-len "${MAX_CONTEXT_LEN:-12288}"
    --rollout-temperature 1.0
)

# ---------------------------------------------------------------- evaluation: the exported eval split, once at the end
EVAL_ARGS=(
    --eval-interval "${EVAL_INTERVAL:-3}"
    --eval-prompt-data quickstart "$DATA_DIR/dataset/data/eval.jsonl"
    --n-samples-per-eval-prompt "${EVAL_SAMPLES:-1}"
    --eval-max-response-len "${MAX_RESPONSE_LEN:-48}"
)

# ---------------------------------------------------------------- CPU placement: one trainer process, one engine
PERF_ARGS=(
    --cpu
    --actor-num-nodes 1 --actor-num-gpus-per-node "${TRAINER_PROCS:-1}"
    --ray-num-cpus "${RAY_NUM_CPUS:-$(nproc)}"
    --max-tokens-per-gpu "${MAX_TOKENS_PER_GPU:-12288}"
)

# ---------------------------------------------------------------- GRPO and optimiser: the paper's, a larger lr
GRPO_ARGS=(
    --advantage-estimator grpo
    --eps-clip 0.2 --eps-clip-high 0.28
    --kl-loss-coef 0.0 --entropy-coef 0.0
    --calculate-per-token-loss
    --use-tis --custom-tis-function-path slime.backends.megatron_utils.loss.icepop_function --tis-clip-low 0.5 --tis-clip 2.0
)
OPTIMIZER_ARGS=(--lr "${LR:-1e-5}" --lr-decay-style constant --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.98 --clip-grad 1.0)

# ---------------------------------------------------------------- reward: rule judge (offline) + positive-only rubric
REWARD_ARGS=(
    --judge rule
    --rubric-combine positive_only --rubric-reward-ratio 0.3 --normalize-rubric-reward --rubric-source content
)

# ---------------------------------------------------------------- tracking: wandb offline
WANDB_ARGS=()
[[ "${USE_WANDB:-1}" == 1 ]] && WANDB_ARGS+=(--use-wandb --wandb-mode "${WANDB_MODE:-offline}" --wandb-project "${WANDB_PROJECT:-longtrace-rl-tiny}")

# ---------------------------------------------------------------- engines: SGLang (CPU backend) behind sglang-router
# auto: SGLang when scripts/setup_sglang_cpu.sh built its environment, else the torch fallback engine
SGLANG_ARGS=(
    --rollout-backend "${ROLLOUT_BACKEND:-auto}"
    --num-engines "${NUM_ENGINES:-1}"
    --torch-threads "${TORCH_THREADS:-1}"
    --update-weight-transport "${UPDATE_WEIGHT_TRANSPORT:-disk}"
)

lt_launch "${MODEL_ARGS[@]}" "${CKPT_ARGS[@]}" "${ROLLOUT_ARGS[@]}" "${EVAL_ARGS[@]}" "${PERF_ARGS[@]}" \
    "${GRPO_ARGS[@]}" "${OPTIMIZER_ARGS[@]}" "${REWARD_ARGS[@]}" "${WANDB_ARGS[@]}" "${SGLANG_ARGS[@]}"
