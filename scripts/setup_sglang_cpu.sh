#!/usr/bin/env bash
# Create the SGLang CPU engine environment: a separate venv that runs the real sglang 0.5.23 server on a CPU.
#
#   bash scripts/setup_sglang_cpu.sh [--prefix DIR] [--kernel-wheel PATH | --kernel-src DIR] [--if-available]
#
# Builds PREFIX/venv (PREFIX: --prefix, else LONGTRACE_SGLANG_PREFIX, else <repo>/.sglang-cpu) with CPU torch, sglang 0.5.23
# (installed --no-deps) and the deps its server imports, every package pinned by constraints/sglang-cpu.txt; patches
# torchvision's two unguarded fake-op registrations; installs the sgl_kernel CPU extension; then checks that the env
# matches the lock, that no nvidia-*/cuda-* wheel got in and that the server imports. The engine interpreter is
# PREFIX/venv/bin/python (scripts/test.sh hands it to the tests as LONGTRACE_SGLANG_PYTHON); run it as
#   SGLANG_USE_CPU_ENGINE=1 PREFIX/venv/bin/python -m sglang.launch_server --device cpu --attention-backend torch_native \
#       --sampling-backend pytorch --cuda-graph-backend-decode disabled --cuda-graph-backend-prefill disabled ...
#
# sgl_kernel (PyPI has no CPU build of it), one of:
#   --kernel-wheel PATH   a sglang_kernel_cpu wheel (env LONGTRACE_SGL_KERNEL_WHEEL)
#   --kernel-src DIR      an sgl-kernel source folder, compiled here (env LONGTRACE_SGL_KERNEL_SRC; cmake, ninja, g++, libnuma-dev)
#   default               the prebuilt wheel in <repo>/../shared/sglang_cpu/ (or <repo>/shared/sglang_cpu/)
# Needs Python 3.11 (LONGTRACE_SGLANG_BASE_PYTHON, default python3.11; the prebuilt wheel is cp311), an x86-64 CPU with
# AVX-512, PyPI, and libnuma1 (apt-get installs it when missing and we are root).
# --if-available: when the kernel, Python 3.11 or AVX-512 is missing, say so in one line and exit 0 (exit 1 without it).
# A failed build step always exits 1, naming the step and showing the end of the build log PREFIX/setup.log.
# Idempotent: a stamp in PREFIX (hash of this script, the lock file and the kernel) skips pip when nothing changed.
# Background and the recipe this follows: shared/sglang_cpu/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/setup_sglang_cpu.sh"
LOCK="$ROOT/constraints/sglang-cpu.txt"
SGLANG_VERSION=0.5.23
TORCH_PIN=torch==2.13.0+cpu
# What the server imports beyond sglang itself; versions come from the lock file.
DEPS=(aiohttp fastapi uvicorn uvloop orjson pyzmq psutil pydantic numpy requests tqdm transformers tokenizers msgspec
      pybase64 python-multipart setproctitle prometheus-client packaging regex einops interegular partial-json-parser
      pillow scipy xxhash zstandard distro openai tiktoken sentencepiece llguidance xgrammar compressed-tensors gguf
      blobfile watchfiles python-dateutil easydict openai-harmony nvidia-ml-py ipython dill jsonschema soundfile
      torchvision)

usage() { sed -n '4p' "$SELF" | sed 's/^#  */usage: /'; }
PREFIX="${LONGTRACE_SGLANG_PREFIX:-$ROOT/.sglang-cpu}"
IF_AVAILABLE=0
ARG_WHEEL="" ARG_SRC=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix|--kernel-wheel|--kernel-src)
            [ $# -ge 2 ] && [ -n "$2" ] || { echo "[sglang-cpu] $1 needs a value" >&2; usage >&2; exit 2; }
            case "$1" in --prefix) PREFIX="$2" ;; --kernel-wheel) ARG_WHEEL="$2" ;; --kernel-src) ARG_SRC="$2" ;; esac
            shift 2 ;;
        --if-available) IF_AVAILABLE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "[sglang-cpu] unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
# The command line wins over the environment; within one of them, a wheel and a source folder exclude each other.
if [ -n "$ARG_WHEEL$ARG_SRC" ]; then
    KERNEL_WHEEL="$ARG_WHEEL" KERNEL_SRC="$ARG_SRC" FROM="--kernel-wheel and --kernel-src"
