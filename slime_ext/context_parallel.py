"""Context parallelism: the zigzag sequence split and the gathering of per-token results.

Each sample of a packed micro-batch is padded to a multiple of 2*cp and cut into 2*cp equal chunks; CP rank r
keeps chunks r and 2*cp-1-r, so every rank holds the same amount of causal-attention work. The attention itself
(ring / all-gather of K/V across CP ranks) is transformer-engine's, so CP runs only on the GPU path; everything
here is plain tensor bookkeeping, tested on CPU.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .packing import MicroBatch, TrainItem, build_micro_batch


def padded_length(seq_len: int, cp_size: int) -> int:
    unit = 2 * cp_size
    return ((seq_len + unit - 1) // unit) * unit


def zigzag_positions(seq_len: int, cp_size: int, cp_rank: int) -> list[int]:
    """Positions (in the padded sample) that CP rank ``cp_rank`` holds, in the order it holds them."""
    padded = padded_length(seq_len, cp_size)
    chunk = padded // (2 * cp_size)
    first, second = cp_rank, 2 * cp_size - 1 - cp_rank
    return list(range(first * chunk, (first + 1) * chunk)) + list(range(second * chunk, (second + 1) * chunk))


def build_cp_micro_batch(
    items: Sequence[TrainItem], indices: Sequence[int], *, cp_size: int, cp_rank: int, pad_token: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[MicroBatch, torch.Tensor]:
    """This CP rank's part of the packed micro-batch ``indices`` (THD layout for transformer-engine), and the
    indices of its response tokens among all the micro-batch's response tokens (for ``gather_token_values``).

    ``cu_seqlens`` describe the full padded samples (transformer-engine splits attention itself); tokens,
    positions and every per-response-token tensor are this rank's share, and ``logit_positions`` index into the
    local tokens. A response token belongs to the rank that holds the position predicting it."""
    from megatron.core.packed_seq_params import PackedSeqParams

    tokens, positions, cu = [], [], [0]
    local_logit, keep = [], []  # keep: indices into the sample-ordered response tokens
    token_offset = response_offset = 0
    for i in indices:
        it = items[i]
        seq = it.prompt_tokens + it.response_tokens
        padded = padded_length(len(seq), cp_size)
        seq = seq + [pad_token] * (padded - len(seq))
        p = len(it.prompt_tokens)
        kept = zigzag_positions(p + len(it.response_tokens), cp_size, cp_rank)
        local_of = {pos: token_offset + k for k, pos in enumerate(kept)}
        tokens += [seq[pos] for pos in kept]
        positions += kept
        for j in range(len(it.response_tokens)):
            pos = p - 1 + j
            if pos in local_of:
                local_logit.append(local_of[pos])
                keep.append(response_offset + j)
        token_offset += len(local_of)
        response_offset += len(it.response_tokens)
        cu.append(cu[-1] + padded)

    full = build_micro_batch(items, indices, pad_to_multiple=1, thd=False, device="cpu")  # per-token tensors, sample order
    sel = torch.tensor(keep, dtype=torch.long)

    def take(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[sel].to(device)

    cu_t = torch.tensor(cu, dtype=torch.int32, device=device)
    longest = max(b - a for a, b in zip(cu, cu[1:]))
    batch = MicroBatch(
        tokens=torch.tensor([tokens], dtype=torch.long, device=device),
        position_ids=torch.tensor([positions], dtype=torch.long, device=device),
        attention_mask=None,
        packed_seq_params=PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_t, cu_seqlens_kv=cu_t,
                                          max_seqlen_q=longest, max_seqlen_kv=longest),
        logit_positions=torch.tensor(local_logit, dtype=torch.long, device=device),
        targets=take(full.targets),
        sample_of_token=take(full.sample_of_token),
        loss_mask=take(full.loss_mask),
        advantages=take(full.advantages),
        token_weight=take(full.token_weight),
        rollout_logprobs=take(full.rollout_logprobs),
        old_logprobs=take(full.old_logprobs),
        ref_logprobs=take(full.ref_logprobs),
        items=list(indices),
        response_lengths=full.response_lengths,
        num_tokens=len(tokens),
        cp_token_index=sel.to(device),
    )
    return batch, sel


def gather_token_values(local: torch.Tensor, local_index: torch.Tensor, total: int, group=None) -> torch.Tensor:
    """Reassemble per-response-token values spread over CP ranks into sample order (collective over ``group``).

    ``local_index[k]`` is where ``local[k]`` belongs among the ``total`` response tokens of the micro-batch."""
    import torch.distributed as dist

    if group is None or dist.get_world_size(group) == 1:
        out = local.new_zeros(total)
        out[local_index] = local
        return out
    parts: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, (local.detach().cpu(), local_index.cpu()), group=group)
    out = torch.zeros(total, dtype=local.dtype)
    for values, index in parts:
        out[index] = values
    return out.to(local.device)
