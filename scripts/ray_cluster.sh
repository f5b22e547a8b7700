#!/usr/bin/env bash
# Start, stop or inspect a Ray cluster over ssh from a hostfile: the head on the first host, workers on the rest.
#
#   bash scripts/ray_cluster.sh start  [HOSTFILE]   # head first, then the workers; waits until all have joined
#   bash scripts/ray_cluster.sh status [HOSTFILE]   # nodes and GPUs the head sees
#   bash scripts/ray_cluster.sh stop   [HOSTFILE]   # workers first, then the head
#
# HOSTFILE (default ./hostfile, or $HOSTFILE): one host per line, first = head; `#` comments and MPI-style
# suffixes (`node1 slots=8`) are ignored. Run it from a machine that can ssh to every host without a password
# (typically the head itself); a host that is this machine (localhost, its hostname or one of its addresses)
# is run locally. Then launch a recipe on the head node: NUM_NODES=<hosts> bash recipes/<recipe>.sh
#
# Environment:
#   GPUS_PER_NODE   GPUs Ray offers per node (default 8)
#   RAY_PORT        GCS port of the head (6379)      DASHBOARD_PORT  job API / dashboard port (8265)
#   DASHBOARD_HOST  the dashboard's bind address (127.0.0.1: submit jobs from the head; 0.0.0.0 opens it, and
#                   with it job submission, to the network)
#   HEAD_IP         address workers use to reach the head (default: the head's address on NET_IFNAME, else
#                   its first address from `hostname -I`)
#   NET_IFNAME      interface for NCCL/Gloo traffic; exported as NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME into
#                   the Ray processes, so every actor inherits it
#   REMOTE_PREFIX   command run before `ray` on each host, e.g. "source /shared/venv/bin/activate &&" or
#                   "docker exec longtrace" (a container started with --network host on every node)
#   RAY_START_ARGS  extra flags for every `ray start` (e.g. "--temp-dir /local/ray")
#   SSH             ssh command (default: ssh -o BatchMode=yes -o ConnectTimeout=10)
#   JOIN_TIMEOUT    seconds to wait for all nodes after start (300)
#   RAY_STOP_ARGS   flags for `ray stop` (e.g. --force when a graceful stop hangs)
#   DRY_RUN=1       print what would run on each host instead of running it
set -euo pipefail

ACTION="${1:-}"
HOSTFILE="${2:-${HOSTFILE:-hostfile}}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
RAY_PORT="${RAY_PORT:-6379}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
DASHBOARD_HOST="${DASHBOARD_HOST:-127.0.0.1}"
REMOTE_PREFIX="${REMOTE_PREFIX:-}"
RAY_START_ARGS="${RAY_START_ARGS:-}"
JOIN_TIMEOUT="${JOIN_TIMEOUT:-300}"
RAY_STOP_ARGS="${RAY_STOP_ARGS:-}"
read -r -a SSH_CMD <<< "${SSH:-ssh -o BatchMode=yes -o ConnectTimeout=10}"

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf '[ray_cluster] %s\n' "$*" >&2; }
die() { printf '[ray_cluster] error: %s\n' "$*" >&2; exit 1; }

