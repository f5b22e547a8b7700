"""Hugging Face safetensors <-> Megatron-core GPTModel parameters, for any TP / PP / EP layout.

Layout rules (Megatron side, per TP rank r of t):
  embedding / output layer   vocab padded (padded_vocab_size) and split along the vocab: rows [r*V/t, (r+1)*V/t)
  linear_qkv                 per query group g: [q heads of g; k_g; v_g] rows; the groups are split across ranks
  linear_fc1 (SwiGLU)        [gate_r; up_r]: this rank's slice of gate, then of up (so concatenating shards does
                             NOT give [gate; up])
  linear_proj, linear_fc2    split along the input dimension
  norms, q/k norms, router   replicated
  experts (MoE)              expert e lives on EP rank e // (E/ep); its fc1/fc2 follow the dense rules over the
                             expert-TP ranks (ETP, which defaults to TP) instead of the TP ranks
Layers are numbered per pipeline stage in Megatron and globally in HF: global = stage offset + local.

Loading reads only this rank's slice of each tensor (``safe_open(...).get_slice``), tensor by tensor. Export
gathers TP shards one tensor at a time and yields HF-named tensors (vocab padding stripped): ``longtrace
convert``, HF checkpoints at save time, and the rollout weight sync all use this one mapping.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch

from .megatron_model import ModelArch


@dataclass(frozen=True)
class Shard:
    """Where this process sits in the model-parallel layout."""

    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1
    ep_rank: int = 0
    ep_size: int = 1
    etp_rank: int | None = None  # expert tensor parallelism; None: the experts follow tp
    etp_size: int | None = None

    @classmethod
    def current(cls) -> "Shard":
        from megatron.core import parallel_state as ps

        return cls(
            ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size(),
            ps.get_pipeline_model_parallel_rank(), ps.get_pipeline_model_parallel_world_size(),
            ps.get_expert_model_parallel_rank(), ps.get_expert_model_parallel_world_size(),
            ps.get_expert_tensor_parallel_rank(), ps.get_expert_tensor_parallel_world_size(),
        )

    @property
    def expert(self) -> "Shard":
        """The shard as the expert weights see it: their TP rank and size are the expert-TP ones."""
        if self.etp_size is None:
            return self
        return replace(self, tp_rank=self.etp_rank, tp_size=self.etp_size)

    def layer_offset(self, arch: ModelArch) -> int:
        return self.pp_rank * (arch.num_layers // self.pp_size)


# ---------------------------------------------------------------------------------------------------------------
# HF tensor readers: ``read(name, dim, start, stop)`` returns rows/cols [start, stop) along ``dim`` (whole tensor
# when dim is None), without loading the rest.


class SafetensorsReader:
    def __init__(self, hf_dir: str | Path):
        from safetensors import safe_open

        self.dir = Path(hf_dir)
        index = self.dir / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
        else:
            files = sorted(self.dir.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"no *.safetensors in {self.dir}")
            weight_map = {}
            for f in files:
                with safe_open(f, "pt") as h:
                    weight_map.update({k: f.name for k in h.keys()})
        self.weight_map = weight_map
        self._handles: dict[str, object] = {}
        self._safe_open = safe_open

    def _handle(self, name: str):
        if name not in self.weight_map:
            raise KeyError(f"tensor {name!r} not found in {self.dir}")
        fname = self.weight_map[name]
        if fname not in self._handles:
            self._handles[fname] = self._safe_open(self.dir / fname, "pt")
        return self._handles[fname]

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def shape(self, name: str) -> list[int]:
        return list(self._handle(name).get_slice(name).get_shape())

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int | None = None) -> torch.Tensor:
        sl = self._handle(name).get_slice(name)
        if dim is None:
            return sl[:]
        index = [slice(None)] * len(sl.get_shape())
        index[dim] = slice(start, stop)
        return sl[tuple(index)]


# ---------------------------------------------------------------------------------------------------------------
# HF -> Megatron: build this rank's local tensor for each Megatron parameter name.


def _split_range(n: int, parts: int, rank: int) -> tuple[int, int]:
    if n % parts:
        raise ValueError(f"cannot split {n} evenly into {parts} parts")
    size = n // parts
    return rank * size, (rank + 1) * size


def _vocab_rows(reader, name: str, arch: ModelArch, padded: int, shard: Shard) -> torch.Tensor:
    start, stop = _split_range(padded, shard.tp_size, shard.tp_rank)
    real_stop = min(stop, arch.vocab_size)
    hidden = reader.shape(name)[1]
    rows = reader.read(name, 0, start, real_stop) if real_stop > start else torch.empty(0, hidden)
    pad = (stop - start) - rows.shape[0]
    if pad:
        rows = torch.cat([rows, torch.zeros(pad, hidden, dtype=rows.dtype)])
    return rows


def _qkv(reader, prefix: str, arch: ModelArch, shard: Shard, suffix: str) -> torch.Tensor:
    """Local linear_qkv weight (suffix 'weight') or bias ('bias'): this rank's query groups, [q; k; v] per group."""
    hd, groups = arch.head_dim, arch.num_kv_heads
    heads_per_group = arch.num_heads // groups
    g0, g1 = _split_range(groups, shard.tp_size, shard.tp_rank)
    q = reader.read(f"{prefix}.q_proj.{suffix}", 0, g0 * heads_per_group * hd, g1 * heads_per_group * hd)
    k = reader.read(f"{prefix}.k_proj.{suffix}", 0, g0 * hd, g1 * hd)
    v = reader.read(f"{prefix}.v_proj.{suffix}", 0, g0 * hd, g1 * hd)
    n = g1 - g0
    rest = q.shape[1:]
    per_group = torch.cat(
        [q.reshape(n, heads_per_group * hd, *rest), k.reshape(n, hd, *rest), v.reshape(n, hd, *rest)], dim=1
    )
    return per_group.reshape(n * (heads_per_group + 2) * hd, *rest)


