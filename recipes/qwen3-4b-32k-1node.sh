#!/usr/bin/env bash
# LongTraceRL method at 32K on one node: GRPO of Qwen3-4B-Thinking-2507 on 24K-token prompts + up to 8K-token
# responses (32,768-token context), everything else as the paper (16 x 8 samples, lr 2e-6 constant,
# eps 0.2/0.28, IcePop [0.5, 2], no KL, positive-only rubric eta 0.3).
#
# Data:     assemble at a 24K budget with the Qwen3 tokenizer, e.g. `longtrace data assemble ... --budget 24576
#           --tokenizer qwen`, or a build config with assembly.budget 24576 (data_gen/configs/synthetic_32k.json
#           builds 32K prompts: with it set MAX_CONTEXT_LEN=40960 MAX_RESPONSE_LEN=8192).
# Hardware: 1 node x 8 GPUs of 80 GB (H100/H800/A100-80G). Trainer TP2 x CP2 + SP (DP 2), SGLang engines of TP 2
#           (4 engines), colocated; one node, so weights move to the engines by CUDA IPC (tensor transport).
#           Estimated ~4-6 min per step (docs/recipes.md; estimates, not measurements).
# Run:      HF_CHECKPOINT=models/Qwen3-4B-Thinking-2507 PROMPT_DATA=data/longtracerl-24k \
#           JUDGE_BASE_URL=http://judge:30000/v1 JUDGE_API_KEY=... bash recipes/qwen3-4b-32k-1node.sh
#           (no judge endpoint? JUDGE=rule uses the rule-based outcome judge instead). Runs `python -m
#           slime_ext.train` directly; Ray is started locally by the trainer. Resume: same RUN_DIR, or LOAD=DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/recipes/common.sh"

# ---------------------------------------------------------------- cluster and run
NUM_NODES=1
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
RUN_NAME="${RUN_NAME:-qwen3-4b-32k-1node}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/$RUN_NAME}"

# ---------------------------------------------------------------- model
HF_CHECKPOINT="${HF_CHECKPOINT:-$ROOT/models/Qwen3-4B-Thinking-2507}"
lt_require_path HF_CHECKPOINT "$HF_CHECKPOINT"
MODEL_ARGS=(--hf-checkpoint "$HF_CHECKPOINT")
[[ -n "${MCORE_CHECKPOINT:-}" ]] && MODEL_ARGS+=(--ref-load "$MCORE_CHECKPOINT")

# ---------------------------------------------------------------- checkpoints
SAVE_DIR="${SAVE_DIR:-$RUN_DIR/checkpoints}"
LOAD="${LOAD:-$(lt_latest_checkpoint "$SAVE_DIR")}"
CKPT_ARGS=(--save "$SAVE_DIR" --save-interval "${SAVE_INTERVAL:-20}" --run-dir "$RUN_DIR")
[[ -n "$LOAD" ]] && CKPT_ARGS+=(--load "$LOAD") && lt_log "resuming from $LOAD"
[[ -n "${SAVE_HF:-}" ]] && CKPT_ARGS+=(--save-hf "$SAVE_HF")

# ---------------------------------------------------------------- rollout: 16 prompts x 8 samples, 32K context
PROMPT_DATA="${PROMPT_DATA:-$ROOT/data/longtracerl-24k}"
lt_require_path PROMPT_DATA "$PROMPT_DATA"
ROLLOUT_ARGS=(
    --prompt-data "$PROMPT_DATA"
    --input-key "${INPUT_KEY:-input_messages}" --label-key "${LABEL_KEY:-label}" --metadata-key "${METADATA_KEY:-metadata}"
    --apply-chat-template
    --rollout-shuffle --rollout-seed "${ROLLOUT_SEED:-42}"
    --num-rollout "${NUM_ROLLOUT:-200}"
    --rollout-batch-size "${ROLLOUT_BATCH_SIZE:-16}"
    --n-samples-per-prompt "${N_SAMPLES_PER_PROMPT:-8}"
    --global-batch-size "${GLOBAL_BATCH_SIZE:-128}"
    --rollout-max-response-len "${MAX_RESPONSE_LEN:-8192}"
    --rollout-max-context-len "${MAX_CONTEXT_LEN:-32768}"
    --rollout-temperature "${TEMPERATURE:-1.0}"
)

# ---------------------------------------------------------------- evaluation
EVAL_ARGS=()
if [[ -n "${EVAL_DATA:-}" ]]; then
    lt_require_path EVAL_DATA "$EVAL_DATA"
    EVAL_ARGS=(
        --eval-interval "${EVAL_INTERVAL:-20}"
        --eval-prompt-data "${EVAL_NAME:-eval}" "$EVAL_DATA"
        --n-samples-per-eval-prompt "${EVAL_SAMPLES:-4}"
        --eval-temperature 0.6 --eval-top-p 0.95 --eval-top-k 20
        --eval-max-response-len "${EVAL_MAX_RESPONSE_LEN:-${MAX_RESPONSE_LEN:-8192}}"
    )
    [[ "${EVAL_ONLY:-0}" == 1 ]] && EVAL_ARGS+=(--eval-only)