else
    KERNEL_WHEEL="${LONGTRACE_SGL_KERNEL_WHEEL:-}" KERNEL_SRC="${LONGTRACE_SGL_KERNEL_SRC:-}"
    FROM="LONGTRACE_SGL_KERNEL_WHEEL and LONGTRACE_SGL_KERNEL_SRC"
fi
if [ -n "$KERNEL_WHEEL" ] && [ -n "$KERNEL_SRC" ]; then
    echo "[sglang-cpu] $FROM exclude each other; give one" >&2; exit 2
fi
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
VPY="$PREFIX/venv/bin/python"
STAMP="$PREFIX/.longtrace-sglang-stamp"
LOG="$PREFIX/setup.log"

# Something this machine lacks: one line, then exit 0 with --if-available (the tests that need it skip), else 1.
not_set_up() {
    local msg="[sglang-cpu] not set up: $1; tests that need real SGLang will skip"
    if [ "$IF_AVAILABLE" = 1 ]; then echo "$msg"; exit 0; fi
    echo "$msg" >&2; exit 1
}

# --- what is available: kernel, CPU (cheap checks; Python 3.11 is checked only when a build is needed) -------------
if [ -n "$KERNEL_SRC" ]; then
    [ -d "$KERNEL_SRC" ] || not_set_up "sgl-kernel source folder $KERNEL_SRC not found"
    [ -f "$KERNEL_SRC/pyproject_cpu.toml" ] || not_set_up "$KERNEL_SRC has no pyproject_cpu.toml (not an sgl-kernel source folder)"
    KERNEL_SRC="$(cd "$KERNEL_SRC" && pwd)"
elif [ -n "$KERNEL_WHEEL" ]; then
    [ -f "$KERNEL_WHEEL" ] || not_set_up "sgl_kernel CPU wheel $KERNEL_WHEEL not found"
