#!/usr/bin/env bash
# LongTraceRL, Qwen3-4B-Thinking-2507: GRPO on 128K-token prompts + up to 32K-token responses
# (160,000-token context), the paper's recipe (arXiv 2605.31584, longtracerl.md §4).
#
# Trains:   Qwen/Qwen3-4B-Thinking-2507 on a LongTraceRL-style dataset (`longtrace data export` folder or JSONL),
#           16 prompts x 8 samples per step, 200 steps, lr 2e-6 constant, eps 0.2/0.28, IcePop [0.5, 2], no KL;
#           reward = LLM-judge outcome + positive-only entity rubric (eta 0.3, group-normalised, on the answer).
# Hardware: 4 nodes x 8 GPUs of 80 GB (H100/H800), 32 GPUs; trainer and SGLang colocated on the same GPUs;
#           TP4 x PP2 x CP4 + SP (DP 1); SGLang engines of TP 8 (one per node). RUN_DIR must be on a filesystem
#           every node sees (checkpoints and the disk weight sync are written there).
#           Estimated ~10-30 min per step (docs/recipes.md: estimates, not measurements).
# Run:      1. every node runs the docker image (docker/) or has the GPU stack installed;
#           2. start Ray: `bash scripts/ray_cluster.sh start hostfile` (or scripts/slurm_example.sbatch);
#           3. on the head node:
#              HF_CHECKPOINT=/shared/models/Qwen3-4B-Thinking-2507 PROMPT_DATA=/shared/data/longtracerl \
#              EVAL_DATA=/shared/data/aa_lcr.jsonl JUDGE_BASE_URL=http://judge:30000/v1 JUDGE_API_KEY=... \
#              RUN_DIR=/shared/runs/qwen3-4b bash recipes/longtracerl-qwen3-4b-thinking.sh
#           Resume: run it again with the same RUN_DIR (the latest checkpoint in SAVE_DIR is loaded), or LOAD=DIR.
#           Every value below is an environment variable with the paper's setting as default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/recipes/common.sh"

# ---------------------------------------------------------------- cluster and run
NUM_NODES="${NUM_NODES:-4}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
RUN_NAME="${RUN_NAME:-longtracerl-qwen3-4b-thinking}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/$RUN_NAME}"
GPUS=$((NUM_NODES * GPUS_PER_NODE))

# ---------------------------------------------------------------- model (architecture comes from the HF config)
HF_CHECKPOINT="${HF_CHECKPOINT:-$ROOT/models/Qwen3-4B-Thinking-2507}"
MCORE_CHECKPOINT="${MCORE_CHECKPOINT:-}"  # optional: `longtrace convert hf-to-mcore` output, loads faster
lt_require_path HF_CHECKPOINT "$HF_CHECKPOINT"
MODEL_ARGS=(--hf-checkpoint "$HF_CHECKPOINT")
[[ -n "$MCORE_CHECKPOINT" ]] && MODEL_ARGS+=(--ref-load "$MCORE_CHECKPOINT")

# ---------------------------------------------------------------- checkpoints
SAVE_DIR="${SAVE_DIR:-$RUN_DIR/checkpoints}"
SAVE_INTERVAL="${SAVE_INTERVAL:-20}"
LOAD="${LOAD:-$(lt_latest_checkpoint "$SAVE_DIR")}"
SAVE_HF="${SAVE_HF:-}"  # e.g. $RUN_DIR/hf/step_{rollout_id}: HF weights next to each checkpoint
CKPT_ARGS=(--save "$SAVE_DIR" --save-interval "$SAVE_INTERVAL" --run-dir "$RUN_DIR")
[[ -n "$LOAD" ]] && CKPT_ARGS+=(--load "$LOAD") && lt_log "resuming from $LOAD"
[[ -n "$SAVE_HF" ]] && CKPT_ARGS+=(--save-hf "$SAVE_HF")