fi

# ---------------------------------------------------------------- parallelism and memory
PERF_ARGS=(
    --actor-num-nodes 1 --actor-num-gpus-per-node "$GPUS_PER_NODE"
    --tensor-model-parallel-size "${TP:-2}" --pipeline-model-parallel-size "${PP:-1}" --context-parallel-size "${CP:-2}"
    --sequence-parallel
    --recompute-activations
    --max-tokens-per-gpu "${MAX_TOKENS_PER_GPU:-16384}"
    --bf16
)

# ---------------------------------------------------------------- GRPO
GRPO_ARGS=(
    --advantage-estimator grpo
    --eps-clip 0.2 --eps-clip-high 0.28
    --kl-loss-coef 0.0 --entropy-coef 0.0
    --calculate-per-token-loss
    --use-tis --custom-tis-function-path slime.backends.megatron_utils.loss.icepop_function --tis-clip-low 0.5 --tis-clip 2.0
)

# ---------------------------------------------------------------- optimiser
OPTIMIZER_ARGS=(
    --lr "${LR:-2e-6}" --lr-decay-style constant
    --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.98 --clip-grad 1.0
)

# ---------------------------------------------------------------- reward
JUDGE="${JUDGE:-llm}"
REWARD_ARGS=(
    --rubric-combine positive_only --rubric-reward-ratio "${ETA:-0.3}" --normalize-rubric-reward
    --rubric-source content
)
if [[ -n "${REWARD_URL:-}" ]]; then
    REWARD_ARGS+=(--reward-url "$REWARD_URL")
elif [[ "$JUDGE" == llm ]]; then
    [[ -n "${JUDGE_BASE_URL:-}" || "${LT_DRY_RUN:-0}" == 1 ]] || lt_die "set JUDGE_BASE_URL (or JUDGE=rule, or REWARD_URL)"
    REWARD_ARGS+=(
        --judge llm --judge-base-url "${JUDGE_BASE_URL:-}" --judge-model "${JUDGE_MODEL:-Qwen/Qwen3-235B-A22B-Instruct-2507}"
        --judge-api-key-env "${JUDGE_API_KEY_ENV:-JUDGE_API_KEY}" --judge-concurrency "${JUDGE_CONCURRENCY:-64}"
        --judge-cache "$RUN_DIR/judge_cache.sqlite"
    )
else
    REWARD_ARGS+=(--judge "$JUDGE")
fi

# ---------------------------------------------------------------- tracking
WANDB_ARGS=()
[[ "${USE_WANDB:-1}" == 1 ]] && WANDB_ARGS+=(--use-wandb --wandb-project "${WANDB_PROJECT:-longtrace-rl}" --wandb-run-name "$RUN_NAME")
[[ "${USE_TENSORBOARD:-1}" == 1 ]] && WANDB_ARGS+=(--use-tensorboard)

# ---------------------------------------------------------------- SGLang engines, colocated, CUDA-IPC weight sync
SGLANG_ARGS=(
    --colocate
    --rollout-backend sglang
    --rollout-num-gpus "$GPUS_PER_NODE"
    --rollout-num-gpus-per-engine "${ROLLOUT_GPUS_PER_ENGINE:-2}"
    --sglang-mem-fraction-static "${SGLANG_MEM_FRACTION:-0.7}"
    --sglang-context-length "${MAX_CONTEXT_LEN:-32768}"
)
# SGLang's output layer in fp32, like the trainer's (rollout log-probs feed the IcePop ratio); FP32_LM_HEAD=0 drops it
[[ "${FP32_LM_HEAD:-1}" == 1 ]] && SGLANG_ARGS+=(--sglang-enable-fp32-lm-head)
# any other SGLang server flags, one string (e.g. SGLANG_EXTRA_ARGS="--kv-cache-dtype fp8_e5m2")
[[ -n "${SGLANG_EXTRA_ARGS:-}" ]] && SGLANG_ARGS+=("--sglang-extra-args=$SGLANG_EXTRA_ARGS")  # "=": the value starts with --

lt_mkdir "$RUN_DIR"
lt_launch "${MODEL_ARGS[@]}" "${CKPT_ARGS[@]}" "${ROLLOUT_ARGS[@]}" "${EVAL_ARGS[@]}" "${PERF_ARGS[@]}" \
    "${GRPO_ARGS[@]}" "${OPTIMIZER_ARGS[@]}" "${REWARD_ARGS[@]}" "${WANDB_ARGS[@]}" "${SGLANG_ARGS[@]}"