def _glu_fc1(reader, gate: str, up: str, shard: Shard) -> torch.Tensor:
    ffn = reader.shape(gate)[0]
    a, b = _split_range(ffn, shard.tp_size, shard.tp_rank)
    return torch.cat([reader.read(gate, 0, a, b), reader.read(up, 0, a, b)])


def _cols(reader, name: str, shard: Shard) -> torch.Tensor:
    a, b = _split_range(reader.shape(name)[1], shard.tp_size, shard.tp_rank)
    return reader.read(name, 1, a, b)


_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_EXPERT = re.compile(r"^mlp\.experts\.(?:local_experts\.(\d+)\.(linear_fc[12])\.weight|(linear_fc[12])\.weight(\d+))$")


def megatron_tensor_from_hf(reader, mname: str, arch: ModelArch, padded_vocab: int, shard: Shard) -> torch.Tensor:
    """This rank's value of Megatron parameter ``mname`` (local spec or TE spec names)."""
    if mname == "embedding.word_embeddings.weight":
        return _vocab_rows(reader, "model.embed_tokens.weight", arch, padded_vocab, shard)
    if mname == "output_layer.weight":
        source = "model.embed_tokens.weight" if arch.tie_embeddings else "lm_head.weight"
        return _vocab_rows(reader, source, arch, padded_vocab, shard)
    if mname == "decoder.final_layernorm.weight":
        return reader.read("model.norm.weight")
    m = _LAYER.match(mname)
    if not m:
        raise KeyError(f"no HF mapping for Megatron parameter {mname!r}")
    layer = int(m.group(1)) + shard.layer_offset(arch)
    rest, hf = m.group(2), f"model.layers.{layer}"
    if rest in ("input_layernorm.weight", "self_attention.linear_qkv.layer_norm_weight"):
        return reader.read(f"{hf}.input_layernorm.weight")
    if rest in ("pre_mlp_layernorm.weight", "mlp.linear_fc1.layer_norm_weight"):
        return reader.read(f"{hf}.post_attention_layernorm.weight")
    if rest == "self_attention.linear_qkv.weight":
        return _qkv(reader, f"{hf}.self_attn", arch, shard, "weight")
    if rest == "self_attention.linear_qkv.bias":
        return _qkv(reader, f"{hf}.self_attn", arch, shard, "bias")
    if rest == "self_attention.q_layernorm.weight":
        return reader.read(f"{hf}.self_attn.q_norm.weight")
    if rest == "self_attention.k_layernorm.weight":
        return reader.read(f"{hf}.self_attn.k_norm.weight")
    if rest == "self_attention.linear_proj.weight":
        return _cols(reader, f"{hf}.self_attn.o_proj.weight", shard)
    if rest == "mlp.linear_fc1.weight":
        return _glu_fc1(reader, f"{hf}.mlp.gate_proj.weight", f"{hf}.mlp.up_proj.weight", shard)
    if rest == "mlp.linear_fc2.weight":
        return _cols(reader, f"{hf}.mlp.down_proj.weight", shard)
    if rest == "mlp.router.weight":
        return reader.read(f"{hf}.mlp.gate.weight")
    e = _EXPERT.match(rest)
    if e:
        local, kind = (int(e.group(1)), e.group(2)) if e.group(1) is not None else (int(e.group(4)), e.group(3))
        expert = shard.ep_rank * (arch.num_experts // shard.ep_size) + local
        base = f"{hf}.mlp.experts.{expert}"
        es = shard.expert  # split over the expert-TP ranks
        if f"{base}.down_proj.weight" in reader:  # hub layout: one tensor per expert and projection
            if kind == "linear_fc1":
                return _glu_fc1(reader, f"{base}.gate_proj.weight", f"{base}.up_proj.weight", es)
            return _cols(reader, f"{base}.down_proj.weight", es)
        return _fused_expert(reader, f"{hf}.mlp.experts", expert, kind, es)
    raise KeyError(f"no HF mapping for Megatron parameter {mname!r}")


def _fused_expert(reader, prefix: str, expert: int, kind: str, shard: Shard) -> torch.Tensor:
    """transformers >= 5 saves experts stacked: gate_up_proj [E, 2F, H] ([gate; up]) and down_proj [E, H, F]."""
    if kind == "linear_fc1":
        both = reader.read(f"{prefix}.gate_up_proj", 0, expert, expert + 1)[0]
        gate, up = both.chunk(2, dim=0)
        a, b = _split_range(gate.shape[0], shard.tp_size, shard.tp_rank)
        return torch.cat([gate[a:b], up[a:b]])
    down = reader.read(f"{prefix}.down_proj", 0, expert, expert + 1)[0]
    a, b = _split_range(down.shape[1], shard.tp_size, shard.tp_rank)
    return down[:, a:b]


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module, hf_dir: str | Path, arch: ModelArch, shard: Shard | None = None) -> int:
    """Copy an HF checkpoint into this rank's (unwrapped) GPTModel, tensor by tensor; returns tensors loaded."""
    from .megatron_model import padded_vocab_size

    shard = shard or Shard.current()
    reader = SafetensorsReader(hf_dir)
    padded = padded_vocab_size(arch.vocab_size, shard.tp_size)
    loaded = 0
    for name, param in model.named_parameters():
        value = megatron_tensor_from_hf(reader, name, arch, padded, shard)
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{name}: HF gives shape {tuple(value.shape)}, the Megatron parameter is {tuple(param.shape)}")
        param.copy_(value.to(param.dtype))
        loaded += 1
    return loaded


