"""scripts/setup_sglang_cpu.sh without building anything: the one-line "not set up" answer and its exit codes, the
argument checks, and the stamp that makes a re-run skip pip.

No test here reaches a package index. A stamp miss would start a build; every test that can reach that point sets
LONGTRACE_SGLANG_BASE_PYTHON to a missing interpreter, so a miss ends at the Python 3.11 check ("not set up: no
Python 3.11") instead, which the assertions tell apart from a stamp hit (exit 0, no output).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import ROOT

SCRIPT = ROOT / "scripts" / "setup_sglang_cpu.sh"
LOCK = ROOT / "constraints" / "sglang-cpu.txt"
STAMP_NAME = ".longtrace-sglang-stamp"
SUFFIX = "; tests that need real SGLang will skip"
HAS_AVX512 = "avx512f" in Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else False
NO_PYTHON = "/nonexistent/python3.11"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LONGTRACE_SGLANG_PREFIX", "LONGTRACE_SGL_KERNEL_WHEEL", "LONGTRACE_SGL_KERNEL_SRC",
                        "LONGTRACE_SGLANG_BASE_PYTHON")}
    env.update(extra)
    return env


def run(*args: str, script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=clean_env(**env),
                          timeout=60)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def stamp_for(wheel: Path) -> str:
    """The stamp the script writes for a wheel kernel: sha256 of the script, the lock and the wheel's name and hash."""
    wheel_id = f"wheel {wheel.name} {hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"
    return hashlib.sha256(SCRIPT.read_bytes() + LOCK.read_bytes() + wheel_id.encode()).hexdigest()


def test_bash_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.parametrize("if_available", [True, False], ids=["if-available", "required"])
def test_missing_wheel_is_one_line_and_the_exit_code_follows_if_available(tmp_path, if_available):
    prefix, wheel = tmp_path / "prefix", tmp_path / "missing" / "sglang_kernel_cpu-0.4.5-cp311-cp311-linux_x86_64.whl"
    args = ["--kernel-wheel", str(wheel)] + (["--if-available"] if if_available else [])
    proc = run(*args, LONGTRACE_SGLANG_PREFIX=str(prefix))
    assert one_line(proc) == f"[sglang-cpu] not set up: sgl_kernel CPU wheel {wheel} not found{SUFFIX}"
    if if_available:
        assert proc.returncode == 0 and proc.stderr == ""
    else:
        assert proc.returncode == 1 and proc.stdout == ""
    assert not prefix.exists(), "nothing is created when the engine cannot be set up"


def test_kernel_wheel_from_the_environment(tmp_path):
    wheel = tmp_path / "nope.whl"
    proc = run("--if-available", LONGTRACE_SGLANG_PREFIX=str(tmp_path / "p"), LONGTRACE_SGL_KERNEL_WHEEL=str(wheel))
    assert proc.returncode == 0
    assert one_line(proc) == f"[sglang-cpu] not set up: sgl_kernel CPU wheel {wheel} not found{SUFFIX}"


@pytest.mark.parametrize("if_available", [True, False], ids=["if-available", "required"])
def test_missing_kernel_source(tmp_path, if_available):
    src = tmp_path / "sgl-kernel"
    proc = run("--prefix", str(tmp_path / "p"), "--kernel-src", str(src), *(["--if-available"] if if_available else []))
    assert one_line(proc) == f"[sglang-cpu] not set up: sgl-kernel source folder {src} not found{SUFFIX}"
    assert proc.returncode == (0 if if_available else 1)