# ---------------------------------------------------------------- rollout: 16 prompts x 8 samples, 160K context
PROMPT_DATA="${PROMPT_DATA:-$ROOT/data/longtracerl}"
lt_require_path PROMPT_DATA "$PROMPT_DATA"
ROLLOUT_BATCH_SIZE="${ROLLOUT_BATCH_SIZE:-16}"
N_SAMPLES_PER_PROMPT="${N_SAMPLES_PER_PROMPT:-8}"
GLOBAL_BATCH_SIZE="${GLOBAL_BATCH_SIZE:-128}"
ROLLOUT_ARGS=(
    --prompt-data "$PROMPT_DATA"
    --input-key "${INPUT_KEY:-input_messages}" --label-key "${LABEL_KEY:-label}" --metadata-key "${METADATA_KEY:-metadata}"
    --apply-chat-template
    --rollout-shuffle --rollout-seed "${ROLLOUT_SEED:-42}"
    --num-rollout "${NUM_ROLLOUT:-200}"
    --rollout-batch-size "$ROLLOUT_BATCH_SIZE"
    --n-samples-per-prompt "$N_SAMPLES_PER_PROMPT"
    --global-batch-size "$GLOBAL_BATCH_SIZE"
    --rollout-max-response-len "${MAX_RESPONSE_LEN:-32000}"
    --rollout-max-context-len "${MAX_CONTEXT_LEN:-160000}"
    --rollout-temperature "${TEMPERATURE:-1.0}" --rollout-top-p "${TOP_P:-1.0}" --rollout-top-k "${TOP_K:--1}"
    --sglang-router-request-timeout-secs "${ROLLOUT_REQUEST_TIMEOUT:-36000}"
)

# ---------------------------------------------------------------- evaluation: AA-LCR-style set, avg@4
EVAL_DATA="${EVAL_DATA:-}"
EVAL_ARGS=()
if [[ -n "$EVAL_DATA" ]]; then
    lt_require_path EVAL_DATA "$EVAL_DATA"
    EVAL_ARGS=(
        --eval-interval "${EVAL_INTERVAL:-20}"
        --eval-prompt-data "${EVAL_NAME:-aa-lcr}" "$EVAL_DATA"
        --n-samples-per-eval-prompt "${EVAL_SAMPLES:-4}"
        --eval-temperature "${EVAL_TEMPERATURE:-0.6}" --eval-top-p "${EVAL_TOP_P:-0.95}" --eval-top-k "${EVAL_TOP_K:-20}"
        --eval-max-response-len "${EVAL_MAX_RESPONSE_LEN:-32000}"
    )
    # EVAL_ONLY=1: evaluate the starting weights (or LOAD) and exit, eta forced to 0 (pass@k and mean over samples)
    [[ "${EVAL_ONLY:-0}" == 1 ]] && EVAL_ARGS+=(--eval-only)
else
    lt_log "no EVAL_DATA: training without periodic evaluation (the paper evaluates AA-LCR every 20 steps)"
fi

# ---------------------------------------------------------------- parallelism and memory
TP="${TP:-4}"; PP="${PP:-2}"; CP="${CP:-4}"
PERF_ARGS=(
    --actor-num-nodes "$NUM_NODES" --actor-num-gpus-per-node "$GPUS_PER_NODE"
    --tensor-model-parallel-size "$TP" --pipeline-model-parallel-size "$PP" --context-parallel-size "$CP"
    --sequence-parallel
    --recompute-activations
    --max-tokens-per-gpu "${MAX_TOKENS_PER_GPU:-8192}"
    --log-probs-chunk-size "${LOG_PROBS_CHUNK_SIZE:-4096}"
    --bf16
)

# ---------------------------------------------------------------- GRPO: clip-higher, IcePop, no KL, no entropy
GRPO_ARGS=(
    --advantage-estimator grpo
    --eps-clip "${EPS_CLIP:-0.2}" --eps-clip-high "${EPS_CLIP_HIGH:-0.28}"
    --kl-loss-coef 0.0 --entropy-coef 0.0
    --calculate-per-token-loss
    --use-tis --custom-tis-function-path slime.backends.megatron_utils.loss.icepop_function --tis-clip-low "${TIS_CLIP_LOW:-0.5}" --tis-clip "${TIS_CLIP_HIGH:-2.0}"
)

# ---------------------------------------------------------------- optimiser: Adam, lr 2e-6 constant
OPTIMIZER_ARGS=(
    --lr "${LR:-2e-6}" --lr-decay-style constant --lr-warmup-iters 0
    --weight-decay "${WEIGHT_DECAY:-0.1}" --adam-beta1 "${ADAM_BETA1:-0.9}" --adam-beta2 "${ADAM_BETA2:-0.98}"
    --clip-grad "${CLIP_GRAD:-1.0}"
)

