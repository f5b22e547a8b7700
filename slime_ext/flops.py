"""FLOPs model of a dense/MoE decoder, counting the attention term (causal: half of S^2), and MFU.

Forward FLOPs of a sequence of S tokens, of which ``logit_tokens`` go through the output layer:
  2 * (active non-embedding params) * S  +  2 * V * H * logit_tokens  +  2 * L * (heads * head_dim) * S^2
The last term is QK^T plus AV over the causal half of the S x S scores. Training is 3x forward (+1x with full
activation recompute, which the hardware does but the model does not need: MFU uses the model FLOPs).
At 128K-160K tokens the attention term is 80-85% of the total for Qwen3-4B (docs/performance.md).
"""
from __future__ import annotations

from .megatron_model import ModelArch


def active_matmul_params(arch: ModelArch) -> int:
    """Non-embedding parameters a token passes through (routed experts: top-k of them)."""
    h, hd = arch.hidden_size, arch.head_dim
    attn = h * hd * (2 * arch.num_heads + 2 * arch.num_kv_heads)
    if arch.num_experts:
        mlp = arch.moe_topk * 3 * h * arch.moe_ffn_hidden_size + arch.num_experts * h
    else:
        mlp = 3 * h * arch.ffn_hidden_size
    return arch.num_layers * (attn + mlp)


def forward_flops(arch: ModelArch, seq_len: int, logit_tokens: int | None = None) -> float:
    logit_tokens = seq_len if logit_tokens is None else logit_tokens
    dense = 2.0 * active_matmul_params(arch) * seq_len
    head = 2.0 * arch.vocab_size * arch.hidden_size * logit_tokens
    attention = 2.0 * arch.num_layers * arch.num_heads * arch.head_dim * seq_len * seq_len
    return dense + head + attention


def train_flops(arch: ModelArch, seq_lens: list[int], logit_tokens: list[int] | None = None) -> float:
    """Model FLOPs of forward + backward over a batch of sequences."""
    logit_tokens = logit_tokens or list(seq_lens)
    return 3.0 * sum(forward_flops(arch, s, n) for s, n in zip(seq_lens, logit_tokens))


def sequence_cost(arch: ModelArch, seq_len: int) -> float:
    """Relative cost used to balance micro-batches (linear + quadratic attention term)."""
    return forward_flops(arch, seq_len, 0)


def mfu(flops: float, seconds: float, peak_flops_per_device: float, devices: int = 1) -> float:
    return flops / (seconds * peak_flops_per_device * devices)


# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s per GPU: the usual MFU denominator.
# Matched against torch.cuda.get_device_name() in order (the first entry whose words all occur wins).
DATASHEET_BF16_TFLOPS = (
    (("GB200",), 2500.0), (("B200",), 2250.0), (("B100",), 1750.0),
    (("H100", "PCIe"), 756.0), (("H100", "NVL"), 835.0), (("H100",), 989.0),  # H100 SXM: "NVIDIA H100 80GB HBM3"
    (("H200",), 989.0), (("H800",), 989.0), (("H20",), 148.0),
    (("A100",), 312.0), (("A800",), 312.0), (("L40S",), 362.0), (("L40",), 181.0), (("A10",), 125.0), (("L4",), 121.0),
)


def datasheet_peak(device_name: str, dtype) -> float | None:
    """Datasheet FLOP/s of a GPU for bf16/fp16 tensor-core matmuls, or None (unknown GPU, or fp32)."""
    import torch

    if dtype not in (torch.bfloat16, torch.float16):
        return None
    for words, tflops in DATASHEET_BF16_TFLOPS:
        if all(w in device_name for w in words):
            return tflops * 1e12
    return None


def matmul_peak(dtype, device) -> float:
    """FLOP/s of a large dense matmul on ``device`` in ``dtype``, measured: what is reachable here (reported beside
    the MFU against the datasheet peak, which it undershoots by 20-40% on H100s)."""
    import time

    import torch

    device = torch.device(device)
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    iters = 20 if device.type == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    return 2 * n**3 * iters / (time.perf_counter() - t0)
