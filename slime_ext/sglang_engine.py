"""Rollout engines as subprocesses: SGLang servers (GPU, or CPU through SGLang's CPU backend) or the torch fallback
engine, behind sglang-router.

    longtrace engine launch --model-path DIR --num-engines 2 [--backend auto|sglang|torch] [--device cpu|cuda]
                            [--rollout-num-gpus-per-engine 8] [--sglang-mem-fraction-static 0.7]
                            [--sglang-context-length N] [--colocate] [-- EXTRA SGLANG FLAGS]

``EngineManager`` builds each engine's command line, starts it in its own process group, waits for its health
route with a timeout, starts the router and registers every engine with ``POST /workers``, watches the engines and
the router (``dead()``, ``recover()``), restarts or drops an engine that died, restarts a router that died, and tears
everything down (SIGTERM to each process group, SIGKILL after a grace period) on exit, on Ctrl-C and on errors,
leaving no orphan processes.

SGLang engines run with ``SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION=0``: their ``/health`` then answers without
generating (by default it submits a one-token generate and waits up to 20 s for it, which never comes while an
engine is paused or has released its memory). ``/health_generate`` still generates and is used once, at start-up.
On CPU (``device="cpu"``) SGLang runs from its own environment (``sglang_env.py``: scripts/setup_sglang_cpu.sh) with
``SGLANG_USE_CPU_ENGINE=1`` and the flags its CPU backend needs. Where SGLang cannot run (no CPU kernel build, no
AVX-512), ``--backend auto`` falls back to the torch engine (torch_engine.py) and says so.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .router import ROUTER_POLICIES, RouterClient, RouterConfig, router_command
from .sglang_env import cpu_sglang_flags, default_device, resolve_backend, sglang_env_vars, sglang_python
from .versions import SGLANG_VERSION

log = logging.getLogger("longtrace.engines")

BACKENDS = ("sglang", "torch")
# Flags the manager sets itself; passing them as extra flags would silently fight it.
MANAGED_SGLANG_FLAGS = {"--model-path", "--model", "--tp-size", "--tensor-parallel-size", "--host", "--port",
                        "--base-gpu-id", "--nccl-port", "--mem-fraction-static", "--context-length",
                        "--enable-memory-saver", "--device", "--dtype"}
ENGINE_STATES = ("up", "paused", "released")  # paused / released engines are not probed (only their process)


@dataclass
class EngineConfig:
    model_path: str
    backend: str = "sglang"
    num_engines: int = 1
    gpus_per_engine: int = 1  # --rollout-num-gpus-per-engine: SGLang's tp size
    mem_fraction_static: float | None = None  # --sglang-mem-fraction-static
    context_length: int | None = None  # --sglang-context-length
    host: str = "127.0.0.1"
    base_port: int = 0  # 0: free ports; else engine i listens on base_port + i
    base_gpu_id: int = 0
    enable_memory_saver: bool = False  # colocated mode: weights/KV can be released for training
    skip_server_warmup: bool = True
    extra_args: list[str] = field(default_factory=list)  # passed through to sglang.launch_server
    device: str = "cpu"  # cpu or cuda; torch backend on cuda: engine i gets cuda:<base_gpu_id + i>
    dtype: str | None = None  # SGLang --dtype (CPU default float32, the CPU trainer's precision)
    max_total_tokens: int | None = None  # SGLang --max-total-tokens (its KV pool; CPU default 65536)
    python: str | None = None  # interpreter with SGLang installed (default: sglang_env.sglang_python())
    max_running_requests: int | None = None
    torch_threads: int | None = None  # intra-op threads per engine (OMP_NUM_THREADS for SGLang)
    health_timeout_s: float = 600.0
    health_failures: int = 3  # consecutive failed /health probes before a live engine process counts as dead
    health_probe_timeout_s: float = 5.0
    stop_timeout_s: float = 15.0
    log_dir: str | None = None
    router: RouterConfig | None = field(default_factory=RouterConfig)  # None: no router
    restart_dead: bool = True  # a dead engine is restarted (else dropped from the router)

    def validate(self) -> "EngineConfig":
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.num_engines < 1:
            raise ValueError(f"--num-engines must be >= 1, got {self.num_engines}")
        if self.gpus_per_engine < 1:
            raise ValueError(f"--rollout-num-gpus-per-engine must be >= 1, got {self.gpus_per_engine}")
        if self.backend == "torch" and self.gpus_per_engine != 1:
            raise ValueError("the torch engine runs on one device: --rollout-num-gpus-per-engine must be 1")
        if self.mem_fraction_static is not None and not 0 < self.mem_fraction_static < 1:
            raise ValueError(f"--sglang-mem-fraction-static must be in (0, 1), got {self.mem_fraction_static}")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"--sglang-context-length must be >= 1, got {self.context_length}")
        clash = sorted({a.split("=")[0] for a in self.extra_args if a.startswith("--")} & MANAGED_SGLANG_FLAGS)
        if clash:
            raise ValueError(f"extra SGLang flags {', '.join(clash)} are set by the engine manager; use its own options")
        if not Path(self.model_path).exists() and (self.backend == "torch" or self.device == "cpu"):
            raise ValueError(f"--model-path {self.model_path} does not exist")
        if self.health_failures < 1:
            raise ValueError(f"health_failures must be >= 1, got {self.health_failures}")
        if self.router is not None and self.router.policy not in ROUTER_POLICIES:
            raise ValueError(f"--router-policy must be one of {', '.join(ROUTER_POLICIES)}, got {self.router.policy!r}")
        return self


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sglang_command(cfg: EngineConfig, index: int, port: int, nccl_port: int | None = None) -> list[str]:
    """``python -m sglang.launch_server ...`` for engine ``index`` (GPUs base_gpu_id + index * tp ...)."""
    python = cfg.python or sglang_python(cfg.device) or sys.executable
    cmd = [python, "-m", "sglang.launch_server", "--model-path", cfg.model_path,
           "--tp-size", str(cfg.gpus_per_engine), "--host", cfg.host, "--port", str(port)]
    if cfg.device == "cpu":
        cmd += cpu_sglang_flags(cfg.extra_args)
        mem_fraction = cfg.mem_fraction_static if cfg.mem_fraction_static is not None else 0.05
        cmd += ["--mem-fraction-static", str(mem_fraction), "--dtype", cfg.dtype or "float32"]
        if "--max-total-tokens" not in cfg.extra_args:
            cmd += ["--max-total-tokens", str(cfg.max_total_tokens or 65536)]
    else:
        cmd += ["--base-gpu-id", str(cfg.base_gpu_id + index * cfg.gpus_per_engine)]
        if nccl_port is not None:
            cmd += ["--nccl-port", str(nccl_port)]
        if cfg.mem_fraction_static is not None:
            cmd += ["--mem-fraction-static", str(cfg.mem_fraction_static)]
        if cfg.dtype:
            cmd += ["--dtype", cfg.dtype]
        if cfg.max_total_tokens:
            cmd += ["--max-total-tokens", str(cfg.max_total_tokens)]
    if cfg.context_length is not None:
        cmd += ["--context-length", str(cfg.context_length)]
    if cfg.enable_memory_saver:
        cmd += ["--enable-memory-saver"]
    if cfg.skip_server_warmup:
        cmd += ["--skip-server-warmup"]
    return cmd + list(cfg.extra_args)


def engine_env(cfg: EngineConfig) -> dict[str, str]:
    """Environment variables of every engine process."""
    env = sglang_env_vars(cfg.device) if cfg.backend == "sglang" else {}
    if cfg.torch_threads and cfg.backend == "sglang":
        env["OMP_NUM_THREADS"] = str(cfg.torch_threads)
    return env


def torch_engine_command(cfg: EngineConfig, index: int, port: int) -> list[str]:
    device = cfg.device
    if device == "cuda":
        device = f"cuda:{cfg.base_gpu_id + index}"
    cmd = [sys.executable, "-m", "slime_ext.torch_engine", "--model-path", cfg.model_path, "--host", cfg.host,
           "--port", str(port), "--device", device, "--log-level", "warning"]
    if cfg.max_running_requests:
        cmd += ["--max-running-requests", str(cfg.max_running_requests)]
    if cfg.context_length:
        cmd += ["--context-length", str(cfg.context_length)]
    if cfg.torch_threads:
        cmd += ["--torch-threads", str(cfg.torch_threads)]
    return cmd + list(cfg.extra_args)


class ManagedProcess:
    """A subprocess in its own process group (session), with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path | None = None, env: dict | None = None):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        # If this process dies without tearing down (SIGKILL, crash), the kernel sends the child SIGTERM. The
        # signal follows the *thread* that forked, so it is only armed from the main thread (restarts done from
        # worker threads rely on the manager's teardown).
        pdeathsig = _set_parent_death_signal if threading.current_thread() is threading.main_thread() else None
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env={**os.environ, **(env or {})}, preexec_fn=pdeathsig)
        finally:
            if log_path:
                out.close()
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``timeout_s``; reaps the leader."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            if self._group_gone_within(wait_s):
                break
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("%s (pid %d) did not exit after SIGKILL", self.name, self.pid)

    def _group_gone_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader so it does not linger as a zombie
            if not group_alive(self.pid):
                return True
            time.sleep(0.1)
        return False

    def tail(self, n: int = 2000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")


def _set_parent_death_signal() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (zombies of other parents count as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg succeeds while members are zombies; look for a live member
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_healthy(url: str, proc: ManagedProcess, timeout_s: float, route: str = "/health") -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.exit_code()} before {url}{route} answered; "
                                   f"log tail:\n{proc.tail()}")
            try:
                if http.get(f"{url}{route}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{proc.name}: {url}{route} not healthy after {timeout_s:g} s; log tail:\n{proc.tail()}")