# ---------------------------------------------------------------- reward: LLM judge + positive-only rubric
# The judge is any OpenAI-compatible endpoint (the paper: Qwen3-235B-A22B-Instruct-2507, non-thinking); its API
# key is read from the variable named by JUDGE_API_KEY_ENV, never passed on the command line. With REWARD_URL,
# samples are scored by a running `longtrace reward serve` (started with the same reward flags) instead.
REWARD_URL="${REWARD_URL:-}"
JUDGE_BASE_URL="${JUDGE_BASE_URL:-}"
JUDGE_MODEL="${JUDGE_MODEL:-Qwen/Qwen3-235B-A22B-Instruct-2507}"
JUDGE_API_KEY_ENV="${JUDGE_API_KEY_ENV:-JUDGE_API_KEY}"
REWARD_ARGS=(
    --rubric-combine positive_only --rubric-reward-ratio "${ETA:-0.3}" --normalize-rubric-reward
    --rubric-source content
)
if [[ -n "$REWARD_URL" ]]; then
    REWARD_ARGS+=(--reward-url "$REWARD_URL")
else
    [[ -n "$JUDGE_BASE_URL" || "${LT_DRY_RUN:-0}" == 1 ]] || lt_die "set JUDGE_BASE_URL (OpenAI-compatible judge endpoint) or REWARD_URL"
    REWARD_ARGS+=(
        --judge llm --judge-base-url "$JUDGE_BASE_URL" --judge-model "$JUDGE_MODEL"
        --judge-api-key-env "$JUDGE_API_KEY_ENV"
        --judge-concurrency "${JUDGE_CONCURRENCY:-64}" --judge-timeout "${JUDGE_TIMEOUT:-300}"
        --judge-cache "${JUDGE_CACHE:-$RUN_DIR/judge_cache.sqlite}"
    )
    [[ -n "${JUDGE_EXTRA_BODY:-}" ]] && REWARD_ARGS+=(--judge-extra-body "$JUDGE_EXTRA_BODY")
    LT_FORWARD_ENV="${LT_FORWARD_ENV:-} $JUDGE_API_KEY_ENV"
fi

# ---------------------------------------------------------------- tracking (WANDB_MODE=offline works too)
WANDB_ARGS=()
if [[ "${USE_WANDB:-1}" == 1 ]]; then
    WANDB_ARGS+=(--use-wandb --wandb-project "${WANDB_PROJECT:-longtrace-rl}" --wandb-group "${WANDB_GROUP:-$RUN_NAME}"
                 --wandb-run-name "${WANDB_RUN_NAME:-$RUN_NAME}")
fi
[[ "${USE_TENSORBOARD:-1}" == 1 ]] && WANDB_ARGS+=(--use-tensorboard)

# ---------------------------------------------------------------- SGLang engines, colocated, weight sync
# PP > 1 and several nodes, colocated: weights go to the engines through files on the shared filesystem (the
# tensor transport feeds each engine from the trainer ranks on its GPUs, each holding one pipeline stage only, and
# the NCCL one sends from trainer rank 0; see docs/recipes.md).
SGLANG_ARGS=(
    --colocate
    --rollout-backend sglang
    --rollout-num-gpus "$GPUS"
    --rollout-num-gpus-per-engine "${ROLLOUT_GPUS_PER_ENGINE:-8}"
    --sglang-mem-fraction-static "${SGLANG_MEM_FRACTION:-0.7}"
    --sglang-context-length "${SGLANG_CONTEXT_LENGTH:-${MAX_CONTEXT_LEN:-160000}}"
    --router-policy "${ROUTER_POLICY:-round_robin}"
    --update-weight-transport "${WEIGHT_TRANSPORT:-disk}"
    --update-weight-disk-dir "${UPDATE_WEIGHT_DIR:-$RUN_DIR/weights}"
)
# SGLang's output layer in fp32, like the trainer's (rollout log-probs feed the IcePop ratio); FP32_LM_HEAD=0 drops it
[[ "${FP32_LM_HEAD:-1}" == 1 ]] && SGLANG_ARGS+=(--sglang-enable-fp32-lm-head)
# any other SGLang server flags, one string (e.g. SGLANG_EXTRA_ARGS="--kv-cache-dtype fp8_e5m2")
[[ -n "${SGLANG_EXTRA_ARGS:-}" ]] && SGLANG_ARGS+=("--sglang-extra-args=$SGLANG_EXTRA_ARGS")  # "=": the value starts with --

lt_check_ray_gpus "$GPUS"
lt_mkdir "$RUN_DIR"
lt_launch "${MODEL_ARGS[@]}" "${CKPT_ARGS[@]}" "${ROLLOUT_ARGS[@]}" "${EVAL_ARGS[@]}" "${PERF_ARGS[@]}" \
    "${GRPO_ARGS[@]}" "${OPTIMIZER_ARGS[@]}" "${REWARD_ARGS[@]}" "${WANDB_ARGS[@]}" "${SGLANG_ARGS[@]}"
