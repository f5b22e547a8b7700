"""``longtrace convert``: Hugging Face checkpoints <-> megatron distributed checkpoints (torch_dist).

    longtrace convert hf-to-mcore --hf models/Qwen3-4B --out ckpt/qwen3-4b-mcore
    longtrace convert mcore-to-hf --mcore ckpt/qwen3-4b-mcore --out models/qwen3-4b-export
    longtrace convert mcore-to-hf --mcore slime-save-dir --hf-config models/Qwen3-4B --out models/step-12
    torchrun --nproc_per_node 8 -m slime_ext.convert hf-to-mcore --hf ... --out ... --tp 4 --pp 2

``hf-to-mcore`` writes the layout megatron-LM's ``save_checkpoint`` writes (what slime's ``--load`` /
``--ref-load`` and its ``tools/convert_torch_dist_to_hf.py`` read), as a release checkpoint:

  OUT/latest_checkpointed_iteration.txt   "release" (slime takes a folder with this file for a megatron checkpoint)
  OUT/release/                            metadata.json, .metadata, __*_*.distcp, common.pt with megatron-LM's
                                          "args" (architecture, layout), "checkpoint_version" 3.0, "iteration" 0
  OUT/config.json, tokenizer files        the HF side files (slime ignores them once the tracker file is there)

The trainer's ``--ref-load OUT`` (``--mcore-checkpoint``) follows the tracker the same way.

``mcore-to-hf`` reads that layout, slime's training checkpoints (``--save`` folders: the tracker holds the
iteration, iter_XXXXXXX/ the shards, optimizer and RNG state beside the weights), a single checkpoint folder
(``.../release``, ``.../iter_0000012``, this trainer's ``iter_*`` saves, older flat ``longtrace convert`` output),
and checks that the checkpoint's weights and the model built from the HF config match one for one. The config
comes from ``--hf-config`` or a config.json beside the checkpoint (slime's checkpoints have none: pass the model's
HF directory, slime's ``--hf-checkpoint``).

A megatron distributed checkpoint does not depend on the TP/PP layout that wrote it, so one process is enough
unless the model does not fit its memory. Weights keep their dtype (hf-to-mcore: the HF config's; mcore-to-hf: the
checkpoint's), so HF -> mcore -> HF is bit-exact. The trainer can start from either (``--hf-checkpoint`` for HF,
``--ref-load`` for this format).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT_VERSION, LATEST, MODEL_METADATA, RELEASE, megatron_args, resolve_checkpoint_dir
from .hf_weights import copy_hf_side_files, export_hf_checkpoint, load_hf_weights
from .megatron_model import ModelArch, ParallelConfig, have_transformer_engine, transformer_config

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# what older versions wrote straight into OUT (the flat layout), removed when converting into the same OUT again
FLAT_LAYOUT_FILES = ("metadata.json", "common.pt", ".metadata")


def _config_dtype(model_dir: Path) -> torch.dtype:
    config = json.loads((model_dir / "config.json").read_text())
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def _model(model_dir: Path, par: ParallelConfig, dtype: torch.dtype):
    from .trainer import build_stage_model, init_megatron

    arch = ModelArch.from_hf_config(model_dir)
    init_megatron(arch, par, seed=0, training=False)
    use_te = have_transformer_engine()
    tcfg = transformer_config(arch, par, params_dtype=dtype, use_te=use_te)
    model = build_stage_model(arch, tcfg, use_te)
    # every tensor in the model dtype, norms included, as megatron's Float16Module casts the model for bf16 / fp16
    # training (so slime's and this trainer's checkpoints store them): params_dtype alone leaves the norms fp32
    return arch, model.to(dtype)


# ------------------------------------------------------------------------------------------------ HF -> megatron
def hf_to_mcore(hf_dir: str | Path, out_dir: str | Path, par: ParallelConfig = ParallelConfig(),
                dtype: torch.dtype | None = None) -> Path:
    """Write ``hf_dir``'s weights as a megatron release checkpoint under ``out_dir`` (layout: module docstring);
    returns ``out_dir``. Collective over all ranks."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    hf_dir, out = Path(hf_dir), Path(out_dir)
    dtype = dtype or _config_dtype(hf_dir)
    arch, model = _model(hf_dir, par, dtype)
    load_hf_weights(model, hf_dir, arch)
    ckpt, tmp = out / RELEASE, out / f"{RELEASE}.tmp"
    if dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    state = {
        "model": model.sharded_state_dict(metadata=dict(MODEL_METADATA)),
        # common.pt as megatron-LM writes it (generate_state_dict); a release checkpoint has no optimizer / RNG
        "args": megatron_args(arch, par, dtype, dist.get_world_size(), no_save_optim=True, no_save_rng=True),
        "checkpoint_version": CHECKPOINT_VERSION,
        "iteration": 0,
        "num_floating_point_operations_so_far": 0,
    }
    dist_checkpointing.save(state, str(tmp), content_metadata=dict(MODEL_METADATA))
    dist.barrier()
    if dist.get_rank() == 0:
        for name in FLAT_LAYOUT_FILES + (LATEST,):
            (out / name).unlink(missing_ok=True)
        for stale in out.glob("*.distcp"):  # shards of the flat layout older versions wrote into OUT
            stale.unlink()
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)
        copy_hf_side_files(hf_dir, out)
        (out / LATEST).write_text(RELEASE)  # last: the folder is a megatron checkpoint once this exists
    dist.barrier()
    return out


