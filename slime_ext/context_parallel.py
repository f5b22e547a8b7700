"""Context parallelism: the zigzag sequence split and the gathering of per-token results.

Each sample of a packed micro-batch is padded to a multiple of 2*cp and cut into 2*cp equal chunks; CP rank r
keeps chunks r and 2*cp-1-r, so every rank holds the same amount of causal-attention work. With sequence parallelism
the local stream must also split evenly over the TP ranks (megatron scatters it to the sequence-parallel region), so
a padding sequence of its own (a multiple of 2*cp long, predicting nothing) is appended until the local length is a
multiple of ``tp`` (review defect #7: per-sample padding alone leaves local lengths that are only even). The
attention itself (ring / all-gather of K/V across CP ranks) is transformer-engine's, so CP runs only on the GPU path;
everything here is plain tensor bookkeeping, tested on CPU.
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


def sp_padding(total_padded: int, cp_size: int, tp_size: int) -> int:
    """Length of the padding sequence (a multiple of 2*cp, possibly 0) that makes this micro-batch's local length
    ``(total_padded + pad) / cp`` a multiple of ``tp_size``."""
    unit = 2 * cp_size
    for k in range(2 * tp_size + 1):
        if ((total_padded + k * unit) // cp_size) % tp_size == 0:
            return k * unit
    raise ValueError(f"no padding makes {total_padded} tokens split over cp={cp_size}, tp={tp_size}")


def response_token_owners(items: Sequence[TrainItem], indices: Sequence[int], cp_size: int) -> list[list[int]]:
    """For every CP rank, the indices (among the micro-batch's response tokens, in sample order) of the response
    tokens it computes: known to every rank without communication, which lets the gather use fixed-size tensors."""
    owners: list[list[int]] = [[] for _ in range(cp_size)]
    offset = 0
    for i in indices:
        it = items[i]
        p, r = len(it.prompt_tokens), len(it.response_tokens)
        for rank in range(cp_size):
            kept = set(zigzag_positions(p + r, cp_size, rank))
            owners[rank] += [offset + j for j in range(r) if p - 1 + j in kept]
        offset += r
    return owners


def build_cp_micro_batch(
    items: Sequence[TrainItem], indices: Sequence[int], *, cp_size: int, cp_rank: int, pad_token: int = 0,
    tp_size: int = 1, device: torch.device | str = "cpu",
) -> tuple[MicroBatch, torch.Tensor]:
    """This CP rank's part of the packed micro-batch ``indices`` (THD layout for transformer-engine), and the
    indices of its response tokens among all the micro-batch's response tokens (for ``gather_token_values``).

    ``cu_seqlens`` describe the full padded samples (transformer-engine splits attention itself); tokens,
    positions and every per-response-token tensor are this rank's share, and ``logit_positions`` index into the
    local tokens. A response token belongs to the rank that holds the position predicting it. ``tp_size`` > 1
    (sequence parallelism) appends the padding sequence of ``sp_padding``."""
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
    pad = sp_padding(cu[-1], cp_size, tp_size) if tp_size > 1 else 0
    if pad:  # a sequence of its own: attends only to itself, predicts nothing
        kept = zigzag_positions(pad, cp_size, cp_rank)
        tokens += [pad_token] * len(kept)
        positions += kept
        cu.append(cu[-1] + pad)

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
        cp_owners=response_token_owners(items, indices, cp_size),
    )
    return batch, sel


def gather_token_values(local: torch.Tensor, owners: list[list[int]], total: int, group=None) -> torch.Tensor:
    """Reassemble per-response-token values spread over CP ranks into sample order (collective over ``group``).

    ``owners[r]`` lists where CP rank r's values belong among the ``total`` response tokens of the micro-batch
    (``response_token_owners``: every rank knows every rank's share), so the exchange is one all-gather of tensors
    padded to the longest share, on the device, with no pickling (review defect #14)."""
    import torch.distributed as dist

    size = 1 if group is None else dist.get_world_size(group)
    if size == 1:
        out = local.new_zeros(total)
        out[torch.tensor(owners[0], dtype=torch.long, device=local.device)] = local
        return out
    longest = max(len(o) for o in owners)
    mine = local.new_zeros(longest)
    mine[:local.numel()] = local
    parts = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(parts, mine, group=group)
    out = local.new_zeros(total)
    for values, index in zip(parts, owners):
        out[torch.tensor(index, dtype=torch.long, device=local.device)] = values[:len(index)]
    return out
