"""Packing variable-length samples into micro-batches, and balancing micro-batches across data-parallel ranks.

* ``first_fit_decreasing``: samples sorted by length, each put into the first bin with room under
  ``max_tokens`` (a sample longer than the budget gets a bin of its own).
* ``balance_micro_batches``: every DP rank gets the same number of micro-batches (bins are split when the count
  does not divide; when too few samples are left to split, the short ranks get empty bins, which the trainer runs
  as zero-weight micro-batches), and bins are dealt largest-cost-first to the cheapest rank, where the cost counts
  the quadratic attention term (``flops.sequence_cost``), not just tokens.
* ``build_micro_batch``: one packed sequence: positions restart at 0 for every sample, no attention crosses
  samples (a block-diagonal causal mask for the local spec; ``cu_seqlens`` / THD ``PackedSeqParams`` for
  transformer-engine), padded to a multiple of TP (sequence parallelism) or 2*CP, plus the response positions
  and per-token tensors the loss needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


def first_fit_decreasing(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Bins of sample indices, each summing to at most ``max_tokens`` (except single oversize samples)."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_tokens - n)
    return bins


def balance_micro_batches(
    bins: list[list[int]], dp_size: int, cost: Callable[[list[int]], float]
) -> list[list[list[int]]]:
    """Deal bins to ``dp_size`` ranks: equal counts per rank, balanced estimated cost. Every rank must run the same
    number of micro-batches (the gradient all-reduce and the pipeline schedule count on it); when the samples cannot
    be split that far (7 single-sample bins over 4 ranks: filtering and dropped groups make such batches), the ranks
    that come up short get empty bins (``[]``), to be run as zero-weight micro-batches."""
    bins = [list(b) for b in bins if b]
    while len(bins) % dp_size:
        splittable = [b for b in bins if len(b) > 1]
        if not splittable:
            bins += [[] for _ in range(-len(bins) % dp_size)]
            break
        biggest = max(splittable, key=cost)
        bins.remove(biggest)
        half = len(biggest) // 2
        bins += [biggest[:half], biggest[half:]]
    per_rank = len(bins) // dp_size
    ranks: list[list[list[int]]] = [[] for _ in range(dp_size)]
    load = [0.0] * dp_size
    for b in sorted(bins, key=lambda b: -cost(b)):
        open_ranks = [r for r in range(dp_size) if len(ranks[r]) < per_rank]
        r = min(open_ranks, key=lambda r: (load[r], r))
        ranks[r].append(b)
        load[r] += cost(b)
    return ranks


@dataclass
class TrainItem:
    """One sample as the trainer sees it: token ids and per-response-token training signals."""

    prompt_tokens: list[int]
    response_tokens: list[int]
    loss_mask: list[int] | None = None  # 1 = train on the token (default all ones)
    advantage: float = 0.0
    rollout_logprobs: list[float] | None = None
    old_logprobs: list[float] | None = None
    ref_logprobs: list[float] | None = None
    loss_weight: float = 0.0  # per-token weight of this sample in the loss (set by the trainer's normaliser)

    @property
    def length(self) -> int:
        return len(self.prompt_tokens) + len(self.response_tokens)


@dataclass
class MicroBatch:
    tokens: torch.Tensor  # [1, T] (local CP chunk under context parallelism)
    position_ids: torch.Tensor  # [1, T]
    attention_mask: torch.Tensor | None  # [1, 1, T, T] bool, True = masked (local spec only)
    packed_seq_params: object | None  # megatron PackedSeqParams (transformer-engine path)
    logit_positions: torch.Tensor  # [N] positions (in tokens) whose output predicts a response token
    targets: torch.Tensor  # [N] the response tokens
    sample_of_token: torch.Tensor  # [N] index into ``items``
    loss_mask: torch.Tensor  # [N] float
    advantages: torch.Tensor  # [N]
    token_weight: torch.Tensor  # [N] loss weight per token (normaliser)
    rollout_logprobs: torch.Tensor | None = None  # [N]
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    items: list[int] = field(default_factory=list)  # global sample indices in this micro-batch
    response_lengths: list[int] = field(default_factory=list)  # per sample, in ``items`` order
    num_tokens: int = 0  # real (unpadded) tokens
    cp_token_index: torch.Tensor | None = None  # context parallel: where this rank's response tokens belong
    cp_owners: list[list[int]] | None = None  # context parallel: the same for every CP rank (fixed-size gathers)

    @property
    def num_response_tokens(self) -> int:
        return int(self.targets.numel())


def block_causal_mask(seq_lens: Sequence[int]) -> torch.Tensor:
    """[1, 1, T, T] bool, True where attention is NOT allowed: causal within each sample, nothing across."""
    seg = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    t = torch.arange(seg.numel())
    allowed = (seg[:, None] == seg[None, :]) & (t[None, :] <= t[:, None])
    return (~allowed)[None, None]


def build_micro_batch(
    items: Sequence[TrainItem],
    indices: Sequence[int],
    *,
    pad_to_multiple: int = 1,
    pad_token: int = 0,
    thd: bool = False,
    device: torch.device | str = "cpu",
) -> MicroBatch:
    """Pack ``items[i] for i in indices`` into one sequence (see the module docstring)."""
    tokens, positions, seq_lens = [], [], []
    logit_pos, targets, owner, masks, advs, weights = [], [], [], [], [], []
    rollout, old, ref = [], [], []
    offset = 0
    for k, i in enumerate(indices):
        it = items[i]
        p, r = len(it.prompt_tokens), len(it.response_tokens)
        if p == 0:
            raise ValueError(f"sample {i} has an empty prompt")
        tokens += it.prompt_tokens + it.response_tokens
        positions += list(range(p + r))
        seq_lens.append(p + r)
        logit_pos += range(offset + p - 1, offset + p - 1 + r)
        targets += it.response_tokens
        owner += [k] * r
        mask = it.loss_mask if it.loss_mask is not None else [1] * r
        if len(mask) != r:
            raise ValueError(f"sample {i}: loss_mask has {len(mask)} entries for {r} response tokens")
        masks += mask
        advs += [it.advantage] * r
        weights += [it.loss_weight] * r
        for name, dest in (("rollout_logprobs", rollout), ("old_logprobs", old), ("ref_logprobs", ref)):
            vals = getattr(it, name)
            if vals is not None:
                if len(vals) != r:
                    raise ValueError(f"sample {i}: {name} has {len(vals)} entries for {r} response tokens")
                dest += vals
        offset += p + r
    real = offset
    pad = (-real) % pad_to_multiple
    if pad:  # a padding "sample" of its own: attends only to itself, predicts nothing
        tokens += [pad_token] * pad
        positions += list(range(pad))
        seq_lens.append(pad)

    def opt(values: list[float], name: str) -> torch.Tensor | None:
        present = [getattr(items[i], name) is not None for i in indices]
        if not any(present):
            return None
        if not all(present):
            raise ValueError(f"{name} given for some samples of a micro-batch but not others")
        return torch.tensor(values, dtype=torch.float32, device=device)

    packed = None
    mask = None
    if thd:
        from megatron.core.packed_seq_params import PackedSeqParams

        cu = torch.tensor([0] + list(torch.tensor(seq_lens).cumsum(0).tolist()), dtype=torch.int32, device=device)
        longest = max(seq_lens)
        packed = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest, max_seqlen_kv=longest)
    else:
        mask = block_causal_mask(seq_lens).to(device)
    return MicroBatch(
        tokens=torch.tensor([tokens], dtype=torch.long, device=device),
        position_ids=torch.tensor([positions], dtype=torch.long, device=device),
        attention_mask=mask,
        packed_seq_params=packed,
        logit_positions=torch.tensor(logit_pos, dtype=torch.long, device=device),
        targets=torch.tensor(targets, dtype=torch.long, device=device),
        sample_of_token=torch.tensor(owner, dtype=torch.long, device=device),
        loss_mask=torch.tensor(masks, dtype=torch.float32, device=device),
        advantages=torch.tensor(advs, dtype=torch.float32, device=device),
        token_weight=torch.tensor(weights, dtype=torch.float32, device=device),
        rollout_logprobs=opt(rollout, "rollout_logprobs"),
        old_logprobs=opt(old, "old_logprobs"),
        ref_logprobs=opt(ref, "ref_logprobs"),
        items=list(indices),
        response_lengths=[len(items[i].response_tokens) for i in indices],
        num_tokens=real,
    )
