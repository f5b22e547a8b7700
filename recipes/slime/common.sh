# Shared helpers for recipes/slime/*.sh (sourced, not run): LongTraceRL as an unmodified slime run (THUDM/slime,
# written against 624b824). A recipe builds slime flag arrays, then calls `slime_submit "${ARGS[@]}"` once; every
# flag it passes is one slime's train.py parses (tests/test_slime_recipes.py checks them against slime's parser,
# tests/fixtures/slime_flags.json). LongTrace-RL's part is the reward (reward/slime_rm.py), configured through the
# YAML slime reads with --custom-config-path, and the data and checkpoints it writes.
#
# Environment (all optional):
#   SLIME_DIR         slime checkout with train.py (/root/slime, where slime's docker image has it)
#   MEGATRON_DIR      Megatron-LM checkout slime runs with (/root/Megatron-LM, slime's image)
#   RAY_JOB_ADDRESS   the Ray dashboard to submit to (http://127.0.0.1:8265: run the recipe on the head node)
#   PYTHON            the interpreter of slime's environment (python3)
#   NET_IFNAME        network interface for NCCL/Gloo (sets NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME)
#   LT_DRY_RUN=1      print the command (NUL-separated argv on stdout) instead of submitting it (tests use this);
#                     LT_DRY_RUN_FILES=1 also writes the reward config the command names
#   LT_FORWARD_ENV    extra environment variable names to forward into the Ray job (space-separated)

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
source "$ROOT/recipes/common.sh"  # lt_log, lt_die, lt_require_path, lt_runtime_env_json, lt_print_argv, lt_mkdir

SLIME_DIR="${SLIME_DIR:-/root/slime}"
MEGATRON_DIR="${MEGATRON_DIR:-/root/Megatron-LM}"

# slime's Dataset reads one .jsonl or .parquet file ("Unsupported file format" otherwise): a `longtrace data
# export` folder gives its data/<split>.jsonl (JSONL keeps the nested metadata exactly as written).
slime_data_file() {
    local path="$1" split="$2"
    if [[ -d "$path" ]]; then
        [[ -f "$path/data/$split.jsonl" ]] || lt_die "$path: no data/$split.jsonl (a \`longtrace data export\` folder?)"
        printf '%s' "$path/data/$split.jsonl"
    elif [[ "$path" == *.jsonl || "$path" == *.parquet ]]; then
        [[ "${LT_DRY_RUN:-0}" == 1 || -f "$path" ]] || lt_die "$path does not exist"
        printf '%s' "$path"
    elif [[ "${LT_DRY_RUN:-0}" == 1 ]]; then
        printf '%s' "$path/data/$split.jsonl"  # taken for an export folder that is not here
    else
        lt_die "$path: slime reads .jsonl or .parquet files; or give a \`longtrace data export\` folder"
    fi
}

# A top-level field of $1/config.json, printed as JSON (integers without ".0"; empty when missing or null).
slime_hf_config_field() {
    [[ -f "$1/config.json" ]] || return 0
    "${PYTHON:-python3}" -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else (int(v) if isinstance(v, float) and v.is_integer() else json.dumps(v)))' "$1/config.json" "$2"
}

# slime's model flags (MODEL_ARGS) from its scripts/models/$1, with the RoPE base of the HF checkpoint $2: slime
# checks rope_theta against --rotary-base, and the 2507 Qwen3 releases changed it (5e6 for the 4B, 1e7 for the 30B)
# from the scripts' 1e6. $3: the base when the HF config is not there (dry runs).
slime_model_args() {
    local script="$SLIME_DIR/scripts/models/$1" hf="$2" fallback="$3" base
    base="$(slime_hf_config_field "$hf" rope_theta)"
    [[ -n "$base" ]] || base="$fallback"
    if [[ -n "$(slime_hf_config_field "$hf" rope_scaling)" ]]; then
        lt_die "$hf/config.json has rope_scaling (YaRN): slime's Megatron flags cannot express it for this model (docs/slime.md)"
    fi
    if [[ "${LT_DRY_RUN:-0}" == 1 && ! -f "$script" ]]; then
        MODEL_ARGS=(--rotary-base "$base")  # the architecture flags come from slime's script at run time
        return 0
    fi
    [[ -f "$script" ]] || lt_die "$script not found (set SLIME_DIR to a slime checkout)"
    MODEL_ARGS_ROTARY_BASE="$base" source "$script"
}

# The YAML slime reads with --custom-config-path (slime sets each top-level key on its args): our reward flags as
# one string, parsed inside slime by the same parser as `longtrace reward score` (reward/slime_rm.py), and the
# reward server URL if any. $1: the file; $2: a reward server URL or empty; the rest: the reward flags.
slime_write_reward_config() {
    local out="$1" url="$2"
    shift 2
    [[ "${LT_DRY_RUN:-0}" == 1 && "${LT_DRY_RUN_FILES:-0}" != 1 ]] && return 0
    mkdir -p "$(dirname "$out")"
    "${PYTHON:-python3}" - "$out" "$url" "$@" <<'PY'
import json, shlex, sys
out, url, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = ["# written by recipes/slime: LongTrace-RL's reward for slime (reward/slime_rm.py, docs/slime.md)",
         f"longtrace_reward: {json.dumps(shlex.join(flags))}"]  # a JSON string is a YAML string
if url:
    lines.append(f"longtrace_reward_url: {json.dumps(url)}")
open(out, "w").write("\n".join(lines) + "\n")
PY
    lt_log "reward config: $out"
}