@dataclass
class Engine:
    index: int
    url: str
    port: int
    process: ManagedProcess | None = None
    restarts: int = 0
    dropped: bool = False
    state: str = "up"  # up | paused | released (set by whoever pauses it or releases its memory)
    failed_probes: int = 0  # consecutive failed /health probes


class EngineManager:
    """Starts engines + router; ``with EngineManager(cfg) as m: m.router_url ...``; everything stops on exit."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg.validate()
        self.engines: list[Engine] = []
        self.router_process: ManagedProcess | None = None
        self.router_url: str | None = None
        self.router_port: int | None = None
        self.router: RouterClient | None = None
        self.log_dir = Path(cfg.log_dir) if cfg.log_dir else None
        self.events: list[str] = []  # one line per fault handled (restart / drop)
        self._recover_lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)

    # ---- lifecycle
    def __enter__(self) -> "EngineManager":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # The three hooks below decide where engines run; RayEngineManager (ray_engines.py) overrides them to start
    # each engine on its placement-group bundle's node.
    def _endpoint(self, index: int) -> tuple[str, int]:
        """(host the engine is reached at, port) for engine ``index``."""
        cfg = self.cfg
        return cfg.host, cfg.base_port + index if cfg.base_port else free_port(cfg.host)

    def _command(self, index: int, port: int) -> list[str]:
        if self.cfg.backend == "sglang":
            return sglang_command(self.cfg, index, port, nccl_port=free_port(self.cfg.host))
        return torch_engine_command(self.cfg, index, port)

    def _spawn(self, engine: Engine, cmd: list[str], log_path: Path | None, env: dict[str, str]):
        """A process handle (alive, exit_code, stop, tail, pid, name, cmd): here a local subprocess."""
        return ManagedProcess(f"engine{engine.index}", cmd, log_path, env=env)

    def _launch(self, engine: Engine) -> None:
        log_path = self.log_dir / f"engine{engine.index}.log" if self.log_dir else None
        env = engine_env(self.cfg)
        engine.process = self._spawn(engine, self._command(engine.index, engine.port), log_path, env)
        engine.state, engine.failed_probes = "up", 0
        log.info("engine %d: pid %d: %s%s", engine.index, engine.process.pid,
                 " ".join(f"{k}={v}" for k, v in env.items()) + " " if env else "", " ".join(engine.process.cmd))

    def _wait(self, engine: Engine) -> None:
        route = "/health_generate" if self.cfg.backend == "sglang" else "/health"
        wait_healthy(engine.url, engine.process, self.cfg.health_timeout_s, route)

    def start(self) -> None:
        cfg = self.cfg
        for i in range(cfg.num_engines):
            host, port = self._endpoint(i)
            self.engines.append(Engine(i, f"http://{host}:{port}", port))
        for e in self.engines:
            self._launch(e)
        with ThreadPoolExecutor(max_workers=len(self.engines)) as pool:
            list(pool.map(self._wait, self.engines))  # raises the first failure
        if cfg.backend == "sglang":
            self._check_sglang_version()
        if cfg.router is not None:
            self.router_port = cfg.router.port or free_port(cfg.router.host)
            self.router_url = f"http://{cfg.router.host}:{self.router_port}"
            self._start_router()
        log.info("%d %s engine(s) up%s", len(self.engines), cfg.backend,
                 f" behind router {self.router_url}" if self.router_url else "")

    def _start_router(self) -> None:
        """(Re)start the router on its port and register every engine that is not dropped."""
        router = self.cfg.router
        log_path = self.log_dir / "router.log" if self.log_dir else None
        cmd = router_command(router, self.router_port, prometheus_port=free_port(router.host))
        self.router_process = ManagedProcess("router", cmd, log_path)
        wait_healthy(self.router_url, self.router_process, 60.0)
        if self.router is not None:
            self.router.close()
        self.router = RouterClient(self.router_url)
        for e in self.engines:
            if not e.dropped:
                self.router.add_worker(e.url)

    def _check_sglang_version(self) -> None:
        try:
            info = httpx.get(f"{self.engines[0].url}/server_info", timeout=30, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return
        version = str(info.get("version", ""))
        if version and not version.startswith(SGLANG_VERSION):
            log.warning("SGLang reports version %s; the rollout client was checked against %s (slime_ext/versions.py)",
                        version, SGLANG_VERSION)

    def start_watchdog(self, interval_s: float = 5.0) -> None:
        """Check engine health every ``interval_s`` in a background thread and recover dead engines."""
        def loop():
            while not self._watchdog_stop.wait(interval_s):
                try:
                    self.recover()
                except Exception:
                    log.exception("engine watchdog: recovery failed")
        self._watchdog_stop.clear()
        self._watchdog = threading.Thread(target=loop, name="engine-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog_stop.set()
            self._watchdog.join(timeout=self.cfg.health_timeout_s + 30)
            self._watchdog = None
        procs = [e.process for e in self.engines if e.process] + ([self.router_process] if self.router_process else [])
        if self.router:
            self.router.close()
            self.router = None
        if procs:
            with ThreadPoolExecutor(max_workers=len(procs)) as pool:
                list(pool.map(lambda p: p.stop(self.cfg.stop_timeout_s), procs))
            log.info("stopped %d process(es)", len(procs))
        self.router_process = None
        for e in self.engines:
            e.process = None

    # ---- queries
    @property
    def engine_urls(self) -> list[str]:
        return [e.url for e in self.engines if not e.dropped]

    @property
    def url(self) -> str:
        """Where clients send /generate: the router, or the only engine."""
        if self.router_url:
            return self.router_url
        if len(self.engines) != 1:
            raise RuntimeError("several engines without a router: use engine_urls")
        return self.engines[0].url

    def pids(self) -> list[int]:
        return [p.pid for p in [e.process for e in self.engines] + [self.router_process] if p is not None]

    def set_state(self, state: str, urls: list[str] | None = None) -> None:
        """Mark engines (all, or those at ``urls``) paused / released / up. The watchdog only checks that a paused or
        released engine's process lives: it is never restarted for an unanswered probe while it holds no memory."""
        if state not in ENGINE_STATES:
            raise ValueError(f"engine state must be one of {ENGINE_STATES}, got {state!r}")
        for e in self.engines:
            if urls is None or e.url in urls:
                e.state, e.failed_probes = state, 0

    # ---- faults
    def dead(self) -> list[Engine]:
        """Engines whose process exited, or (while up) whose ``/health`` failed ``health_failures`` probes in a row.
        ``/health`` does not generate (SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION=0): it proves the HTTP server lives."""
        out = []
        for e in self.engines:
            if e.dropped or e.process is None:
                continue
            if not e.process.alive():
                out.append(e)
                continue
            if e.state != "up":
                continue
            try:
                ok = httpx.get(f"{e.url}/health", timeout=self.cfg.health_probe_timeout_s, trust_env=False).status_code == 200
            except httpx.HTTPError:
                ok = False
            e.failed_probes = 0 if ok else e.failed_probes + 1
            if e.failed_probes >= self.cfg.health_failures:
                out.append(e)
        return out

    def recover(self) -> list[str]:
        """Restart (or drop) every dead engine and restart a dead router; returns one log line per action (also kept
        in ``events``)."""
        with self._recover_lock:
            actions = self._recover()
        self.events += actions
        return actions

    def _recover(self) -> list[str]:
        actions = []
        if self.router_process is not None and not self.router_process.alive():
            code = self.router_process.exit_code()
            self.router_process.stop(self.cfg.stop_timeout_s)
            self._start_router()
            actions.append(f"router ({self.router_url}) died (exit {code}); restarted with "
                           f"{len(self.engine_urls)} engine(s) registered")
            log.warning(actions[-1])
        for e in self.dead():
            code = e.process.exit_code() if e.process else None
            if self.router:
                self.router.remove_worker(e.url)
            if e.process:
                e.process.stop(self.cfg.stop_timeout_s)
            if not self.cfg.restart_dead:
                e.dropped = True
                actions.append(f"engine {e.index} ({e.url}) died (exit {code}); dropped from the router")
                log.error(actions[-1])
                continue
            e.restarts += 1
            self._launch(e)
            self._wait(e)
            if self.router:
                self.router.add_worker(e.url)
            actions.append(f"engine {e.index} ({e.url}) died (exit {code}); restarted (restart #{e.restarts})")
            log.warning(actions[-1])
        return actions


