"""Trainer checkpoints in megatron's distributed-checkpoint format (``torch_dist``).

A checkpoint directory holds:
  model + optimizer    sharded by ``megatron.core.dist_checkpointing`` (optimizer state "fully reshardable", so
                       it can be loaded with another TP/PP/DP layout)
  scheduler, step      common state
  rng                  one object per rank (python, numpy, torch CPU/CUDA and megatron's tracker states)
  extra                caller state (rollout id, data cursor ...), also written to ``trainer_state.json``
  args, checkpoint_version, iteration
                       what megatron-LM's ``common.pt`` carries (``megatron_args``): slime's
                       ``tools/convert_torch_dist_to_hf.py --input-dir CKPT`` reads the architecture from ``args``
``latest_checkpointed_iteration.txt`` in the parent directory names the newest one (the folder's name; megatron-LM
writes an iteration number or ``release`` there: ``resolve_checkpoint_dir`` reads all three forms).
Writes go to a temporary directory renamed into place, so an interrupted save never leaves a half checkpoint.

The megatron layout (megatron-LM's ``save_checkpoint`` with ``--ckpt-format torch_dist``, which slime calls, and
what ``longtrace convert hf-to-mcore`` writes):

  DIR/latest_checkpointed_iteration.txt   "release", or the iteration number ("12")
  DIR/release/  or  DIR/iter_0000012/     the distributed checkpoint: metadata.json, .metadata, __*_*.distcp,
                                          common.pt ({"args": Namespace, "checkpoint_version": 3.0, "iteration"...})

Model tensors are stored under GPTModel's own sharded keys (megatron-LM unwraps DDP / Float16Module before
``sharded_state_dict``; no "module." prefix), decoder layers stacked along a leading layer axis
(``singleton_local_shards`` False), optimizer state under ``optimizer.*``, RNG / rerun state under ``*_state``.
"""
from __future__ import annotations

import argparse
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
RELEASE = "release"  # megatron's folder (and tracker content) for a checkpoint that is not a training iteration
CHECKPOINT_VERSION = 3.0  # megatron-LM's generate_state_dict: the current checkpoint format version
# Optimizer state in a canonical per-parameter layout: reloadable with another TP / PP / DP layout.
METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}
# The model's sharded keys as megatron-LM (and so slime) writes them: layers stacked on a leading axis, experts on
# the next (singleton_local_shards False, what megatron-LM's _build_sharded_state_dict_metadata sets).
MODEL_METADATA = {"singleton_local_shards": False}


def iteration_dir(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The distributed-checkpoint folder that ``path`` names: a folder with a tracker file
    (``latest_checkpointed_iteration.txt`` holding ``release``, an iteration number, or, for this trainer's saves,
    the folder's name), or a distributed checkpoint itself (``metadata.json``: ``DIR/release``, ``DIR/iter_0000012``,
    or the flat folder older ``longtrace convert`` versions wrote)."""
    from megatron.core.dist_checkpointing import check_is_distributed_checkpoint

    path = Path(path)
    tracker = path / LATEST
    if tracker.is_file():
        text = tracker.read_text().strip()
        name = iteration_dir(int(text)) if text.isdigit() else text
        ckpt = path / name
        if not check_is_distributed_checkpoint(str(ckpt)):
            raise FileNotFoundError(f"{tracker} names {name!r}, but {ckpt} is not a distributed checkpoint "
                                    "(no metadata.json)")
        return ckpt
    if path.is_dir() and check_is_distributed_checkpoint(str(path)):
        return path
    raise FileNotFoundError(f"{path} is neither a megatron checkpoint directory (no {LATEST}) nor a distributed "
                            "checkpoint (no metadata.json)")


def megatron_args(arch, par, dtype: torch.dtype, world_size: int, **overrides: Any) -> argparse.Namespace:
    """megatron-LM's ``args`` for ``common.pt``: the fields under megatron-LM's argument names (those slime's model
    scripts set) that readers of a torch_dist checkpoint take from it. slime's ``tools/convert_torch_dist_to_hf.py``
    reads num_layers, hidden_size, num_attention_heads, num_query_groups, kv_channels, vocab_size (to drop the
    padding rows), num_experts and q_lora_rank; megatron-LM's load_checkpoint reads the TP / PP / world / DP sizes,
    no_save_optim / no_save_rng, and compares num_layers, hidden_size, num_attention_heads and
    add_position_embedding with the run's (check_checkpoint_args)."""
    from .megatron_model import padded_vocab_size

    yarn = arch.yarn.megatron_attributes() if arch.yarn is not None else {}
    fields: dict[str, Any] = dict(
        # architecture
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_heads,
        group_query_attention=arch.num_kv_heads != arch.num_heads,
        num_query_groups=arch.num_kv_heads,
        kv_channels=arch.head_dim,
        vocab_size=arch.vocab_size,
        make_vocab_size_divisible_by=128,
        padded_vocab_size=padded_vocab_size(arch.vocab_size, par.tp),
        max_position_embeddings=arch.max_position_embeddings,
        position_embedding_type="yarn" if arch.yarn is not None else "rope",
        use_rotary_position_embeddings=True,
        add_position_embedding=True,  # megatron's default; RoPE models keep it (position_embedding_type decides)
        rotary_base=arch.rope_theta,
        rotary_percent=1.0,
        normalization="RMSNorm",
        norm_epsilon=arch.norm_eps,
        layernorm_epsilon=arch.norm_eps,
        swiglu=True,
        add_bias_linear=False,
        add_qkv_bias=arch.qkv_bias,
        qk_layernorm=arch.qk_norm,
        untie_embeddings_and_output_weights=not arch.tie_embeddings,
        multi_latent_attention=False,
        q_lora_rank=None,
        kv_lora_rank=None,
        num_experts=arch.num_experts,
        moe_ffn_hidden_size=arch.moe_ffn_hidden_size,
        moe_router_topk=arch.moe_topk,
        moe_router_score_function="softmax" if arch.num_experts else None,
        moe_router_pre_softmax=bool(arch.num_experts) and not arch.moe_norm_topk_prob,
        **yarn,
        # layout and precision of the writer
        tensor_model_parallel_size=par.tp,
        pipeline_model_parallel_size=par.pp,
        context_parallel_size=par.cp,
        expert_model_parallel_size=par.ep,
        expert_tensor_parallel_size=par.expert_tp,
        sequence_parallel=par.sequence_parallel,
        world_size=world_size,
        data_parallel_size=world_size // (par.tp * par.pp * par.cp),
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # checkpoint
        ckpt_format="torch_dist",
        use_dist_ckpt=True,
        no_save_optim=False,
        no_save_rng=False,
        consumed_train_samples=0,
        skipped_train_samples=0,
        consumed_valid_samples=0,
    )
    fields.update(overrides)
    return argparse.Namespace(**fields)


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
    # what megatron-LM's common.pt holds, so megatron tooling (slime's torch_dist -> HF converter) can read this
    state["args"] = megatron_args(trainer.arch, trainer.cfg.parallel, trainer.cfg.torch_dtype, dist.get_world_size())
    state["checkpoint_version"] = CHECKPOINT_VERSION
    state["iteration"] = trainer.step
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
    """The newest checkpoint under ``parent`` (via latest_checkpointed_iteration.txt: a folder name, as this trainer
    writes it, or megatron's iteration number / ``release``), or None."""
    marker = Path(parent) / LATEST
    if not marker.exists():
        return None
    text = marker.read_text().strip()
    path = Path(parent) / (iteration_dir(int(text)) if text.isdigit() else text)
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
