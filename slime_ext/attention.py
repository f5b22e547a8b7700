"""Core attention on PyTorch's own fused kernels, for megatron's layer spec where transformer-engine is absent.

    layer spec: the local spec with ``SDPAttention`` as ``self_attention.submodules.core_attention``
    (``megatron_model.layer_spec(arch, "sdpa")``; ``longtrace train --attention-backend sdpa``, the CPU default)

Megatron's local ``DotProductAttention`` materialises the [heads, T, T] scores and needs an explicit [T, T] mask for
packed sequences, so a packed micro-batch costs memory quadratic in its total length (the trainer capped it at 512
tokens). ``SDPAttention`` takes packed sequences in the THD layout megatron already uses with transformer-engine
(``PackedSeqParams`` with ``cu_seqlens``; megatron applies RoPE per sample from them) and runs
``torch.nn.functional.scaled_dot_product_attention`` causally on each sample: the flash / memory-efficient kernels on
GPUs, PyTorch's flash kernel on CPUs, grouped-query attention without repeating K/V, nothing of size T x T. It is
exact (no approximation), so it equals the local spec to float rounding (tests/test_trainer_megatron.py).

Not supported: context parallelism (ring attention is transformer-engine's), attention bias, sliding windows,
softmax variants other than the vanilla one. Those are refused at construction, by name.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megatron.core.transformer.module import MegatronModule


class SDPAttention(MegatronModule):
    """Drop-in for megatron's ``DotProductAttention`` (same constructor and forward signatures)."""

    def __init__(self, config, layer_number: int, attn_mask_type, attention_type: str, attention_dropout=None,
                 softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config)
        from megatron.core.transformer.utils import is_layer_window_attention
        from megatron.core.utils import divide

        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention has no context parallelism: use transformer-engine (--attention-backend te)")
        if is_layer_window_attention(config.window_size, config.window_attn_skip_freq, layer_number):
            raise ValueError("SDPAttention has no sliding-window attention")
        if getattr(config, "softmax_type", "vanilla") != "vanilla":
            raise ValueError(f"SDPAttention has no {config.softmax_type!r} softmax")
        if pg_collection is None:
            from megatron.core.process_groups_config import ProcessGroupCollection

            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp"])
        tp = pg_collection.tp.size()
        self.heads = divide(config.num_attention_heads, tp)
        self.groups = divide(config.num_query_groups, tp)
        self.head_dim = config.kv_channels
        # megatron: 1/sqrt(head_dim) (query-key layer scaling divides and the softmax multiplies back: net the same)
        self.scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [heads, L, d], k/v [groups, L, d] -> [heads, L, d], causal."""
        return F.scaled_dot_product_attention(
            q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), is_causal=True, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.heads != self.groups).squeeze(0)

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if attention_bias is not None:
            raise ValueError("SDPAttention takes no attention bias")
        if packed_seq_params is not None:  # THD: query [t, heads, d], key/value [t, groups, d]
            cu = packed_seq_params.cu_seqlens_q.tolist()
            parts = [self._sdpa(query[a:b].transpose(0, 1), key[a:b].transpose(0, 1), value[a:b].transpose(0, 1))
                     .transpose(0, 1) for a, b in zip(cu, cu[1:]) if b > a]
            return torch.cat(parts).reshape(query.shape[0], -1)
        if attention_mask is not None:
            raise ValueError("SDPAttention is causal per sample: pass packed sequences (PackedSeqParams), not a mask")
        # sbhd: [s, b, heads, d] -> [b, heads, s, d]
        q, k, v = (x.permute(1, 2, 0, 3) for x in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             enable_gqa=self.heads != self.groups)
        s, b = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)
