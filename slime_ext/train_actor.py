"""The trainer as Ray actors: one ``TrainActor`` per Megatron rank, each in its placement-group bundle.

torch.distributed is initialised through Ray: rank 0 reports its node IP and a free port, every actor then
initialises with that master address (NCCL on GPUs, gloo on CPU) and builds its ``MegatronTrainer``. The driver
talks to the group through ``TrainerGroup.call``: the same method on every rank at once (the trainer's methods are
collective), with a timeout, returning rank 0's answer.

Weight sync runs from the trainer: every rank takes part in gathering (or exporting) the HF-named weights, and
rank 0 pushes them to the engines through ``WeightSync`` (pause, flush, transport, continue; versions tracked).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import ray

from .async_loop import LoopThread
from .rollout_manager import quiet_logging

log = logging.getLogger("longtrace.train")


@ray.remote
class TrainActor:
    def __init__(self, rank: int, world_size: int, cpu_threads: int | None = None):
        quiet_logging()
        self.rank, self.world_size = rank, world_size
        self.trainer = None
        self.weight_sync = None
        if cpu_threads:
            import torch

            torch.set_num_threads(cpu_threads)

    def master_address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def init(self, master_addr: str, master_port: int, trainer_cfg, weight_sync_cfg, template_dir: str) -> dict:
        from .trainer import MegatronTrainer
        from .weight_sync import WeightSync

        gpu_ids = ray.get_gpu_ids()
        os.environ.update({"MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port), "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(int(gpu_ids[0]) if gpu_ids else 0)})
        self.trainer = MegatronTrainer(trainer_cfg)
        self._engine_urls: list[str] = []
        if self.rank == 0:  # the weight-sync HTTP client lives in this actor's own loop
            self.loop = LoopThread("weight-sync-loop")
            self.weight_sync = WeightSync(lambda: self._engine_urls, weight_sync_cfg, template_dir=template_dir)
        return {"params": self.trainer.arch.num_params, "te": self.trainer.use_te, "device": str(self.trainer.device)}

    # ---- training (collective: every rank calls these together)
    def compute_logprobs(self, items) -> list[list[float]]:
        return self.trainer.compute_logprobs(items)

    def compute_ref_logprobs(self, items) -> list[list[float]]:
        return self.trainer.compute_ref_logprobs(items)

    def train_step(self, items) -> dict[str, float]:
        return self.trainer.train_step(items)

    def save(self, ckpt_dir: str, extra: dict) -> str:
        return str(self.trainer.save_checkpoint(ckpt_dir, extra))

    def load(self, ckpt_dir: str) -> dict:
        return self.trainer.load_checkpoint(ckpt_dir)

    def export_hf(self, out_dir: str) -> str:
        return str(self.trainer.export_hf(out_dir))

    def sync_weights(self, engine_urls: list[str]) -> dict[str, float]:
        """Push the current weights to the engines; returns the new version and timings (rank 0's are real)."""
        import torch.distributed as dist

        start = time.perf_counter()
        cfg = self.weight_sync.cfg if self.weight_sync else None
        transport = self._broadcast_object(cfg.transport if cfg else None)
        if transport == "disk":
            version = self._broadcast_object(self.weight_sync.version + 1 if self.weight_sync else None)
            path = str(Path(self._broadcast_object(cfg.disk_dir if cfg else None)) / f"weight_v{version}")
            self.trainer.export_hf(path)  # every stage writes its shards
            if self.rank == 0:
                self._engine_urls = list(engine_urls)
                self.loop.run(self.weight_sync.sync_from_path(path))
                self._prune(Path(cfg.disk_dir), cfg.keep_last)
        else:  # gathered over TP on every rank; rank 0 (PP = 1, checked at start-up) sends
            named = list(self.trainer.hf_named_tensors())
            if self.rank == 0:
                self._engine_urls = list(engine_urls)
                self.loop.run(self.weight_sync.sync(named))
        dist.barrier()
        version = self.weight_sync.version if self.weight_sync else -1
        return {"version": float(version), "seconds": time.perf_counter() - start}

    def _broadcast_object(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @staticmethod
    def _prune(root: Path, keep: int) -> None:
        import shutil

        old = sorted((p for p in root.glob("weight_v*") if p.name[8:].isdigit()), key=lambda p: int(p.name[8:]))
        for p in old[: max(0, len(old) - keep)]:
            shutil.rmtree(p, ignore_errors=True)

    # ---- colocated memory hand-over (GPU)
    def sleep(self) -> None:
        self.trainer.offload()

    def wake(self) -> None:
        self.trainer.onload()

    def peak_flops(self) -> float:
        from .flops import matmul_peak

        return matmul_peak(self.trainer.cfg.torch_dtype, self.trainer.device)


class TrainerGroup:
    """The trainer ranks as actors; ``call(method, *args)`` runs a collective method on all and returns rank 0's."""

    def __init__(self, placement, world_size: int, trainer_cfg, weight_sync_cfg, template_dir: str, *,
                 gpu: bool, colocate: bool, timeout_s: float, cpu_threads: int | None = None):
        self.timeout_s = timeout_s
        env = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"} if gpu else {}
        self.actors = [
            TrainActor.options(num_cpus=0.01, num_gpus=(0.4 if colocate else 1.0) if gpu else 0,
                               scheduling_strategy=placement.strategy(b), runtime_env={"env_vars": env}
                               ).remote(rank, world_size, None if gpu else cpu_threads)
            for rank, b in enumerate(placement.actor_bundles)
        ]
        addr, port = ray.get(self.actors[0].master_address.remote(), timeout=timeout_s)
        info = self._all("init", addr, port, trainer_cfg, weight_sync_cfg, template_dir)
        log.info("trainer: %d rank(s), %.1f M parameters, %s, %s", world_size, info["params"] / 1e6,
                 "transformer-engine" if info["te"] else "local spec", info["device"])

    def _all(self, method: str, *args: Any) -> Any:
        refs = [getattr(a, method).remote(*args) for a in self.actors]
        return ray.get(refs, timeout=self.timeout_s)[0]

    def call(self, method: str, *args: Any) -> Any:
        """``ObjectRef`` arguments are resolved by Ray on each actor: put big inputs once with ``ray.put``."""
        return self._all(method, *args)

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
