"""Per-token log-probs (and entropy) of response tokens, without ever materialising [tokens x vocab] logits.

Only the positions that predict a response token go through the output layer, in chunks of ``chunk_size``
rows, and each chunk (output matmul + vocab-parallel log-softmax) runs under activation checkpointing, so
the backward pass recomputes it instead of keeping it: peak extra memory is one chunk's fp32 logits
([chunk, vocab/TP]), whatever the response length. At 160K tokens x 151,936 vocab the full fp32 logits would
be 97 GB; a 4,096-row chunk at TP=4 is 0.6 GB.

The log-probs come from megatron's ``vocab_parallel_cross_entropy`` on logits divided by the rollout
temperature, the convention SGLang's returned log-probs must be compared under. The output matmul runs in fp32 even
when the model is bf16 (hidden states and the weight shard upcast; the weight once per call): bf16 logits are
rounded to a step of 0.125 near 20, which puts errors of a few 1e-2 on each token's log-prob, straight into the
IcePop / TIS ratio exp(train - rollout) (review defect #12). SGLang's matching option is ``--enable-fp32-lm-head``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _tp_group():
    from megatron.core import parallel_state as ps

    return ps.get_tensor_model_parallel_group(), ps.get_tensor_model_parallel_world_size()


def _mask_padded_vocab(logits: torch.Tensor, real_vocab: int) -> torch.Tensor:
    """Padded vocab columns (beyond the HF vocab) must not take softmax mass."""
    from megatron.core import parallel_state as ps

    local = logits.shape[-1]
    start = ps.get_tensor_model_parallel_rank() * local
    if start + local <= real_vocab:
        return logits
    cut = max(real_vocab - start, 0)
    return torch.cat([logits[..., :cut], logits.new_full((*logits.shape[:-1], local - cut), torch.finfo(logits.dtype).min)], -1)


def vocab_parallel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the full (TP-sharded) vocab; differentiable. logits: [..., V/TP] fp32.

    The partial sums are combined with megatron's ``reduce_from_tensor_model_parallel_region``: all-reduce
    forward, identity backward. (torch's differentiable all_reduce would also all-reduce the gradient, counting
    the loss once per TP rank, while under TP every rank holds the same, replicated loss.)"""
    import torch.distributed as dist
    from megatron.core.tensor_parallel import reduce_from_tensor_model_parallel_region

    group, tp = _tp_group()
    top = logits.max(dim=-1, keepdim=True).values.detach()
    if tp > 1:
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    z = logits - top
    e = z.exp()
    sum_e = e.sum(-1, keepdim=True)
    sum_ez = (e * z).sum(-1, keepdim=True)
    if tp > 1:
        sum_e = reduce_from_tensor_model_parallel_region(sum_e)
        sum_ez = reduce_from_tensor_model_parallel_region(sum_ez)
    return (sum_e.log() - sum_ez / sum_e).squeeze(-1)


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, real_vocab: int,
                    temperature: float, with_entropy: bool):
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    logits = F.linear(hidden.float(), weight)  # weight: fp32 already (response_logprobs)
    if temperature != 1.0:
        logits = logits / temperature
    logits = _mask_padded_vocab(logits, real_vocab)
    entropy = vocab_parallel_entropy(logits) if with_entropy else None
    # megatron's cross entropy works on [S, B, V/TP] and may modify its input in place
    logp = -vocab_parallel_cross_entropy(logits.unsqueeze(1).clone() if with_entropy else logits.unsqueeze(1),
                                         targets.unsqueeze(1)).squeeze(1)
    return (logp, entropy) if with_entropy else (logp,)


def response_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    positions: torch.Tensor,
    targets: torch.Tensor,
    *,
    real_vocab: int,
    sequence_parallel: bool,
    chunk_size: int = 4096,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` predicted at ``positions`` of ``hidden`` ([T or T/TP, 1, H], after the final norm).

    ``weight`` is this rank's output-layer shard [V/TP, H]. Returns (logp [N], entropy [N] or None).
    """
    from megatron.core.tensor_parallel import copy_to_tensor_model_parallel_region, gather_from_sequence_parallel_region

    if sequence_parallel:
        # all-gather the sequence; its backward reduce-scatters, summing each rank's partial input gradient
        hidden = gather_from_sequence_parallel_region(hidden, tensor_parallel_output_grad=True)
    selected = hidden[positions, 0]  # [N, H]
    if not sequence_parallel:
        selected = copy_to_tensor_model_parallel_region(selected)  # backward all-reduces the partial gradients
    weight = weight.float()  # fp32 head (a no-op in fp32 training); gradients flow back to the bf16 shard
    logps, entropies = [], []
    for start in range(0, selected.shape[0], chunk_size):
        args = (selected[start:start + chunk_size], weight, targets[start:start + chunk_size], real_vocab,
                temperature, with_entropy)
        if torch.is_grad_enabled():
            out = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            out = _chunk_logprobs(*args)
        logps.append(out[0])
        if with_entropy:
            entropies.append(out[1])
    if not logps:
        empty = selected.new_zeros(0, dtype=torch.float32)
        return empty, (empty if with_entropy else None)
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)
