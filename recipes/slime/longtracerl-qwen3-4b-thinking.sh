#!/usr/bin/env bash
# LongTraceRL, Qwen3-4B-Thinking-2507, on an unmodified slime (THUDM/slime): the paper's recipe (arXiv 2605.31584;
# recipes/longtracerl-qwen3-4b-thinking.sh is the same run on this project's trainer) as slime's train.py flags.
#
# Trains:   16 prompts x 8 samples per step, 200 steps, 128K-token prompts + 32K-token responses, lr 2e-6 constant,
#           eps 0.2/0.28, IcePop [0.5, 2] (slime's icepop_function), no KL; reward = LLM-judge outcome +
#           positive-only entity rubric (eta 0.3, normalised over each GRPO group: slime's --group-rm) from
#           reward/slime_rm.py; evaluation outcome-only (eta 0) through reward.slime_rm.longtrace_eval_rollout.
# Hardware: 4 nodes x 8 GPUs of 80 GB, colocated; TP4 x PP2 x CP4 + SP; SGLang engines of TP 8.
# Needs:    slime's docker image (or slime + Megatron-LM + SGLang installed) on every node, this checkout on a path
#           every node sees, `pip install -r recipes/slime/requirements.txt` there, and a running Ray cluster
#           (bash scripts/ray_cluster.sh start hostfile). Checkpoints: the HF weights plus a Megatron torch_dist copy
#           for --ref-load: `longtrace convert hf-to-mcore` or slime's tools/convert_hf_to_torch_dist.py (docs/slime.md).
# Run (head node):
#           HF_CHECKPOINT=/shared/Qwen3-4B-Thinking-2507 REF_LOAD=/shared/Qwen3-4B-Thinking-2507_torch_dist \
#           PROMPT_DATA=/shared/data/longtracerl EVAL_DATA=/shared/data/aa_lcr.jsonl \
#           JUDGE_BASE_URL=http://judge:30000/v1 JUDGE_API_KEY=... RUN_DIR=/shared/runs/qwen3-4b-slime \
#           bash recipes/slime/longtracerl-qwen3-4b-thinking.sh
#           Resume: the same command (slime loads --load when it holds a checkpoint, else --ref-load). Every value
#           is an environment variable (recipes/slime/common.sh: slime_longtracerl_args).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/recipes/slime/common.sh"

NUM_NODES="${NUM_NODES:-4}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
RUN_NAME="${RUN_NAME:-longtracerl-qwen3-4b-thinking-slime}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/$RUN_NAME}"

# ---------------------------------------------------------------- model: slime's Qwen3-4B flags, RoPE base 5e6
HF_CHECKPOINT="${HF_CHECKPOINT:-$ROOT/models/Qwen3-4B-Thinking-2507}"
REF_LOAD="${REF_LOAD:-${HF_CHECKPOINT}_torch_dist}"
lt_require_path HF_CHECKPOINT "$HF_CHECKPOINT"
lt_require_path REF_LOAD "$REF_LOAD"
slime_model_args qwen3-4B.sh "$HF_CHECKPOINT" 5000000

# ---------------------------------------------------------------- parallelism and memory
PERF_ARGS=(
    --actor-num-nodes "$NUM_NODES" --actor-num-gpus-per-node "$GPUS_PER_NODE" --colocate
    --tensor-model-parallel-size "${TP:-4}" --sequence-parallel
    --pipeline-model-parallel-size "${PP:-2}" --context-parallel-size "${CP:-4}"
    --recompute-granularity full --recompute-method uniform --recompute-num-layers 1
    --use-dynamic-batch-size --max-tokens-per-gpu "${MAX_TOKENS_PER_GPU:-8192}"
    --log-probs-chunk-size "${LOG_PROBS_CHUNK_SIZE:-4096}"
)

slime_longtracerl_args
lt_mkdir "$RUN_DIR"
slime_write_reward_config "$REWARD_CONFIG" "${REWARD_URL:-}" "${REWARD_FLAGS[@]}"
slime_submit "${MODEL_ARGS[@]}" "${CKPT_ARGS[@]}" "${ROLLOUT_ARGS[@]}" "${EVAL_ARGS[@]}" "${PERF_ARGS[@]}" \
    "${GRPO_ARGS[@]}" "${OPTIMIZER_ARGS[@]}" "${REWARD_ARGS[@]}" "${WANDB_ARGS[@]}" "${SGLANG_ARGS[@]}" "${MISC_ARGS[@]}"
