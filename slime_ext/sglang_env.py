"""Where SGLang runs from, and what it needs, on GPUs and on CPUs.

On a GPU machine (the docker image) SGLang is installed next to the trainer: engines start with this interpreter.
On a CPU machine SGLang 0.5.23 runs through its CPU backend from an environment of its own (its pins clash with the
trainer's, and production runs it as its own process anyway): ``bash scripts/setup_sglang_cpu.sh`` builds it in
``.sglang-cpu/`` from the sgl_kernel CPU wheel (``../shared/sglang_cpu/``) or an sgl-kernel source folder.
``LONGTRACE_SGLANG_PYTHON`` points at another interpreter. The CPU backend needs ``SGLANG_USE_CPU_ENGINE=1``, an
AVX-512 CPU and the flags in ``cpu_sglang_flags``; ``sglang_unavailable`` says in one line why SGLang cannot run
here, and ``resolve_backend`` falls back to the torch engine with that line when asked for ``auto``.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_HINT = "run `bash scripts/setup_sglang_cpu.sh` (docs/rollout.md) or set LONGTRACE_SGLANG_PYTHON"

# What SGLang's CPU backend needs besides --device cpu (../shared/sglang_cpu/README.md has the error each one avoids):
# torch SDPA attention, the pytorch sampler, no CUDA graphs. --sleep-on-idle: without it the idle scheduler polls
# its sockets in a busy loop and holds a whole core (measured: 98% CPU per idle engine).
CPU_FLAGS = (("--attention-backend", "torch_native"), ("--sampling-backend", "pytorch"),
             ("--cuda-graph-backend-decode", "disabled"), ("--cuda-graph-backend-prefill", "disabled"),
             ("--sleep-on-idle", None))


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sglang_python(device: str = "cpu") -> str | None:
    """The interpreter engines start with: ``$LONGTRACE_SGLANG_PYTHON``; on CPU the set-up script's finished
    environment (``$LONGTRACE_SGLANG_PREFIX`` or ``.sglang-cpu`` in the repository); else this interpreter when it has
    SGLang."""
    if os.environ.get("LONGTRACE_SGLANG_PYTHON"):
        return os.environ["LONGTRACE_SGLANG_PYTHON"]
    if device == "cpu":  # a finished build leaves its stamp (an interrupted one does not)
        prefix = Path(os.environ.get("LONGTRACE_SGLANG_PREFIX") or ROOT / ".sglang-cpu")
        if (prefix / "venv" / "bin" / "python").exists() and (prefix / ".longtrace-sglang-stamp").exists():
            return str(prefix / "venv" / "bin" / "python")
    if importlib.util.find_spec("sglang") is not None:
        return sys.executable
    return None


def cpu_has_avx512() -> bool:
    try:
        return " avx512f " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _importable(python: str) -> str | None:
    """None when ``python`` finds sglang and sgl_kernel, else why not (a quick spec lookup, no import)."""
    code = ("import importlib.util as u, sys; "
            "sys.exit(0 if u.find_spec('sglang') and u.find_spec('sgl_kernel') else 3)")
    try:
        rc = subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python} does not run ({e})"
    return None if rc == 0 else f"{python} has no sglang / sgl_kernel installed"


def sglang_unavailable(device: str = "cpu", python: str | None = None) -> str | None:
    """Why SGLang engines cannot start here (one line), or None when they can."""
    python = python or sglang_python(device)
    if python is None:
        return f"no Python environment with SGLang found: {SETUP_HINT}"
    if not Path(python).exists():
        return f"{python} does not exist: {SETUP_HINT}"
    if device == "cpu" and not cpu_has_avx512():
        return "this CPU has no AVX-512, which SGLang's CPU kernels (sgl_kernel) need"
    why = _importable(python)
    return f"{why}: {SETUP_HINT}" if why else None


def resolve_backend(requested: str, device: str, python: str | None = None) -> tuple[str, str | None]:
    """(backend, note). On GPUs ``auto`` is SGLang (a missing install fails at engine start, with its log). On CPUs
    ``auto`` is SGLang when it can run here, else the torch engine with a note saying why, and ``sglang`` where it
    cannot run raises ValueError with the reason."""
    if requested not in ("auto", "sglang", "torch"):
        raise ValueError(f"rollout backend must be auto, sglang or torch, got {requested!r}")
    if requested == "torch":
        return "torch", None
    if device != "cpu":
        return "sglang", None
    why = sglang_unavailable(device, python)
    if requested == "sglang":
        if why:
            raise ValueError(f"--rollout-backend sglang: {why}")
        return "sglang", None
    if why:
        return "torch", f"SGLang cannot run here ({why}); using the torch fallback engine"
    return "sglang", None


def cpu_sglang_flags(extra_args: list[str]) -> list[str]:
    """``--device cpu`` and the CPU backend's flags, except those the user passes among ``extra_args``."""
    given = {a.split("=")[0] for a in extra_args if a.startswith("--")}
    out = ["--device", "cpu"]
    for flag, value in CPU_FLAGS:
        if flag not in given:
            out += [flag] if value is None else [flag, value]
    return out


def sglang_env_vars(device: str) -> dict[str, str]:
    """Environment of every SGLang engine: ``/health`` answers without generating (a generate never finishes while
    the engine is paused or released, so the default probe reports healthy engines as dead); on CPU the CPU engine."""
    env = {"SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "0"}
    if device == "cpu":
        env["SGLANG_USE_CPU_ENGINE"] = "1"
    return env
