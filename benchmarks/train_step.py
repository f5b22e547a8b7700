"""Training-step throughput of the Megatron-core trainer, with FLOPs (attention term included) and MFU.

    python benchmarks/train_step.py                                  # CPU: small Qwen3-shaped model, fp32
    python benchmarks/train_step.py --preset qwen3-4b --dtype bf16 --seq-len 16384 --response-len 4096 --samples 2
    torchrun --nproc_per_node 8 benchmarks/train_step.py --preset qwen3-4b --tp 4 --sp ...

Prints, for the same packed batch: tokens/s of forward+backward (policy loss, chunked log-probs) and of log-prob
recomputation (forward only), model TFLOP/s counted as 3 x forward (2 x active params x tokens + the causal
attention term 2 x layers x heads x head_dim x S^2 + the output layer on response positions), MFU against a
dense matmul peak measured in the same run, peak memory, and (``--baseline``, on by default on one process)
the same tokens through HF transformers' eager PyTorch model (one sample at a time, full logits) as a ratio.
Weights are random: only shapes matter here.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

PRESETS = {  # Qwen3 shapes (published configs), random weights
    "tiny": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=2048),
    "small": dict(num_hidden_layers=8, hidden_size=512, intermediate_size=1536, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=64, vocab_size=32768),
    "qwen3-0.6b": dict(num_hidden_layers=28, hidden_size=1024, intermediate_size=3072, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-4b": dict(num_hidden_layers=36, hidden_size=2560, intermediate_size=9728, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-8b": dict(num_hidden_layers=36, hidden_size=4096, intermediate_size=12288, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False),
}


def write_config(preset: str, out: Path) -> Path:
    config = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "rms_norm_eps": 1e-6,
              "rope_theta": 1000000.0, "max_position_embeddings": 262144, "tie_word_embeddings": False,
              "hidden_act": "silu", **PRESETS[preset]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    return out


def make_items(vocab: int, samples: int, seq_len: int, response_len: int, seed: int = 0):
    from slime_ext.packing import TrainItem

    rng = random.Random(seed)
    return [TrainItem(prompt_tokens=[rng.randrange(vocab) for _ in range(seq_len - response_len)],
                      response_tokens=[rng.randrange(vocab) for _ in range(response_len)], advantage=rng.uniform(-1, 1))
            for _ in range(samples)]


def timed(fn, steps: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def hf_baseline(config_dir: Path, items, dtype: torch.dtype, steps: int) -> float:
    """Seconds per batch of forward+backward with HF transformers (eager), one sample at a time."""
    from transformers import AutoConfig, AutoModelForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=dtype).to(device)
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        for it in items:
            ids = torch.tensor([it.prompt_tokens + it.response_tokens], device=device)
            p = len(it.prompt_tokens)
            logits = model(ids).logits[0, p - 1:-1].float()
            logp = logits.log_softmax(-1).gather(-1, ids[0, p:, None])[:, 0]
            (-(it.advantage * logp).mean() / len(items)).backward()

    return timed(step, steps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--model", help="an HF directory instead of a preset (only its config.json is used)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sample (prompt + response)")
    p.add_argument("--response-len", type=int, default=128)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-tokens-per-gpu", type=int, default=None,
                   help="packing budget (default: all samples in one bin with transformer-engine; one sample per bin "
                        "on the local spec, whose dense block-diagonal mask makes a packed bin cost its full length squared)")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--cp", type=int, default=1)
    p.add_argument("--sp", action="store_true")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16" if torch.cuda.is_available() else "fp32")
    p.add_argument("--recompute", action="store_true", help="full activation recompute")
    p.add_argument("--chunk", type=int, default=4096, help="log-prob chunk size")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--attention", default="auto", help="te | sdpa | local (auto: te on GPUs, sdpa on CPUs)")
    p.add_argument("--peak-tflops", type=float, default=None, help="MFU denominator (default: the GPU's datasheet)")
    p.add_argument("--no-baseline", action="store_true")
    args = p.parse_args(argv)

    import torch.distributed as dist

    from slime_ext.flops import datasheet_peak, forward_flops, matmul_peak
    from slime_ext.megatron_model import ParallelConfig
    from slime_ext.trainer import MegatronTrainer, TrainerConfig

    workdir = Path(tempfile.mkdtemp(prefix="train-bench-"))
    config_dir = Path(args.model) if args.model else write_config(args.preset, workdir / "config")
    from slime_ext.megatron_model import resolve_attention

    attention = resolve_attention(args.attention, args.cp)
    budget = args.max_tokens_per_gpu or (args.seq_len * args.samples if attention != "local" else args.seq_len)
    cfg = TrainerConfig(
        hf_checkpoint=str(config_dir), parallel=ParallelConfig(tp=args.tp, pp=args.pp, cp=args.cp, sequence_parallel=args.sp),
        dtype=args.dtype, max_tokens_per_gpu=budget,
        log_probs_chunk_size=args.chunk, recompute=args.recompute, load_weights=False, attention=attention,
    )
    trainer = MegatronTrainer(cfg)
    arch = trainer.arch
    items = make_items(arch.vocab_size, args.samples, args.seq_len, args.response_len)
    world = dist.get_world_size()
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    t_train = timed(lambda: trainer.compute_gradients(items), args.steps)
    t_logp = timed(lambda: trainer.compute_logprobs(items), args.steps)
    tokens = args.samples * args.seq_len
    fwd = args.samples * forward_flops(arch, args.seq_len, args.response_len)
    attention = args.samples * 2.0 * arch.num_layers * arch.num_heads * arch.head_dim * args.seq_len**2
    peak = matmul_peak(cfg.torch_dtype, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = args.peak_tflops * 1e12 if args.peak_tflops else datasheet_peak(name, cfg.torch_dtype)
    rows = {
        "model": f"{args.model or args.preset} ({arch.num_params / 1e9:.3f} B params), {args.dtype}, "
                 f"TP{args.tp} PP{args.pp} CP{args.cp}{' SP' if args.sp else ''}, {world} rank(s), "
                 f"attention {trainer.attention}, device {name}",
        "batch": f"{args.samples} x {args.seq_len} tokens ({args.response_len} response), packing budget {budget} tokens",
        "fwd+bwd": f"{t_train:.3f} s/step, {tokens / t_train / world:,.0f} tokens/s/device, "
                   f"{3 * fwd / t_train / world / 1e12:.3f} TFLOP/s/device, MFU "
                   + (f"{3 * fwd / t_train / world / sheet:.1%} of the datasheet peak ({sheet / 1e12:.0f}), " if sheet else "")
                   + f"{3 * fwd / t_train / world / peak:.1%} of the measured peak",
        "log-prob recompute": f"{t_logp:.3f} s, {tokens / t_logp / world:,.0f} tokens/s/device, MFU {fwd / t_logp / world / peak:.1%}",
        "attention share of FLOPs": f"{attention / fwd:.0%}",
        "measured matmul peak": f"{peak / 1e12:.2f} TFLOP/s ({args.dtype})",
    }
    if device.type == "cuda":
        rows["peak memory"] = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    else:
        rows["peak RSS"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    if world == 1 and not args.no_baseline:
        t_hf = hf_baseline(config_dir, items, cfg.torch_dtype, args.steps)
        rows["baseline: HF transformers eager fwd+bwd"] = (
            f"{t_hf:.3f} s/step, {tokens / t_hf:,.0f} tokens/s; megatron trainer / baseline = {t_hf / t_train:.2f}x")
    if dist.get_rank() == 0:
        width = max(map(len, rows))
        for k, v in rows.items():
            print(f"{k:<{width}}  {v}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
