"""Rollout engines placed by Ray: one ``EngineHost`` actor per engine, in the placement-group bundle of the engine's
first GPU, starts the engine process (SGLang or the torch engine) on that bundle's node.

``RayEngineManager`` is ``EngineManager`` (sglang_engine.py: health waits, the router, the watchdog, restarts,
teardown) with its three placement hooks overridden: an engine is reached at its host's node IP, on a port free
there, and its process is a ``RemoteProcess`` handle backed by the host actor. Engines see every GPU of their
node (``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``) and are told their first GPU explicitly, as slime does,
so an engine may span several bundles of one node (SGLang tensor parallelism).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import ray

from .sglang_engine import Engine, EngineConfig, EngineManager, ManagedProcess, free_port, sglang_command, torch_engine_command

log = logging.getLogger("longtrace.rollout")
CALL_TIMEOUT_S = 120.0


@ray.remote
class EngineHost:
    """Owns one engine process on its node."""

    def __init__(self) -> None:
        self.process: ManagedProcess | None = None

    def ip(self) -> str:
        return ray.util.get_node_ip_address()

    def free_port(self) -> int:
        return free_port("0.0.0.0")

    def start(self, name: str, cmd: list[str], log_path: str | None, env: dict[str, str] | None = None) -> int:
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(name, cmd, Path(log_path) if log_path else None, env=env)
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def exit_code(self) -> int | None:
        return self.process.exit_code() if self.process else None

    def stop(self, timeout_s: float) -> None:
        if self.process is not None:
            self.process.stop(timeout_s)

    def tail(self, n: int) -> str:
        return self.process.tail(n) if self.process else ""


class RemoteProcess:
    """ManagedProcess's interface, for a process an EngineHost actor runs."""

    def __init__(self, host, name: str, cmd: list[str], log_path: Path | None, env: dict[str, str] | None = None):
        self.host, self.name, self.cmd, self.log_path = host, name, cmd, log_path
        self.pid = ray.get(host.start.remote(name, cmd, str(log_path) if log_path else None, env), timeout=CALL_TIMEOUT_S)

    def alive(self) -> bool:
        try:
            return ray.get(self.host.alive.remote(), timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError):  # the host actor or its node is gone
            return False

    def exit_code(self) -> int | None:
        try:
            return ray.get(self.host.exit_code.remote(), timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError):
            return None

    def stop(self, timeout_s: float = 15.0) -> None:
        try:
            ray.get(self.host.stop.remote(timeout_s), timeout=timeout_s + CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as e:
            log.error("%s: stop failed (%s)", self.name, e)

    def tail(self, n: int = 2000) -> str:
        try:
            return ray.get(self.host.tail.remote(n), timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError):
            return ""


class RayEngineManager(EngineManager):
    """Engines on placement-group bundles. ``first_bundles[i]`` is engine i's first bundle; ``first_gpus[i]`` the
    GPU index of that bundle on its node (None on CPU)."""

    def __init__(self, cfg: EngineConfig, pg, first_bundles: list[int], first_gpus: list[int | None],
                 gpu_fraction: float = 0.0, cpu_fraction: float = 0.01):
        if len(first_bundles) != cfg.num_engines:
            raise ValueError(f"{cfg.num_engines} engines but {len(first_bundles)} bundles given")
        # engines listen on every interface of their node (the router and client may be elsewhere)
        super().__init__(replace(cfg, host="0.0.0.0") if cfg.host == "127.0.0.1" and ray_is_multinode() else cfg)
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        env = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
        self.first_gpus = first_gpus
        self.hosts = [
            EngineHost.options(
                num_cpus=cpu_fraction, num_gpus=gpu_fraction, runtime_env={"env_vars": env},
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b),
            ).remote()
            for b in first_bundles
        ]
        self.host_ips = ray.get([h.ip.remote() for h in self.hosts], timeout=CALL_TIMEOUT_S)

    def _endpoint(self, index: int) -> tuple[str, int]:
        port = ray.get(self.hosts[index].free_port.remote(), timeout=CALL_TIMEOUT_S)
        local = self.cfg.host in ("127.0.0.1", "localhost")
        return ("127.0.0.1" if local else self.host_ips[index]), port

    def _command(self, index: int, port: int) -> list[str]:
        # built as for engine 0 of a node whose first GPU is this engine's own (engines see all their node's GPUs)
        gpu = self.first_gpus[index]
        cfg = self.cfg if gpu is None else replace(self.cfg, base_gpu_id=gpu)
        if cfg.backend == "sglang":
            nccl_port = ray.get(self.hosts[index].free_port.remote(), timeout=CALL_TIMEOUT_S)
            return sglang_command(cfg, 0, port, nccl_port=nccl_port)
        return torch_engine_command(cfg, 0, port)

    def _spawn(self, engine: Engine, cmd: list[str], log_path: Path | None, env: dict[str, str]):
        return RemoteProcess(self.hosts[engine.index], f"engine{engine.index}", cmd, log_path, env)

    def stop(self) -> None:
        super().stop()
        for h in self.hosts:
            try:
                ray.kill(h)
            except Exception:  # already gone
                pass


def ray_is_multinode() -> bool:
    try:
        return len([n for n in ray.nodes() if n.get("Alive")]) > 1
    except Exception:
        return False