# ------------------------------------------------------------------------------------------------ megatron -> HF
def _stored_tensors(ckpt: Path) -> dict[str, torch.dtype]:
    """The tensors a distributed checkpoint stores (torch's .metadata): key -> dtype."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(str(ckpt)).read_metadata()
    return {k: v.properties.dtype for k, v in metadata.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)}


def _is_weight_key(key: str) -> bool:
    """Model weights among a megatron checkpoint's keys: not optimizer state (``optimizer.*``) nor the RNG, rerun
    and TE ``_extra_state`` objects (the rule slime's torch_dist -> HF converter applies)."""
    return not key.startswith("optimizer") and "_state" not in key


def _checkpoint_dtype(ckpt: Path) -> torch.dtype | None:
    dtypes = {d for k, d in _stored_tensors(ckpt).items() if _is_weight_key(k)}
    return dtypes.pop() if len(dtypes) == 1 else None


def _find_config(mcore: Path, ckpt: Path) -> Path:
    for d in (mcore, ckpt, ckpt.parent):
        if (d / "config.json").is_file():
            return d
    raise FileNotFoundError(
        f"no config.json in {mcore} or beside {ckpt}: pass --hf-config DIR, the HF model directory the checkpoint "
        "was made from (for a slime checkpoint, its --hf-checkpoint)")


def load_checkpoint_weights(model, ckpt: str | Path) -> None:
    """Load the model weights of a megatron distributed checkpoint (model-only or a full training checkpoint:
    optimizer, RNG and other state are not read, nor is common.pt) into this rank's (unwrapped) GPTModel.
    Collective. Refuses a checkpoint whose weights and the model's do not match one for one (e.g. a config.json
    of another model: a checkpoint with more layers would otherwise export a truncated model)."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

    class WeightsOnly(TorchCommonLoadStrategy):
        """No common.pt: its ``args`` pickle may name classes of megatron-LM / slime, not installed here."""

        def load_common(self, checkpoint_dir):
            return {}

    ckpt = Path(ckpt)
    # TE's _extra_state (FP8 bookkeeping) is no weight; checkpoints written without TE have none
    sharded = {k: v for k, v in model.sharded_state_dict(metadata=dict(MODEL_METADATA)).items()
               if not k.endswith("_extra_state")}
    wanted = {v.key for v in sharded.values()}
    stored = {k for k in _stored_tensors(ckpt) if _is_weight_key(k)}
    everywhere: list = [None] * dist.get_world_size()
    dist.all_gather_object(everywhere, sorted(wanted))  # pipeline stages hold different keys
    problems = []
    missing = sorted(wanted - stored)
    if missing:
        problems.append(f"weights the model needs are not in the checkpoint: {missing[:8]}")
    extra = sorted(stored - set().union(*map(set, everywhere)))
    if extra:
        problems.append(f"the checkpoint has weights the model has no place for: {extra[:8]}")
    if problems:
        raise ValueError(f"{ckpt} does not match the model built from the HF config ("
                         + "; ".join(problems) + "); is --hf-config the model this checkpoint was trained from?")
    loaded = dist_checkpointing.load({"model": sharded}, str(ckpt), common_strategy=WeightsOnly())
    result = model.load_state_dict(loaded["model"], strict=False)
    left = [k for k in result.missing_keys if not k.endswith("_extra_state")] + list(result.unexpected_keys)
    if left:
        raise ValueError(f"loading {ckpt} left parameters unset or unused: {left[:8]}")


def mcore_to_hf(mcore_dir: str | Path, out_dir: str | Path, par: ParallelConfig = ParallelConfig(),
                dtype: torch.dtype | None = None, hf_config: str | Path | None = None) -> Path:
    """Export a megatron checkpoint (any layout ``checkpoint.resolve_checkpoint_dir`` accepts) as HF safetensors,
    with the config and tokenizer of ``hf_config`` (default: the config.json beside the checkpoint)."""
    mcore_dir = Path(mcore_dir)
    ckpt = resolve_checkpoint_dir(mcore_dir)
    config_dir = Path(hf_config) if hf_config else _find_config(mcore_dir, ckpt)
    dtype = dtype or _checkpoint_dtype(ckpt) or _config_dtype(config_dir)
    arch, model = _model(config_dir, par, dtype)
    load_checkpoint_weights(model, ckpt)
    return export_hf_checkpoint(model, arch, out_dir, config_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="longtrace convert", description="HF <-> megatron distributed checkpoints.")
    sub = p.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors -> megatron torch_dist checkpoint (megatron-LM / slime layout)")
    a.add_argument("--hf", required=True, type=Path)
    b = sub.add_parser("mcore-to-hf", help="megatron torch_dist checkpoint (ours, slime's, megatron-LM's) -> HF safetensors")
    b.add_argument("--mcore", required=True, type=Path,
                   help="a checkpoint directory (with latest_checkpointed_iteration.txt) or one checkpoint folder")
    b.add_argument("--hf-config", type=Path, default=None,
                   help="HF directory with the model's config.json and tokenizer (default: beside the checkpoint)")
    for s in (a, b):
        s.add_argument("--out", required=True, type=Path)
        s.add_argument("--tp", type=int, default=1)
        s.add_argument("--pp", type=int, default=1)
        s.add_argument("--ep", type=int, default=1)
        s.add_argument("--etp", type=int, default=None, help="expert tensor parallelism (default: --tp)")
        s.add_argument("--dtype", choices=sorted(DTYPES),
                       help="model dtype (default: hf-to-mcore the HF config's, mcore-to-hf the checkpoint's)")
    args = p.parse_args(argv)
    par = ParallelConfig(tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp)
    dtype = DTYPES[args.dtype] if args.dtype else None
    if args.direction == "hf-to-mcore":
        out = hf_to_mcore(args.hf, args.out, par, dtype)
    else:
        out = mcore_to_hf(args.mcore, args.out, par, dtype, args.hf_config)
    import torch.distributed as dist

    if dist.get_rank() == 0:
        print(f"wrote {out}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
