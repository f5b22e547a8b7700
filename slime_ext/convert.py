"""``longtrace convert``: Hugging Face checkpoints <-> megatron distributed checkpoints (torch_dist).

    longtrace convert hf-to-mcore --hf models/Qwen3-4B --out ckpt/qwen3-4b-mcore
    longtrace convert mcore-to-hf --mcore ckpt/qwen3-4b-mcore --out models/qwen3-4b-export
    torchrun --nproc_per_node 8 -m slime_ext.convert hf-to-mcore --hf ... --out ... --tp 4 --pp 2

A megatron distributed checkpoint does not depend on the TP/PP layout that wrote it, so one process is enough
unless the model does not fit its memory. The mcore directory also gets the HF config and tokenizer files, so it
is self-describing. Weights keep their dtype (default: the HF config's), so HF -> mcore -> HF is bit-exact.
The trainer can start from either (``--hf-checkpoint`` for HF, ``--mcore-checkpoint`` for this format).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .hf_weights import copy_hf_side_files, export_hf_checkpoint, load_hf_weights
from .megatron_model import ModelArch, ParallelConfig, have_transformer_engine, transformer_config

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _config_dtype(model_dir: Path) -> torch.dtype:
    config = json.loads((model_dir / "config.json").read_text())
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def _model(model_dir: Path, par: ParallelConfig, dtype: torch.dtype | None):
    from .trainer import build_stage_model, init_megatron

    arch = ModelArch.from_hf_config(model_dir)
    init_megatron(arch, par, seed=0, training=False)
    use_te = have_transformer_engine()
    tcfg = transformer_config(arch, par, params_dtype=dtype or _config_dtype(model_dir), use_te=use_te)
    return arch, build_stage_model(arch, tcfg, use_te)


def hf_to_mcore(hf_dir: str | Path, out_dir: str | Path, par: ParallelConfig = ParallelConfig(),
                dtype: torch.dtype | None = None) -> Path:
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    hf_dir, out = Path(hf_dir), Path(out_dir)
    arch, model = _model(hf_dir, par, dtype)
    load_hf_weights(model, hf_dir, arch)
    if dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(out))
    if dist.get_rank() == 0:
        copy_hf_side_files(hf_dir, out)
    dist.barrier()
    return out


def mcore_to_hf(mcore_dir: str | Path, out_dir: str | Path, par: ParallelConfig = ParallelConfig(),
                dtype: torch.dtype | None = None) -> Path:
    from .trainer import load_mcore_model

    mcore_dir = Path(mcore_dir)
    arch, model = _model(mcore_dir, par, dtype)
    load_mcore_model(model, mcore_dir)
    return export_hf_checkpoint(model, arch, out_dir, mcore_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="longtrace convert", description="HF <-> megatron distributed checkpoints.")
    sub = p.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors -> megatron distributed checkpoint")
    a.add_argument("--hf", required=True, type=Path)
    b = sub.add_parser("mcore-to-hf", help="megatron distributed checkpoint -> HF safetensors")
    b.add_argument("--mcore", required=True, type=Path)
    for s in (a, b):
        s.add_argument("--out", required=True, type=Path)
        s.add_argument("--tp", type=int, default=1)
        s.add_argument("--pp", type=int, default=1)
        s.add_argument("--ep", type=int, default=1)
        s.add_argument("--etp", type=int, default=None, help="expert tensor parallelism (default: --tp)")
        s.add_argument("--dtype", choices=sorted(DTYPES), help="model dtype (default: the checkpoint's config)")
    args = p.parse_args(argv)
    par = ParallelConfig(tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp)
    dtype = DTYPES[args.dtype] if args.dtype else None
    if args.direction == "hf-to-mcore":
        out = hf_to_mcore(args.hf, args.out, par, dtype)
    else:
        out = mcore_to_hf(args.mcore, args.out, par, dtype)
    import torch.distributed as dist

    if dist.get_rank() == 0:
        print(f"wrote {out}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