# ---- CLI: longtrace engine launch -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longtrace engine launch",
                                description="Start rollout engines (SGLang or torch) behind sglang-router; Ctrl-C stops all.",
                                epilog="Arguments after '--' are passed to every sglang.launch_server unchanged.")
    p.add_argument("--model-path", required=True, help="HF checkpoint (slime: --hf-checkpoint)")
    p.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto",
                   help="auto: SGLang where it can run (GPU, or CPU with scripts/setup_sglang_cpu.sh), else the torch engine")
    p.add_argument("--num-engines", type=int, default=1)
    p.add_argument("--rollout-num-gpus-per-engine", type=int, default=1, help="GPUs per engine = SGLang tp size")
    p.add_argument("--sglang-mem-fraction-static", type=float, default=None)
    p.add_argument("--sglang-context-length", type=int, default=None)
    p.add_argument("--colocate", action="store_true", help="start engines with --enable-memory-saver (sleep/wake)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--base-port", type=int, default=0, help="engine i listens on base+i (default: free ports)")
    p.add_argument("--base-gpu-id", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", default=None, help="SGLang --dtype (CPU default float32)")
    p.add_argument("--sglang-python", default=None,
                   help="interpreter with SGLang (default: $LONGTRACE_SGLANG_PYTHON, .sglang-cpu/venv, or this one)")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--max-running-requests", type=int, default=None, help="torch backend")
    p.add_argument("--router-port", type=int, default=0)
    p.add_argument("--router-policy", choices=ROUTER_POLICIES, default="round_robin")
    p.add_argument("--no-router", action="store_true")
    p.add_argument("--health-timeout", type=float, default=600.0)
    p.add_argument("--log-dir", default=None, help="engine and router logs (default: discarded)")
    return p


def config_from_args(a: argparse.Namespace, extra: list[str]) -> EngineConfig:
    device = a.device or default_device()
    backend, note = resolve_backend(a.backend, device, a.sglang_python)
    if note:
        print(f"longtrace engine launch: {note}", file=sys.stderr)
    return EngineConfig(
        model_path=a.model_path, backend=backend, num_engines=a.num_engines, gpus_per_engine=a.rollout_num_gpus_per_engine,
        mem_fraction_static=a.sglang_mem_fraction_static, context_length=a.sglang_context_length, host=a.host,
        base_port=a.base_port, base_gpu_id=a.base_gpu_id, enable_memory_saver=a.colocate, extra_args=extra,
        device=device, dtype=a.dtype, python=a.sglang_python, torch_threads=a.torch_threads,
        max_running_requests=a.max_running_requests, health_timeout_s=a.health_timeout, log_dir=a.log_dir,
        router=None if a.no_router else RouterConfig(host=a.host, port=a.router_port, policy=a.router_policy),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = config_from_args(a, extra)
        manager = EngineManager(cfg)
    except ValueError as e:
        print(f"longtrace engine launch: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a process started in the background by a non-interactive shell (nohup, `cmd &` in a script, a CI
    # runner) inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt handler: Ctrl-C / kill -INT
    # would leave the engines and the router running.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        with manager:
            print(f"engines: {' '.join(manager.engine_urls)}")
            if manager.router_url:
                print(f"router:  {manager.router_url}   (POST {manager.router_url}/generate)")
            print("Ctrl-C stops everything.", flush=True)
            while True:
                time.sleep(2)
                for line in manager.recover():
                    print(line, flush=True)
    except KeyboardInterrupt:
        print("stopping engines and router", file=sys.stderr)
    except (RuntimeError, TimeoutError) as e:
        print(f"longtrace engine launch: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