# ---------------------------------------------------------------------------------------------------------------
# Megatron -> HF: each Megatron parameter (gathered over TP) becomes one or more HF tensors.


def is_expert_param(mname: str) -> bool:
    """Whether a Megatron parameter belongs to a routed expert (sharded over expert-TP and EP, not TP)."""
    m = _LAYER.match(mname)
    return bool(m and _EXPERT.match(m.group(2)))


def hf_tensors_from_megatron(
    mname: str, full: torch.Tensor, arch: ModelArch, layer_offset: int, tp_size: int, ep_rank: int = 0, ep_size: int = 1,
    etp_size: int | None = None,
) -> list[tuple[str, torch.Tensor]]:
    """HF (name, tensor) pairs for Megatron parameter ``mname`` whose TP shards (expert-TP shards for experts,
    ``etp_size`` defaulting to ``tp_size``) were concatenated along their split dimension into ``full`` (in rank
    order)."""
    if mname == "embedding.word_embeddings.weight":
        return [("model.embed_tokens.weight", full[: arch.vocab_size])]
    if mname == "output_layer.weight":
        return [] if arch.tie_embeddings else [("lm_head.weight", full[: arch.vocab_size])]
    if mname == "decoder.final_layernorm.weight":
        return [("model.norm.weight", full)]
    m = _LAYER.match(mname)
    if not m:
        raise KeyError(f"no HF mapping for Megatron parameter {mname!r}")
    hf = f"model.layers.{int(m.group(1)) + layer_offset}"
    rest = m.group(2)
    simple = {
        "input_layernorm.weight": "input_layernorm.weight",
        "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
        "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
        "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
        "self_attention.q_layernorm.weight": "self_attn.q_norm.weight",
        "self_attention.k_layernorm.weight": "self_attn.k_norm.weight",
        "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
        "mlp.linear_fc2.weight": "mlp.down_proj.weight",
        "mlp.router.weight": "mlp.gate.weight",
    }
    if rest in simple:
        return [(f"{hf}.{simple[rest]}", full)]
    if rest in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        suffix = rest.rsplit(".", 1)[1]
        hd, groups = arch.head_dim, arch.num_kv_heads
        hpg = arch.num_heads // groups
        per_group = full.reshape(groups, (hpg + 2) * hd, *full.shape[1:])
        q, k, v = per_group.split([hpg * hd, hd, hd], dim=1)
        rest_shape = full.shape[1:]
        return [
            (f"{hf}.self_attn.q_proj.{suffix}", q.reshape(groups * hpg * hd, *rest_shape)),
            (f"{hf}.self_attn.k_proj.{suffix}", k.reshape(groups * hd, *rest_shape)),
            (f"{hf}.self_attn.v_proj.{suffix}", v.reshape(groups * hd, *rest_shape)),
        ]
    if rest == "mlp.linear_fc1.weight":
        gate, up = _unshard_glu(full, tp_size)
        return [(f"{hf}.mlp.gate_proj.weight", gate), (f"{hf}.mlp.up_proj.weight", up)]
    e = _EXPERT.match(rest)
    if e:
        local, kind = (int(e.group(1)), e.group(2)) if e.group(1) is not None else (int(e.group(4)), e.group(3))
        base = f"{hf}.mlp.experts.{ep_rank * (arch.num_experts // ep_size) + local}"
        if kind == "linear_fc1":
            gate, up = _unshard_glu(full, tp_size if etp_size is None else etp_size)
            return [(f"{base}.gate_proj.weight", gate), (f"{base}.up_proj.weight", up)]
        return [(f"{base}.down_proj.weight", full)]
    raise KeyError(f"no HF mapping for Megatron parameter {mname!r}")


