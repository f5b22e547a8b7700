"""Trainer checkpoints in megatron's distributed-checkpoint format (``torch_dist``).

A checkpoint directory holds:
  model + optimizer    sharded by ``megatron.core.dist_checkpointing`` (optimizer state "fully reshardable", so
                       it can be loaded with another TP/PP/DP layout)
  scheduler, step      common state
  rng                  one object per rank (python, numpy, torch CPU/CUDA and megatron's tracker states)
  extra                caller state (rollout id, data cursor ...), also written to ``trainer_state.json``
``latest_checkpointed_iteration.txt`` in the parent directory names the newest one, as megatron-LM does.
Writes go to a temporary directory renamed into place, so an interrupted save never leaves a half checkpoint.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from .trainer import MegatronTrainer

LATEST = "latest_checkpointed_iteration.txt"
# Optimizer state in a canonical per-parameter layout: reloadable with another TP / PP / DP layout.
METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    state = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _sharded_state(trainer: "MegatronTrainer", loading: bool, with_rng: bool = True) -> dict:
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    # the module inside DDP (DDP's own sharded_state_dict would prefix every key with "module.")
    state: dict[str, Any] = {"model": trainer.model.module.sharded_state_dict(metadata=METADATA)}
    state["optimizer"] = trainer.optimizer.sharded_state_dict(state, is_loading=loading, metadata=METADATA)
    world = dist.get_world_size()
    if with_rng:  # per rank, so only meaningful when resuming on the same number of ranks
        state["rng"] = ShardedObject("rng_state", _rng_state(), (world,), (dist.get_rank(),), replica_id=0)
    state["scheduler"] = trainer.scheduler.state_dict()
    state["step"] = trainer.step
    state["layout"] = {"tp": ps.get_tensor_model_parallel_world_size(), "pp": ps.get_pipeline_model_parallel_world_size(),
                       "world": world}
    return state


def save_trainer_checkpoint(trainer: "MegatronTrainer", ckpt_dir: Path, extra: dict) -> Path:
    from megatron.core import dist_checkpointing

    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = _sharded_state(trainer, loading=False)
    state["extra"] = extra
    dist_checkpointing.save(state, str(tmp), content_metadata=METADATA)
    dist.barrier()
    if dist.get_rank() == 0:
        meta = {"step": trainer.step, "world": dist.get_world_size(), "extra": extra}
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=2, default=str))
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        tmp.rename(ckpt_dir)
        (ckpt_dir.parent / LATEST).write_text(ckpt_dir.name)
    dist.barrier()
    return ckpt_dir


def latest_checkpoint(parent: str | Path) -> Path | None:
    """The newest checkpoint under ``parent`` (via latest_checkpointed_iteration.txt), or None."""
    marker = Path(parent) / LATEST
    if not marker.exists():
        return None
    path = Path(parent) / marker.read_text().strip()
    return path if path.is_dir() else None


def _materialise_optimizer_state(optimizer) -> None:
    """A fresh distributed optimizer has no Adam state to load into; megatron's own remedy is one step with zero
    gradients (the values are overwritten by the checkpoint right after)."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if hasattr(opt, "_init_optimizer_states_with_dummy_values") and not opt.optimizer.state:
            opt._init_optimizer_states_with_dummy_values()


def load_trainer_checkpoint(trainer: "MegatronTrainer", ckpt_dir: Path) -> dict:
    from megatron.core import dist_checkpointing

    ckpt_dir = Path(ckpt_dir)
    meta_file = ckpt_dir / "trainer_state.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{ckpt_dir} is not a complete trainer checkpoint (no trainer_state.json)")
    meta = json.loads(meta_file.read_text())
    same_world = meta["world"] == dist.get_world_size()
    _materialise_optimizer_state(trainer.optimizer)
    state = _sharded_state(trainer, loading=True, with_rng=same_world)
    state["extra"] = {}
    loaded = dist_checkpointing.load(state, str(ckpt_dir))
    trainer.model.module.load_state_dict(loaded["model"])
    trainer.optimizer.load_state_dict(loaded["optimizer"])
    trainer.scheduler.load_state_dict(loaded["scheduler"])
    trainer.step = int(loaded["step"])
    if same_world:
        _set_rng_state(loaded["rng"])
    return meta["extra"]
