# Shared launch helpers for recipes/*.sh (sourced, not run). A recipe builds its flag arrays, then calls
# `lt_launch "${MODEL_ARGS[@]}" ...` once. Nothing here adds `longtrace train` flags except `--ray-address auto`
# inside a Ray job.
#
# Environment (all optional):
#   NUM_NODES          nodes of the run; > 1 means: submit to a running Ray cluster with `ray job submit`
#   GPUS_PER_NODE      GPUs per node (8)
#   RAY_JOB_ADDRESS    the Ray dashboard to submit to (http://127.0.0.1:8265: run the recipe on the head node)
#   RAY_SUBMIT=1       submit through Ray even on one node (a cluster started by scripts/ray_cluster.sh)
#   NET_IFNAME         network interface for NCCL/Gloo (sets NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME)
#   PYTHON             the interpreter (python3; the docker image has everything installed there)
#   LT_DRY_RUN=1       print the command (NUL-separated argv on stdout) instead of running it (tests use this)
#   LT_FORWARD_ENV     extra environment variable names to forward into the Ray job (space-separated)

lt_log() { printf '[recipe] %s\n' "$*" >&2; }
lt_die() { printf '[recipe] error: %s\n' "$*" >&2; exit 1; }

# Fail early, with the variable's name, when a required path is missing (skipped in dry runs).
lt_require_path() {
    local name="$1" value="${2:-}"
    [[ -n "$value" ]] || lt_die "set $name"
    [[ "${LT_DRY_RUN:-0}" == 1 || -e "$value" ]] || lt_die "$name=$value does not exist"
}

# The run's checkpoint directory holds a finished checkpoint: resume from it.
lt_latest_checkpoint() {
    local dir="$1"
    [[ -n "$dir" && -f "$dir/latest_checkpointed_iteration.txt" ]] && printf '%s' "$dir"
    return 0
}

# JSON runtime environment for `ray job submit`: fixed settings plus every variable below that is set here.
# Secrets named here (WANDB_API_KEY, the judge's key) travel in the job's runtime environment, which Ray shows in
# its dashboard and job API: prefer a reward server (REWARD_URL) and `wandb login` on shared home directories
# when that matters.
lt_runtime_env_json() {
    local names="NCCL_SOCKET_IFNAME GLOO_SOCKET_IFNAME NCCL_IB_HCA NCCL_IB_GID_INDEX NCCL_DEBUG NCCL_NVLS_ENABLE \
NCCL_CUMEM_ENABLE NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME TP_SOCKET_IFNAME HF_HOME HF_HUB_OFFLINE TRANSFORMERS_OFFLINE \
WANDB_MODE WANDB_API_KEY WANDB_BASE_URL WANDB_ENTITY TOKENIZERS_PARALLELISM PYTHONPATH ${LT_FORWARD_ENV:-}"
    LT_ENV_NAMES="$names" "${PYTHON:-python3}" - <<'PY'
import json, os
env = {"CUDA_DEVICE_MAX_CONNECTIONS": "1", "PYTHONUNBUFFERED": "1"}
for name in os.environ["LT_ENV_NAMES"].split():
    if name in os.environ:
        env[name] = os.environ[name]
print(json.dumps({"env_vars": env}))
PY
}

lt_print_argv() { printf '%s\0' "$@"; }

lt_mkdir() { [[ "${LT_DRY_RUN:-0}" == 1 ]] || mkdir -p "$@"; }

# Run `python -m slime_ext.train ARGS...`: directly on one node, or as a Ray job on a running cluster.
lt_launch() {
    local python="${PYTHON:-python3}"
    if [[ -n "${NET_IFNAME:-}" ]]; then
        export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-$NET_IFNAME}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-$NET_IFNAME}"
    fi
    export CUDA_DEVICE_MAX_CONNECTIONS=1 PYTHONUNBUFFERED=1
    if [[ "${NUM_NODES:-1}" -gt 1 || "${RAY_SUBMIT:-0}" == 1 ]]; then
        local address="${RAY_JOB_ADDRESS:-http://127.0.0.1:8265}" runtime_env
        runtime_env="$(lt_runtime_env_json)"
        local cmd=(ray job submit --address "$address" --runtime-env-json "$runtime_env"
                   -- "$python" -m slime_ext.train --ray-address auto "$@")
        if [[ "${LT_DRY_RUN:-0}" == 1 ]]; then lt_print_argv "${cmd[@]}"; return 0; fi
        command -v ray >/dev/null || lt_die "the ray CLI is not on PATH (use the docker image, or pip install 'ray[default]')"
        lt_log "submitting to the Ray cluster at $address (${NUM_NODES:-1} nodes expected; scripts/ray_cluster.sh status)"
        "${cmd[@]}"
    else
        local cmd=("$python" -m slime_ext.train "$@")
        if [[ "${LT_DRY_RUN:-0}" == 1 ]]; then lt_print_argv "${cmd[@]}"; return 0; fi
        lt_log "running on this node: ${cmd[*]:0:3} ..."
        "${cmd[@]}"
    fi
}

# On the head node: the running Ray cluster must offer at least $1 GPUs (skipped in dry runs and on one node).
lt_check_ray_gpus() {
    local want="$1"
    [[ "${LT_DRY_RUN:-0}" == 1 ]] && return 0
    [[ "${NUM_NODES:-1}" -gt 1 || "${RAY_SUBMIT:-0}" == 1 ]] || return 0
    local have
    if ! have="$("${PYTHON:-python3}" -c "import ray; ray.init(address='auto', logging_level='ERROR'); print(int(ray.cluster_resources().get('GPU', 0)))" 2>/dev/null)"; then
        lt_log "warning: could not query the Ray cluster from this node (is this the head? scripts/ray_cluster.sh status)"
        return 0
    fi
    [[ "$have" -ge "$want" ]] || lt_die "the Ray cluster has $have GPUs, this recipe needs $want (workers not joined yet?)"
    lt_log "Ray cluster: $have GPUs"
}