# slime's processes import reward.slime_rm from this checkout (PYTHONPATH): fail here, with the fix, if they cannot.
slime_check_reward_import() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -c "import reward.slime_rm" 2>/dev/null && return 0
    lt_die "slime's python cannot import reward.slime_rm from $ROOT: pip install -r $ROOT/recipes/slime/requirements.txt"
}

# `ray job submit ... -- python3 $SLIME_DIR/train.py ARGS...` to the running Ray cluster (scripts/ray_cluster.sh
# start, or `ray start --head` on one node as slime's own scripts do).
slime_submit() {
    local python="${PYTHON:-python3}" address="${RAY_JOB_ADDRESS:-http://127.0.0.1:8265}" runtime_env
    if [[ -n "${NET_IFNAME:-}" ]]; then
        export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-$NET_IFNAME}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-$NET_IFNAME}"
    fi
    # Megatron-LM (as in slime's scripts) and this checkout (reward.slime_rm) on the job's path
    export PYTHONPATH="$MEGATRON_DIR:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    runtime_env="$(lt_runtime_env_json)"
    local cmd=(ray job submit --address "$address" --runtime-env-json "$runtime_env"
               -- "$python" "$SLIME_DIR/train.py" "$@")
    if [[ "${LT_DRY_RUN:-0}" == 1 ]]; then lt_print_argv "${cmd[@]}"; return 0; fi
    [[ -f "$SLIME_DIR/train.py" ]] || lt_die "$SLIME_DIR/train.py not found (set SLIME_DIR to a slime checkout)"
    [[ -d "$MEGATRON_DIR/megatron" ]] || lt_die "$MEGATRON_DIR has no megatron/ (set MEGATRON_DIR to Megatron-LM)"
    command -v ray >/dev/null || lt_die "the ray CLI is not on PATH (slime's image has it)"
    slime_check_reward_import
    lt_log "submitting slime's train.py to the Ray cluster at $address"
    (cd "$SLIME_DIR" && "${cmd[@]}")
}