[[ "$ACTION" =~ ^(start|stop|status)$ ]] || usage
[[ -f "$HOSTFILE" ]] || die "no hostfile at $HOSTFILE (one host per line, the head first)"
mapfile -t HOSTS < <(sed -e 's/#.*//' -e 's/[[:space:]].*//' "$HOSTFILE" | grep -v '^$' || true)
[[ ${#HOSTS[@]} -ge 1 ]] || die "$HOSTFILE lists no hosts"
HEAD="${HOSTS[0]}"
WORKERS=("${HOSTS[@]:1}")

is_local() {
    local h="$1"
    [[ "$h" == localhost || "$h" == 127.0.0.1 || "$h" == "$(hostname)" || "$h" == "$(hostname -f 2>/dev/null)" ]] && return 0
    hostname -I 2>/dev/null | tr ' ' '\n' | grep -qx -- "$h"
}

# Run a command line on a host (locally when it is this machine), or print it with DRY_RUN=1.
on_host() {
    local host="$1" cmd="$2"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%s: %s\n' "$host" "$cmd"; return 0; fi
    if is_local "$host"; then bash -c "$cmd"; else "${SSH_CMD[@]}" "$host" "bash -c $(printf '%q' "$cmd")"; fi
}

# `ray` behind REMOTE_PREFIX, with the environment every Ray process (and so every actor) starts with.
ray_cmd() {
    local env="CUDA_DEVICE_MAX_CONNECTIONS=1"
    [[ -n "${NET_IFNAME:-}" ]] && env+=" NCCL_SOCKET_IFNAME=$NET_IFNAME GLOO_SOCKET_IFNAME=$NET_IFNAME"
    printf '%s%senv %s ray' "$REMOTE_PREFIX" "${REMOTE_PREFIX:+ }" "$env"
}

# The address of a host as the cluster should use it (on NET_IFNAME when given).
node_ip() {
    local host="$1"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%s' "$host"; return 0; fi
    local probe="hostname -I | awk '{print \$1}'"
    [[ -n "${NET_IFNAME:-}" ]] && probe="ip -4 -o addr show dev $NET_IFNAME | awk '{print \$4}' | cut -d/ -f1 | head -1"
    on_host "$host" "$probe"
}

head_ip() { if [[ -n "${HEAD_IP:-}" ]]; then printf '%s' "$HEAD_IP"; else node_ip "$HEAD"; fi; }

start() {
    local hip; hip="$(head_ip)"
    [[ -n "$hip" ]] || die "could not find the head's address (set HEAD_IP)"
    log "head $HEAD ($hip:$RAY_PORT), ${#WORKERS[@]} worker(s), $GPUS_PER_NODE GPUs each"
    on_host "$HEAD" "$(ray_cmd) start --head --node-ip-address=$hip --port=$RAY_PORT \
--dashboard-host=$DASHBOARD_HOST --dashboard-port=$DASHBOARD_PORT --num-gpus=$GPUS_PER_NODE --disable-usage-stats${RAY_START_ARGS:+ $RAY_START_ARGS}"
    local pids=() w
    for w in "${WORKERS[@]}"; do
        local wip; wip="$(node_ip "$w")"
        on_host "$w" "$(ray_cmd) start --address=$hip:$RAY_PORT --node-ip-address=$wip \
--num-gpus=$GPUS_PER_NODE --disable-usage-stats${RAY_START_ARGS:+ $RAY_START_ARGS}" &
        pids+=($!)
    done
    local failed=0 p
    for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
    [[ $failed -eq 0 ]] || die "$failed worker(s) failed to start (see above)"
    wait_for_nodes "$hip" "${#HOSTS[@]}"
}

# Poll the head until it sees `want` alive nodes.
wait_for_nodes() {
    local hip="$1" want="$2"
    [[ "${DRY_RUN:-0}" == 1 ]] && return 0
    local deadline=$((SECONDS + JOIN_TIMEOUT)) have=0
    while (( SECONDS < deadline )); do
        have="$(alive_nodes "$hip" || echo 0)"
        if [[ "$have" -ge "$want" ]]; then log "all $want node(s) joined"; status; return 0; fi
        sleep 5
    done
    die "only $have of $want nodes joined within ${JOIN_TIMEOUT}s (firewall? RAY_PORT, HEAD_IP, NET_IFNAME)"
}

alive_nodes() {
    on_host "$HEAD" "$(ray_cmd) status --address=$1:$RAY_PORT 2>/dev/null | awk '/^Active:/{a=1; next} /^(Pending|Recent failures):/{a=0} a && /node_/{n++} END{print n+0}'"
}

status() {
    local hip; hip="$(head_ip)"
    on_host "$HEAD" "$(ray_cmd) status --address=$hip:$RAY_PORT"
}

stop() {
    local w pids=()
    for w in "${WORKERS[@]}"; do on_host "$w" "$(ray_cmd) stop${RAY_STOP_ARGS:+ $RAY_STOP_ARGS}" & pids+=($!); done
    local p; for p in "${pids[@]}"; do wait "$p" || log "a worker's ray stop failed"; done
    on_host "$HEAD" "$(ray_cmd) stop${RAY_STOP_ARGS:+ $RAY_STOP_ARGS}"
}

"$ACTION"
