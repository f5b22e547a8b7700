#!/usr/bin/env bash
# LongTraceRL, Qwen3-30B-A3B-Thinking-2507 (MoE, 128 experts, top-8), on an unmodified slime (THUDM/slime): the
# paper's 30B recipe (arXiv 2605.31584; recipes/longtracerl-qwen3-30b-a3b-thinking.sh is the same run on this
# project's trainer) as slime's train.py flags.
#
# Trains:   the 4B recipe's algorithm (recipes/slime/longtracerl-qwen3-4b-thinking.sh): 16 x 8 samples, 200 steps,
#           lr 2e-6, eps 0.2/0.28, IcePop [0.5, 2], no KL, positive-only group rubric (eta 0.3), eval at eta 0.
# Hardware: 4 nodes x 8 GPUs of 80 GB, colocated. Attention TP4 x PP2 x CP4 + SP, experts EP 16 with expert-TP 1
#           (Megatron lays experts out as ETP x EP x PP = 32 ranks); Adam states offloaded to the CPU as in slime's
#           own 30B script; SGLang engines of TP 8 with EP 8 (--sglang-ep-size).
# Needs:    as the 4B recipe: slime's image on every node, `pip install -r recipes/slime/requirements.txt`, a Ray
#           cluster, the HF weights and a torch_dist copy (REF_LOAD) from `longtrace convert hf-to-mcore` or slime's
#           tools/convert_hf_to_torch_dist.py.
# Run (head node):
#           HF_CHECKPOINT=/shared/Qwen3-30B-A3B-Thinking-2507 REF_LOAD=/shared/Qwen3-30B-A3B-Thinking-2507_torch_dist \
#           PROMPT_DATA=/shared/data/longtracerl EVAL_DATA=/shared/data/aa_lcr.jsonl \
#           JUDGE_BASE_URL=http://judge:30000/v1 JUDGE_API_KEY=... RUN_DIR=/shared/runs/qwen3-30b-slime \
#           bash recipes/slime/longtracerl-qwen3-30b-a3b-thinking.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/recipes/slime/common.sh"

NUM_NODES="${NUM_NODES:-4}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
RUN_NAME="${RUN_NAME:-longtracerl-qwen3-30b-a3b-thinking-slime}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/$RUN_NAME}"

# ---------------------------------------------------------------- model: slime's Qwen3-30B-A3B flags, RoPE base 1e7
HF_CHECKPOINT="${HF_CHECKPOINT:-$ROOT/models/Qwen3-30B-A3B-Thinking-2507}"
REF_LOAD="${REF_LOAD:-${HF_CHECKPOINT}_torch_dist}"
lt_require_path HF_CHECKPOINT "$HF_CHECKPOINT"
lt_require_path REF_LOAD "$REF_LOAD"
slime_model_args qwen3-30B-A3B.sh "$HF_CHECKPOINT" 10000000

# ---------------------------------------------------------------- parallelism and memory
PERF_ARGS=(
    --actor-num-nodes "$NUM_NODES" --actor-num-gpus-per-node "$GPUS_PER_NODE" --colocate
    --tensor-model-parallel-size "${TP:-4}" --sequence-parallel
    --pipeline-model-parallel-size "${PP:-2}" --context-parallel-size "${CP:-4}"
    --expert-model-parallel-size "${EP:-16}" --expert-tensor-parallel-size "${ETP:-1}"
    --recompute-granularity full --recompute-method uniform --recompute-num-layers 1
    --use-dynamic-batch-size --max-tokens-per-gpu "${MAX_TOKENS_PER_GPU:-8192}"
    --log-probs-chunk-size "${LOG_PROBS_CHUNK_SIZE:-4096}"
)

slime_longtracerl_args
OPTIMIZER_ARGS+=(--optimizer-cpu-offload --overlap-cpu-optimizer-d2h-h2d --use-precision-aware-optimizer)
SGLANG_ARGS+=(--sglang-ep-size "${SGLANG_EP_SIZE:-8}")
lt_mkdir "$RUN_DIR"
slime_write_reward_config "$REWARD_CONFIG" "${REWARD_URL:-}" "${REWARD_FLAGS[@]}"
slime_submit "${MODEL_ARGS[@]}" "${CKPT_ARGS[@]}" "${ROLLOUT_ARGS[@]}" "${EVAL_ARGS[@]}" "${PERF_ARGS[@]}" \
    "${GRPO_ARGS[@]}" "${OPTIMIZER_ARGS[@]}" "${REWARD_ARGS[@]}" "${WANDB_ARGS[@]}" "${SGLANG_ARGS[@]}" "${MISC_ARGS[@]}"