else
    shopt -s nullglob
    for dir in "$ROOT/../shared/sglang_cpu" "$ROOT/shared/sglang_cpu"; do
        found=("$dir"/sglang_kernel_cpu-*.whl)
        if [ ${#found[@]} -gt 0 ]; then
            KERNEL_WHEEL="$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)"
            break
        fi
    done
    shopt -u nullglob
    [ -n "$KERNEL_WHEEL" ] || not_set_up "no sgl_kernel CPU wheel (no sglang_kernel_cpu-*.whl in ../shared/sglang_cpu/; pass --kernel-wheel or --kernel-src)"
fi
[ -z "$KERNEL_WHEEL" ] || KERNEL_WHEEL="$(cd "$(dirname "$KERNEL_WHEEL")" && pwd)/$(basename "$KERNEL_WHEEL")"
grep -qw avx512f /proc/cpuinfo 2>/dev/null \
    || not_set_up "the CPU lacks AVX-512 (no avx512f in /proc/cpuinfo; the sgl_kernel CPU build needs it)"

# --- stamp: skip everything when the script, the lock and the kernel are unchanged and the env is intact ------------
kernel_identity() {
    if [ -n "$KERNEL_SRC" ]; then   # every source file's path, size and mtime
        echo "source $KERNEL_SRC"
        (cd "$KERNEL_SRC" && find . \( -name .git -o -name build \) -prune -o -type f -printf '%P %s %T@\n' | LC_ALL=C sort)
    else
        echo "wheel $(basename "$KERNEL_WHEEL") $(sha256sum < "$KERNEL_WHEEL" | cut -d' ' -f1)"
    fi
}
WANT="$( { cat "$SELF" "$LOCK"; kernel_identity; } | sha256sum | cut -d' ' -f1)"
# Quick check (no torch import, ~50 ms): the interpreter runs and the pinned sglang, CPU torch and sgl_kernel are there.
# (python -P everywhere: the current folder, e.g. the repo with its egg-info, must not be on sys.path.)
env_intact() {
    [ -x "$VPY" ] && "$VPY" -P - "$SGLANG_VERSION" "$TORCH_PIN" >/dev/null 2>&1 <<'PY'
import importlib.metadata as md, importlib.util as u, sys
assert md.version("sglang") == sys.argv[1] and md.version("torch") == sys.argv[2].split("==")[1]
md.version("sglang-kernel-cpu")
assert all(u.find_spec(m) for m in ("torch", "torchvision", "sglang", "sgl_kernel"))
PY
}
stamp_ok() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && env_intact; }
if stamp_ok; then exit 0; fi

BASE_PY="${LONGTRACE_SGLANG_BASE_PYTHON:-python3.11}"
"$BASE_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1 \
    || not_set_up "no Python 3.11 ($BASE_PY; the prebuilt sgl_kernel wheel is cp311)"

mkdir -p "$PREFIX"
if command -v flock >/dev/null; then   # one build per prefix at a time; a second caller waits, then finds the stamp
    exec 9>"$PREFIX/.setup.lock"
    flock 9
    if stamp_ok; then exit 0; fi
fi

# --- build -------------------------------------------------------------------------------------------------------
rm -f "$STAMP"
: > "$LOG"
start=$SECONDS
echo "[sglang-cpu] setting up sglang $SGLANG_VERSION (CPU) in $PREFIX/venv; log: $LOG"
fail() {
    echo "[sglang-cpu] FAILED at step '$1' ($2); last lines of $LOG:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 1
}
# run_step "step" cmd...: the command's output goes to the log; a failure names the step and exits.
run_step() {
    local what="$1" rc; shift
    echo "=== [$what] $*" >> "$LOG"
    set +e
    "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >> "$LOG"   # noise from local index mirrors
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || fail "$what" "exit $rc"
}
PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
INSTALL=("${PIP[@]}" install --progress-bar off --only-binary :all: -c "$LOCK")

echo "[sglang-cpu] 1/6 virtual environment ($("$BASE_PY" --version 2>&1))"
if [ ! -x "$VPY" ] || ! "$VPY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
    run_step "create venv" "$BASE_PY" -m venv --clear "$PREFIX/venv"
fi
run_step "pin pip and setuptools" "${INSTALL[@]}" pip setuptools

echo "[sglang-cpu] 2/6 CPU torch and the server's dependencies (pinned by constraints/sglang-cpu.txt)"
run_step "install dependencies" "${INSTALL[@]}" "$TORCH_PIN" "${DEPS[@]}"

echo "[sglang-cpu] 3/6 sglang $SGLANG_VERSION (--no-deps: its own dependency list is CUDA-heavy)"
run_step "install sglang" "${INSTALL[@]}" --no-deps "sglang==$SGLANG_VERSION"

# PyPI's torchvision is linked against CUDA torch, so its C ops cannot load on CPU torch; its python parts work, except
# two unguarded fake-op registrations (torchvision::nms / qnms) that crash the import. Guard them; idempotent.
echo "[sglang-cpu] 4/6 torchvision: guard the fake-op registrations of its (CUDA-only) C ops"
TV_META="$("$VPY" -c 'import importlib.util as u; print(u.find_spec("torchvision").submodule_search_locations[0])' 2>>"$LOG")/_meta_registrations.py" \
    || fail "patch torchvision" "torchvision not found"
run_step "patch torchvision" sed -i -E \
    's/^@torch\.library\.register_fake\(("torchvision::[a-z_]+")\)$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda f: f))/' \
    "$TV_META"
! grep -qE '^@torch\.library\.register_fake\("torchvision::' "$TV_META" \
    || fail "patch torchvision" "$TV_META still has unguarded registrations"

echo "[sglang-cpu] 5/6 sgl_kernel CPU extension from ${KERNEL_WHEEL:-source $KERNEL_SRC}"
as_root_apt() {   # as_root_apt PKG...: install Debian packages when we may, else fail naming them
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        run_step "apt-get update" apt-get update -qq
        run_step "apt-get install $*" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    else
        fail "system packages" "missing $*; install them (apt-get install $*)"
    fi
}
ldconfig -p 2>/dev/null | grep -q 'libnuma\.so\.1 ' || dpkg -s libnuma1 >/dev/null 2>&1 || as_root_apt libnuma1
if [ -n "$KERNEL_SRC" ]; then
    { dpkg -s libnuma-dev >/dev/null 2>&1 && command -v cmake && command -v ninja && command -v g++; } >/dev/null 2>&1 \
        || as_root_apt libnuma-dev cmake ninja-build build-essential
    run_step "install kernel build tools" "${INSTALL[@]}" scikit-build-core wheel
    BUILD="$PREFIX/kernel-src"
    rm -rf "$BUILD" "$PREFIX/wheels"
    mkdir -p "$BUILD"
    cp -r "$KERNEL_SRC"/. "$BUILD"/
    cp "$BUILD/pyproject_cpu.toml" "$BUILD/pyproject.toml"
    sed -i -E 's/"torch==[0-9.]+"/"torch"/' "$BUILD/pyproject.toml"   # build against the installed CPU torch
    kernel_start=$SECONDS
    echo "[sglang-cpu]     compiling sgl-kernel (several minutes on 2 cores)"
    run_step "build sgl_kernel" env -C "$BUILD" CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-$(nproc)}" VIRTUAL_ENV="$PREFIX/venv" \
        nice -n 19 "${PIP[@]}" wheel --no-build-isolation --no-deps . -w "$PREFIX/wheels" -Cbuild-dir="$PREFIX/kernel-build"
    echo "[sglang-cpu]     compiled in $((SECONDS - kernel_start)) s"
    shopt -s nullglob
    built=("$PREFIX"/wheels/sglang_kernel_cpu-*.whl)
    shopt -u nullglob
    [ ${#built[@]} -eq 1 ] || fail "build sgl_kernel" "expected one sglang_kernel_cpu wheel in $PREFIX/wheels, found ${#built[@]}"
    WHEEL_TO_INSTALL="${built[0]}"
else
    WHEEL_TO_INSTALL="$KERNEL_WHEEL"
fi
run_step "install sgl_kernel" "${PIP[@]}" install --progress-bar off --no-deps --force-reinstall "$WHEEL_TO_INSTALL"

echo "[sglang-cpu] 6/6 checks: env matches the lock, no CUDA wheels, the server imports"
run_step "check against the lock and for CUDA wheels" "$VPY" -P - "$LOCK" <<'PY'
import importlib.metadata as md, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        pins[norm(name)] = version.strip()
installed = {norm(d.metadata["Name"]): d.version for d in md.distributions()}
cuda = sorted(n for n in installed if (n.startswith("nvidia-") and n != "nvidia-ml-py") or n.startswith("cuda-"))
if cuda:
    sys.exit(f"CUDA wheels got in: {', '.join(cuda)}")
off = sorted(f"{n}=={v} (lock: {pins.get(n, 'not pinned')})" for n, v in installed.items()
             if n != "sglang-kernel-cpu" and pins.get(n) != v)
if off:
    sys.exit("the env differs from constraints/sglang-cpu.txt (pin them there, or delete the prefix to rebuild "
             "from scratch): " + "; ".join(off))
print(f"{len(installed)} packages, all as pinned; no CUDA wheels")
PY
run_step "import check" env SGLANG_USE_CPU_ENGINE=1 "$VPY" -P - <<'PY'
import torch, torchvision, sgl_kernel  # noqa: F401
assert torch.__version__.endswith("+cpu"), f"torch {torch.__version__} is not a CPU build"
assert hasattr(torch.ops.sgl_kernel, "copy_all_layer_kv_cache_cpu"), "sgl_kernel has no copy_all_layer_kv_cache_cpu op"
from sglang.srt.utils import cpu_has_amx_support, is_cpu
import sglang.srt.entrypoints.http_server, sglang.srt.models.qwen3  # noqa: F401
import sglang
assert is_cpu(), "sglang does not select its CPU platform with SGLANG_USE_CPU_ENGINE=1"
print(f"IMPORT-OK sglang {sglang.__version__}, torch {torch.__version__}, sgl_kernel {sgl_kernel.__version__}, "
      f"AMX {cpu_has_amx_support()}")
PY
echo "[sglang-cpu]     $(grep '^IMPORT-OK' "$LOG" | tail -n 1 | cut -d' ' -f2-)"

echo "$WANT" > "$STAMP"
echo "[sglang-cpu] done in $((SECONDS - start)) s; engine interpreter: $VPY"