def _unshard_glu(full: torch.Tensor, tp_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[g0; u0; g1; u1; ...] (TP shards concatenated) -> (gate, up)."""
    shards = full.chunk(tp_size, dim=0)
    halves = [s.chunk(2, dim=0) for s in shards]
    return torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])


def tp_split_dim(mname: str, param: torch.Tensor) -> int | None:
    """The dimension along which a Megatron parameter is split over TP ranks (None when replicated)."""
    if getattr(param, "tensor_model_parallel", False):
        return getattr(param, "partition_dim", 0)
    return None


@torch.no_grad()
def iter_hf_tensors(model: torch.nn.Module, arch: ModelArch, shard: Shard | None = None, tp_group=None,
                    dtype: torch.dtype | None = None, source: str = "param", etp_group=None,
                    only: str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named full tensors of this pipeline stage (and EP rank), one Megatron parameter at a time.

    ``source="grad"`` yields the accumulated gradients (megatron DDP's ``main_grad``) in the same layout.
    Collective: every TP rank must iterate in step (each parameter is all-gathered over TP; expert parameters
    over the expert-TP group, ``etp_group``, megatron's when not given). ``only="dense"`` / ``"experts"``
    restricts the parameters (and the collectives) to one kind. The tied output layer is skipped (the embedding
    carries it)."""
    import torch.distributed as dist

    shard = shard or Shard.current()
    offset = shard.layer_offset(arch)
    for name, param in model.named_parameters():
        if name == "output_layer.weight" and arch.tie_embeddings:
            continue
        expert = is_expert_param(name)
        if only is not None and only != ("experts" if expert else "dense"):
            continue
        size, group = (shard.expert.tp_size, etp_group) if expert else (shard.tp_size, tp_group)
        if expert and size > 1 and group is None:
            from megatron.core import parallel_state as ps

            group = ps.get_expert_tensor_parallel_group()
        dim = tp_split_dim(name, param)
        local = param.main_grad if source == "grad" else param.detach()
        if dim is not None and size > 1:
            parts = [torch.empty_like(local) for _ in range(size)]
            dist.all_gather(parts, local.contiguous(), group=group)
            full = torch.cat(parts, dim=dim)
        else:
            full = local
        for hf_name, tensor in hf_tensors_from_megatron(name, full, arch, offset, shard.tp_size, shard.ep_rank, shard.ep_size,
                                                        shard.expert.tp_size):
            yield hf_name, (tensor.to(dtype) if dtype is not None else tensor).contiguous()


# ---------------------------------------------------------------------------------------------------------------
# Writing HF checkpoints, shard file by shard file (bounded memory).


class ShardedSafetensorsWriter:
    """Collects tensors and writes ``model-XXXXX.safetensors`` files of at most ``max_shard_bytes`` each."""

    def __init__(self, out_dir: str | Path, prefix: str = "model", max_shard_bytes: int = 2 << 30):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max = prefix, max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._bytes = 0
        self.weight_map: dict[str, str] = {}
        self._n = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self.weight_map or name in self._pending:
            raise ValueError(f"tensor {name} written twice")
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._bytes + size > self.max:
            self.flush()
        self._pending[name] = tensor.detach().cpu().contiguous()
        self._bytes += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self._pending:
            return
        self._n += 1
        fname = f"{self.prefix}-{self._n:05d}.safetensors"
        save_file(self._pending, str(self.out / fname), metadata={"format": "pt"})
        self.weight_map.update({k: fname for k in self._pending})
        self._pending, self._bytes = {}, 0


def write_index(out_dir: str | Path, weight_maps: list[dict[str, str]]) -> None:
    out = Path(out_dir)
    merged: dict[str, str] = {}
    for wm in weight_maps:
        for name, fname in wm.items():
            if name in merged:
                raise ValueError(f"tensor {name} written twice ({merged[name]}, {fname})")
            merged[name] = fname
    total = sum((out / f).stat().st_size for f in set(merged.values()))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(merged.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


_SIDE_FILES = ("config.json", "generation_config.json", "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json",
               "added_tokens.json", "chat_template*", "*.tiktoken")


def copy_hf_side_files(src: str | Path, dst: str | Path) -> None:
    """The config and tokenizer files of an HF directory (not its weights, nor anything else in it)."""
    import shutil

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for pattern in _SIDE_FILES:
        for f in src.glob(pattern):
            if f.is_file():
                shutil.copy2(f, dst / f.name)


def export_hf_checkpoint(model: torch.nn.Module, arch: ModelArch, out_dir: str | Path, side_files_from: str | Path,
                         dtype: torch.dtype | None = None, max_shard_bytes: int = 2 << 30, source: str = "param") -> Path:
    """Write an (unwrapped, possibly model-parallel) GPTModel as an HF checkpoint. Collective over all ranks.

    In each pipeline stage the dense tensors are written by TP rank 0 of DP/CP rank 0, and each EP rank's experts
    by its expert-TP rank 0 of expert-DP rank 0 (with expert TP != TP these can be other ranks); each writing rank
    has its own shard files. Global rank 0 writes the index and copies config + tokenizer from
    ``side_files_from``."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    out = Path(out_dir)
    shard = Shard.current()
    writer = ShardedSafetensorsWriter(out, prefix=f"model-pp{shard.pp_rank:02d}-rank{dist.get_rank():05d}",
                                      max_shard_bytes=max_shard_bytes)
    writes_dense = shard.tp_rank == 0 and ps.get_data_parallel_rank() == 0 and ps.get_context_parallel_rank() == 0
    writes_experts = shard.expert.tp_rank == 0 and ps.get_expert_data_parallel_rank() == 0
    for only, writes in (("dense", writes_dense), ("experts", writes_experts)):
        for name, tensor in iter_hf_tensors(model, arch, shard, ps.get_tensor_model_parallel_group(), dtype, source,
                                            ps.get_expert_tensor_parallel_group(), only=only):
            if writes:
                writer.add(name, tensor)
    writer.flush()
    maps: list = [None] * dist.get_world_size()
    dist.all_gather_object(maps, writer.weight_map or None)
    if dist.get_rank() == 0:
        write_index(out, [m for m in maps if m])
        copy_hf_side_files(side_files_from, out)
    dist.barrier()
    return out
