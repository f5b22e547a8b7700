"""The trainer as Ray actors: one ``TrainActor`` per Megatron rank, each in its placement-group bundle.

torch.distributed is initialised through Ray: rank 0 reports its node IP and a free port, every actor then
initialises with that master address (NCCL on GPUs, gloo on CPU) and builds its ``MegatronTrainer``. The driver
talks to the group through ``TrainerGroup.call``: the same method on every rank at once (the trainer's methods are
collective), with a timeout, returning rank 0's answer.

Weight sync runs from the trainer: every rank takes part in gathering (or exporting) the HF-named weights. Disk and
distributed: rank 0 pushes them to every engine through ``WeightSync``. Tensor (colocated): engine e's TP rank k
shares the GPU of trainer rank ``e * tp + k``; every rank serializes its own copy of each bucket (a handle to its own
GPU's memory), the copies are gathered to the engine's first rank, which posts the list (one payload per engine
rank), as SGLang's ``deserialize_own_rank`` expects. The ranks agree on the outcome after every bucket, so a refusal
stops all of them with the engine's message instead of leaving some in a collective.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from dataclasses import replace
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
        from .ray_engines import ray_is_multinode
        from .trainer import MegatronTrainer
        from .weight_sync import WeightSync

        gpu_ids = ray.get_gpu_ids()
        os.environ.update({"MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port), "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(int(gpu_ids[0]) if gpu_ids else 0)})
        self.trainer = MegatronTrainer(trainer_cfg)
        self._engine_urls: list[str] = []
        self._engine_groups: list | None = None  # tensor transport: one process group per engine (its TP ranks)
        # every rank may post (tensor transport); the weight-sync HTTP client lives in this actor's own loop
        self.loop = LoopThread("weight-sync-loop")
        if weight_sync_cfg.master_address in ("127.0.0.1", "localhost") and ray_is_multinode():
            # engines on other nodes join the weight-update group at this node's address
            weight_sync_cfg = replace(weight_sync_cfg, master_address=ray.util.get_node_ip_address())
        self.weight_sync = WeightSync(lambda: self._engine_urls, weight_sync_cfg, template_dir=template_dir)
        return {"params": self.trainer.arch.num_params, "attention": self.trainer.attention, "device": str(self.trainer.device)}

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

    def sync_weights(self, engine_urls: list[str], keep_paused: bool = False) -> dict[str, float]:
        """Push the current weights to the engines (collective); returns the new version and the time taken.
        ``keep_paused``: the engines stay paused afterwards (the colocated loop resumes their KV cache first).
        Raises WeightSyncError on every rank when an engine refused, naming it."""
        import torch.distributed as dist

        from .weight_sync import WeightSyncError, prune_weight_dirs

        start = time.perf_counter()
        self._engine_urls = list(engine_urls)
        cfg, error = self.weight_sync.cfg, None
        try:
            if cfg.transport == "disk":
                version = self.weight_sync.version + 1
                path = Path(cfg.disk_dir) / f"weight_v{version}"
                if self.rank == 0 and path.exists():  # an earlier run's: its shards must not mix with these
                    shutil.rmtree(path)
                dist.barrier()
                self.trainer.export_hf(path)  # every stage writes its shards
                dist.barrier()  # all shards are on disk before an engine reads them
                if self.rank == 0:
                    self.loop.run(self.weight_sync.sync_from_path(str(path), keep_paused))
                    prune_weight_dirs(Path(cfg.disk_dir), cfg.keep_last, version)
            elif cfg.transport == "distributed":  # gathered over TP on every rank; rank 0 (PP = EP = 1) sends
                named = list(self.trainer.hf_named_tensors())
                if self.rank == 0:
                    self.loop.run(self.weight_sync.sync(named, keep_paused))
            else:
                self._sync_tensor(keep_paused)
        except WeightSyncError as e:
            error = str(e)
        outcomes = self._gather((self.weight_sync.version, error))
        self.weight_sync.version = max(v for v, _ in outcomes)
        errors = [e for _, e in outcomes if e]
        if errors:
            raise WeightSyncError(errors[0])
        return {"version": float(self.weight_sync.version), "seconds": time.perf_counter() - start}

    def _sync_tensor(self, keep_paused: bool) -> None:
        """Colocated: every rank shares its copy of each bucket; engine e's first rank posts all of its ranks' copies."""
        import torch.distributed as dist

        from .weight_sync import (EngineControl, WeightSyncError, buckets, by_dtype, flatten_bucket, post_tensor_bucket,
                                  serialize_tensors)

        ws, tp, urls = self.weight_sync, self.weight_sync.cfg.engine_ranks, self._engine_urls
        if len(urls) * tp > self.world_size:
            raise WeightSyncError(f"tensor transport: {len(urls)} engine(s) x {tp} GPU(s) but only {self.world_size} "
                                  "trainer rank(s) to share them with (colocate engines with the trainer)")
        if self._engine_groups is None or len(self._engine_groups) != len(urls):
            self._engine_groups = [dist.new_group(list(range(e * tp, (e + 1) * tp))) if tp > 1 else None
                                   for e in range(len(urls))]
        mine = self.rank // tp if self.rank < len(urls) * tp else None
        engine = EngineControl(urls[mine], ws.client()) if mine is not None and self.rank % tp == 0 else None
        version, error, begun = ws.version + 1, None, False
        if engine is not None:
            try:
                self.loop.run(ws.open([engine]))
                self.loop.run(engine.begin_update())
                begun = True
            except WeightSyncError as e:
                error = str(e)
        if self._agree(error) is None:
            groups = (g for b in buckets(self.trainer.hf_named_tensors(), int(ws.cfg.bucket_mb * 2**20)) for g in by_dtype(b))
            for group in groups:
                flat = flatten_bucket(group)
                payload = serialize_tensors(flat) if mine is not None else None
                payloads = [payload]
                if tp > 1 and mine is not None:
                    payloads = [None] * tp if engine is not None else None
                    dist.gather_object(payload, payloads, dst=mine * tp, group=self._engine_groups[mine])
                if engine is not None and error is None:
                    try:
                        ws.check(((n, t.shape) for n, t in group), "the trainer")
                        self.loop.run(post_tensor_bucket(engine, payloads, version))
                    except WeightSyncError as e:
                        error = str(e)
                failed = self._agree(error)  # also keeps every rank's `flat` alive until its engine has read it
                del flat, payload, payloads
                if failed is not None:
                    break
        if engine is not None:
            try:
                if begun:
                    self.loop.run(engine.end_update())
                if not keep_paused:
                    self.loop.run(engine.resume_generation())
            except WeightSyncError as e:
                error = error or str(e)
        failed = self._agree(error)
        if failed is not None:
            raise WeightSyncError(failed)
        ws.version = version

    def _gather(self, value: Any) -> list:
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def _agree(self, error: str | None) -> str | None:
        """Collective: the first rank's error, or None when no rank has one."""
        return next((e for e in self._gather(error) if e), None)

    # ---- colocated memory hand-over
    def sleep(self) -> None:
        self.trainer.offload()

    def wake(self) -> None:
        self.trainer.onload()

    def shutdown(self) -> None:
        """Close the weight-sync client (and the weight-update group, whose engines are still up)."""
        try:
            self.loop.run(self.weight_sync.aclose())
        finally:
            self.loop.stop()

    def peak_flops(self) -> dict[str, float | str | None]:
        """The MFU denominators of this rank's device: the datasheet peak (GPUs by name, bf16/fp16) and a measured
        dense matmul."""
        import torch

        from .flops import datasheet_peak, matmul_peak

        device, dtype = self.trainer.device, self.trainer.cfg.torch_dtype
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        return {"device": name, "datasheet": datasheet_peak(name, dtype), "measured": matmul_peak(dtype, device)}


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
        log.info("trainer: %d rank(s), %.1f M parameters, attention %s, %s", world_size, info["params"] / 1e6,
                 info["attention"], info["device"])

    def _all(self, method: str, *args: Any) -> Any:
        refs = [getattr(a, method).remote(*args) for a in self.actors]
        return ray.get(refs, timeout=self.timeout_s)[0]

    def call(self, method: str, *args: Any) -> Any:
        """``ObjectRef`` arguments are resolved by Ray on each actor: put big inputs once with ``ray.put``."""
        return self._all(method, *args)

    def shutdown(self) -> None:
        try:
            ray.get([a.shutdown.remote() for a in self.actors], timeout=60)
        except Exception as e:  # noqa: BLE001 (a dead actor: nothing left to close)
            log.warning("trainer shutdown: %s", e)
        for a in self.actors:
            ray.kill(a)