# The LongTraceRL run's slime flags that do not depend on the model (the paper's settings, each an environment
# variable): sets CKPT_ARGS ROLLOUT_ARGS EVAL_ARGS GRPO_ARGS OPTIMIZER_ARGS REWARD_ARGS WANDB_ARGS SGLANG_ARGS
# MISC_ARGS, and REWARD_FLAGS / REWARD_CONFIG for slime_write_reward_config. Needs HF_CHECKPOINT, REF_LOAD, RUN_DIR,
# RUN_NAME set by the recipe.
slime_longtracerl_args() {
    # ------------------------------------------------------------ checkpoints: --ref-load starts, --load resumes
    SAVE_DIR="${SAVE_DIR:-$RUN_DIR/checkpoints}"
    CKPT_ARGS=(
        --hf-checkpoint "$HF_CHECKPOINT"
        --ref-load "$REF_LOAD"
        --load "$SAVE_DIR" --save "$SAVE_DIR" --save-interval "${SAVE_INTERVAL:-20}"
    )

    # ------------------------------------------------------------ rollout: 16 prompts x 8 samples, 160K context
    local prompt_data
    prompt_data="$(slime_data_file "${PROMPT_DATA:-$ROOT/data/longtracerl}" train)"
    ROLLOUT_ARGS=(
        --prompt-data "$prompt_data"
        --input-key input_messages --label-key label --metadata-key metadata
        --apply-chat-template
        --rollout-shuffle --rollout-seed "${ROLLOUT_SEED:-42}"
        --num-rollout "${NUM_ROLLOUT:-200}"
        --rollout-batch-size "${ROLLOUT_BATCH_SIZE:-16}"
        --n-samples-per-prompt "${N_SAMPLES_PER_PROMPT:-8}"
        --global-batch-size "${GLOBAL_BATCH_SIZE:-128}"
        --rollout-max-response-len "${MAX_RESPONSE_LEN:-32000}"
        --rollout-max-context-len "${MAX_CONTEXT_LEN:-160000}"
        --rollout-temperature "${TEMPERATURE:-1.0}" --rollout-top-p "${TOP_P:-1.0}" --rollout-top-k "${TOP_K:--1}"
        --sglang-router-request-timeout-secs "${ROLLOUT_REQUEST_TIMEOUT:-36000}"
    )

    # ------------------------------------------------------------ evaluation: AA-LCR-style set, avg@4, outcome only
    EVAL_ARGS=()
    if [[ -n "${EVAL_DATA:-}" ]]; then
        local eval_data
        eval_data="$(slime_data_file "$EVAL_DATA" eval)"
        EVAL_ARGS=(
            --eval-interval "${EVAL_INTERVAL:-20}"
            --eval-prompt-data "${EVAL_NAME:-aa-lcr}" "$eval_data"
            --n-samples-per-eval-prompt "${EVAL_SAMPLES:-4}"
            --eval-temperature "${EVAL_TEMPERATURE:-0.6}" --eval-top-p "${EVAL_TOP_P:-0.95}" --eval-top-k "${EVAL_TOP_K:-20}"
            --eval-max-response-len "${EVAL_MAX_RESPONSE_LEN:-32000}"
            # slime's own eval rollout asserts `not args.group_rm`; ours runs slime's generation, scores at eta 0
            --eval-function-path reward.slime_rm.longtrace_eval_rollout
        )
    else
        lt_log "no EVAL_DATA: training without periodic evaluation (the paper evaluates AA-LCR every 20 steps)"
    fi

    # ------------------------------------------------------------ GRPO: clip-higher, IcePop, no KL, no entropy
    GRPO_ARGS=(
        --advantage-estimator grpo
        --eps-clip "${EPS_CLIP:-0.2}" --eps-clip-high "${EPS_CLIP_HIGH:-0.28}"
        --kl-loss-coef 0.0 --entropy-coef 0.0
        --calculate-per-token-loss
        --use-tis --custom-tis-function-path slime.backends.megatron_utils.loss.icepop_function
        --tis-clip-low "${TIS_CLIP_LOW:-0.5}" --tis-clip "${TIS_CLIP_HIGH:-2.0}"
    )
    OPTIMIZER_ARGS=(
        --optimizer adam --lr "${LR:-2e-6}" --lr-decay-style constant
        --weight-decay "${WEIGHT_DECAY:-0.1}" --adam-beta1 "${ADAM_BETA1:-0.9}" --adam-beta2 "${ADAM_BETA2:-0.98}"
        --clip-grad "${CLIP_GRAD:-1.0}"
    )

    # ------------------------------------------------------------ reward: LongTrace-RL's, per GRPO group
    # The judge is any OpenAI-compatible endpoint; its key is read inside the job from the variable named by
    # JUDGE_API_KEY_ENV (forwarded into the job), never written to the config. REWARD_URL: score through a running
    # `longtrace reward serve` instead.
    local key_env="${JUDGE_API_KEY_ENV:-JUDGE_API_KEY}"
    REWARD_FLAGS=(--rubric-combine positive_only --rubric-reward-ratio "${ETA:-0.3}" --normalize-rubric-reward
                  --rubric-source content)
    if [[ -z "${REWARD_URL:-}" ]]; then
        [[ -n "${JUDGE_BASE_URL:-}" || "${LT_DRY_RUN:-0}" == 1 ]] || lt_die "set JUDGE_BASE_URL (OpenAI-compatible judge endpoint) or REWARD_URL"
        REWARD_FLAGS+=(
            --judge llm --judge-base-url "${JUDGE_BASE_URL:-}" --judge-model "${JUDGE_MODEL:-Qwen/Qwen3-235B-A22B-Instruct-2507}"
            --judge-api-key-env "$key_env" --judge-concurrency "${JUDGE_CONCURRENCY:-64}"
            --judge-timeout "${JUDGE_TIMEOUT:-300}" --judge-cache "$RUN_DIR/judge_cache.sqlite"
        )
        LT_FORWARD_ENV="${LT_FORWARD_ENV:-} $key_env"
    fi
    REWARD_CONFIG="$RUN_DIR/longtrace_reward.yaml"
    REWARD_ARGS=(
        --custom-rm-path reward.slime_rm.longtrace_group_rm --group-rm
        --custom-config-path "$REWARD_CONFIG"
    )

    # ------------------------------------------------------------ tracking
    WANDB_ARGS=()
    [[ "${USE_WANDB:-1}" == 1 ]] && WANDB_ARGS+=(--use-wandb --wandb-project "${WANDB_PROJECT:-longtrace-rl}"
                                                --wandb-group "${WANDB_GROUP:-$RUN_NAME}")
    [[ "${USE_TENSORBOARD:-0}" == 1 ]] && WANDB_ARGS+=(--use-tensorboard)

    # ------------------------------------------------------------ SGLang: one TP-8 engine per node
    SGLANG_ARGS=(
        --rollout-num-gpus-per-engine "${ROLLOUT_GPUS_PER_ENGINE:-8}"
        --sglang-mem-fraction-static "${SGLANG_MEM_FRACTION:-0.7}"
        --sglang-context-length "${SGLANG_CONTEXT_LENGTH:-${MAX_CONTEXT_LEN:-160000}}"
    )
    # SGLang's output layer in fp32 (the rollout log-probs feed IcePop); FP32_LM_HEAD=0 drops it
    [[ "${FP32_LM_HEAD:-1}" == 1 ]] && SGLANG_ARGS+=(--sglang-enable-fp32-lm-head)

    MISC_ARGS=(
        --attention-dropout 0.0 --hidden-dropout 0.0
        --accumulate-allreduce-grads-in-fp32 --attention-softmax-in-fp32
        --attention-backend flash
    )
    return 0
}