@pytest.mark.parametrize("if_available", [True, False], ids=["if-available", "required"])
def test_no_wheel_next_to_the_repo(tmp_path, if_available):
    """The default lookup (<repo>/../shared/sglang_cpu/) in a copy of the repo that has no shared/ beside it."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "constraints").mkdir()
    shutil.copy(SCRIPT, repo / "scripts")
    shutil.copy(LOCK, repo / "constraints")
    proc = run(*(["--if-available"] if if_available else []), script=repo / "scripts" / SCRIPT.name)
    line = one_line(proc)
    assert line.startswith("[sglang-cpu] not set up: no sgl_kernel CPU wheel") and line.endswith(SUFFIX)
    assert "--kernel-wheel" in line, "the message says how to provide one"
    assert proc.returncode == (0 if if_available else 1)
    assert not (repo / ".sglang-cpu").exists()


@pytest.mark.parametrize("args", [["--kernel-wheel", "a.whl", "--kernel-src", "src"], ["--bogus"], ["--prefix"]],
                         ids=["wheel-and-source", "unknown", "prefix-without-value"])
def test_bad_arguments_exit_2(tmp_path, args):
    proc = run(*args, LONGTRACE_SGLANG_PREFIX=str(tmp_path / "p"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("[sglang-cpu] ")


@pytest.mark.skipif(not HAS_AVX512, reason="no AVX-512 here: the script stops at the CPU check before the stamp")
@pytest.mark.parametrize("case", ["hit", "stale-stamp", "env-broken"])
def test_stamp_decides_whether_to_build(tmp_path, case):
    """A stand-in prefix: a fake interpreter (exit 0 = the quick import check passes) and a stamp. Only a matching
    stamp with an intact env skips the build; otherwise the script goes on to build (and here stops at the
    missing Python 3.11)."""
    wheel = tmp_path / "sglang_kernel_cpu-0.4.5-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"stand-in wheel")
    prefix = tmp_path / "prefix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    python = prefix / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\nexit %d\n" % (1 if case == "env-broken" else 0))
    python.chmod(0o755)
    stamp = prefix / STAMP_NAME
    stamp.write_text(("0" * 64 if case == "stale-stamp" else stamp_for(wheel)) + "\n")
    proc = run("--prefix", str(prefix), "--kernel-wheel", str(wheel), LONGTRACE_SGLANG_BASE_PYTHON=NO_PYTHON)
    if case == "hit":
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    else:
        assert proc.returncode == 1
        assert one_line(proc) == f"[sglang-cpu] not set up: no Python 3.11 ({NO_PYTHON}; " \
                                 f"the prebuilt sgl_kernel wheel is cp311){SUFFIX}"
    assert stamp.exists() and not (prefix / "setup.log").exists(), "no build was started"


def built_env() -> tuple[Path, Path]:
    """(prefix, kernel wheel) of this checkout's engine env, or skip."""
    prefix = Path(os.environ.get("LONGTRACE_SGLANG_PREFIX") or ROOT / ".sglang-cpu").resolve()
    if not (prefix / "venv" / "bin" / "python").exists() or not (prefix / STAMP_NAME).exists():
        pytest.skip(f"no SGLang CPU env built at {prefix} (bash scripts/setup_sglang_cpu.sh makes one)")
    if os.environ.get("LONGTRACE_SGL_KERNEL_SRC"):
        pytest.skip("the env was built from a kernel source folder")
    wheel = Path(os.environ["LONGTRACE_SGL_KERNEL_WHEEL"]) if os.environ.get("LONGTRACE_SGL_KERNEL_WHEEL") else None
    for folder in (ROOT.parent / "shared" / "sglang_cpu", ROOT / "shared" / "sglang_cpu"):  # the script's default
        if wheel is None and sorted(folder.glob("sglang_kernel_cpu-*.whl")):
            wheel = sorted(folder.glob("sglang_kernel_cpu-*.whl"))[-1]
    if wheel is None or not wheel.is_file():
        pytest.skip("no sgl_kernel CPU wheel to check the env's stamp against")
    if (prefix / STAMP_NAME).read_text().strip() != stamp_for(wheel):
        pytest.skip(f"the stamp in {prefix} is stale (script, lock or wheel changed); scripts/test.sh re-runs the setup")
    return prefix, wheel


def test_rerun_on_a_built_env_skips_pip():
    prefix, wheel = built_env()
    stamp, log = prefix / STAMP_NAME, prefix / "setup.log"
    before = (stamp.stat().st_mtime_ns, log.stat().st_mtime_ns if log.exists() else None)
    # A missing base interpreter: anything but a stamp hit would end in "not set up: no Python 3.11".
    proc = run("--prefix", str(prefix), "--kernel-wheel", str(wheel), LONGTRACE_SGLANG_BASE_PYTHON=NO_PYTHON)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (stamp.stat().st_mtime_ns, log.stat().st_mtime_ns if log.exists() else None) == before
