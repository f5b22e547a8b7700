#!/usr/bin/env python
"""Per-step cost ESTIMATES of the LongTraceRL recipes, from the project's FLOPs model (slime_ext/flops.py).

    .venv/bin/python scripts/cost_estimate.py               # the paper's shapes: 128K prompt + up to 32K response
    .venv/bin/python scripts/cost_estimate.py --json out.json --mfu 0.2 0.3 0.4

These are estimates from a model of the hardware, not measurements: no GPU run of the recipes exists yet.
Everything the numbers depend on is a flag and is printed with them (docs/recipes.md explains each figure).

Training side (exact arithmetic given the shapes): model FLOPs of one optimiser step = sum over the 128 samples of
3 x forward(S = prompt + response), the output layer only on response positions (what PolicyGPTModel does);
full activation recompute adds one more forward of hardware work (not counted in MFU). On-policy with one
optimiser step per rollout and no KL, no separate old / reference log-prob pass runs. Time = model FLOPs /
(MFU x peak x GPUs) for assumed MFUs.

Rollout side (a roofline, decode-bound): each engine (TP=8, one node) advances all its running sequences by
one token per decode step; a step reads the weights once (MoE: the experts the step's tokens route to, in
expectation) and every running sequence's whole KV cache (paged attention reads a shared prompt prefix once per
sequence), at an assumed fraction of HBM bandwidth, plus a fixed per-step overhead (TP all-reduces, launches).
Sequences leave the batch as they finish, so the longest response of an engine sets its decode time. Prefill
of each distinct prompt per engine is compute-bound at an assumed MFU. KV-cache capacity is checked with and
without group affinity (all 8 samples of a prompt on one engine, so the radix cache holds its prompt once).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slime_ext.flops import active_matmul_params, forward_flops  # noqa: E402
from slime_ext.megatron_model import ModelArch  # noqa: E402

# Architecture fields of the public Hugging Face config.json of each model (only what the FLOPs model reads).
MODELS: dict[str, dict] = {
    "qwen3-4b": {  # Qwen/Qwen3-4B-Thinking-2507
        "name": "Qwen3-4B-Thinking-2507", "model_type": "qwen3", "num_hidden_layers": 36, "hidden_size": 2560,
        "intermediate_size": 9728, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 151936, "tie_word_embeddings": True, "rope_theta": 5000000, "max_position_embeddings": 262144,
    },
    "r1-qwen3-8b": {  # deepseek-ai/DeepSeek-R1-0528-Qwen3-8B (YaRN does not change FLOPs; kept so that the
        # recipe tests validate the real config)
        "name": "DeepSeek-R1-0528-Qwen3-8B", "model_type": "qwen3", "num_hidden_layers": 36, "hidden_size": 4096,
        "intermediate_size": 12288, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 151936, "tie_word_embeddings": False, "rope_theta": 1000000, "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
                         "attn_factor": 0.8782488562869419},
    },
    "qwen3-30b-a3b": {  # Qwen/Qwen3-30B-A3B-Thinking-2507
        "name": "Qwen3-30B-A3B-Thinking-2507", "model_type": "qwen3_moe", "num_hidden_layers": 48,
        "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
        "num_experts_per_tok": 8, "norm_topk_prob": True, "num_attention_heads": 32, "num_key_value_heads": 4,
        "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": False, "rope_theta": 10000000,
        "max_position_embeddings": 262144,
    },
}


def arch_of(key: str) -> ModelArch:
    cfg = {k: v for k, v in MODELS[key].items() if k != "name"}
    return ModelArch.from_hf_config(cfg)


@dataclass
class Hardware:
    name: str = "H100/H800 SXM 80GB"
    peak_flops: float = 989.4e12  # dense BF16 per GPU (H800: same compute, slower NVLink)
    hbm_bytes_per_s: float = 3.35e12
    hbm_efficiency: float = 0.6  # fraction of HBM bandwidth decode kernels reach (assumption)
    step_overhead_s: float = 2e-3  # per decode step of a TP=8 engine: all-reduces, launches (assumption)
    prefill_mfu: float = 0.4  # long-prompt prefill (assumption)
    gpu_memory_bytes: float = 80e9


def kv_bytes_per_token(arch: ModelArch, dtype_bytes: int = 2) -> int:
    return 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * dtype_bytes


def expert_params(arch: ModelArch) -> int:
    if not arch.num_experts:
        return 0
    return arch.num_layers * arch.num_experts * 3 * arch.hidden_size * arch.moe_ffn_hidden_size


def weight_bytes_read(arch: ModelArch, tokens_in_step: int, dtype_bytes: int = 2) -> float:
    """Bytes of weights one decode step reads: all of a dense model; for MoE the non-expert weights plus the
    expected share of experts the step's tokens route to (uniform routing)."""
    total = arch.num_params * dtype_bytes
    if not arch.num_experts:
        return total
    experts = expert_params(arch) * dtype_bytes
    touched = 1.0 - (1.0 - arch.moe_topk / arch.num_experts) ** max(1, tokens_in_step)
    return total - experts + experts * touched


def train_step(arch: ModelArch, prompt: int, responses: list[int]) -> dict:
    """Model FLOPs (3 x forward, logits on response positions) and hardware FLOPs with full recompute (4 x)."""
    fwd = [forward_flops(arch, prompt + r, r) for r in responses]
    fwd_all_logits = [forward_flops(arch, prompt + r) for r in responses]
    attention = [2.0 * arch.num_layers * arch.num_heads * arch.head_dim * (prompt + r) ** 2 for r in responses]
    return {
        "model_flops": 3 * sum(fwd),
        "hardware_flops_recompute": 4 * sum(fwd),
        "attention_share": sum(attention) / sum(fwd),
        "forward_per_sample_mean": sum(fwd) / len(fwd),
        "forward_all_logits_per_sample_mean": sum(fwd_all_logits) / len(fwd_all_logits),
    }


def spread(mean: int, n: int, cap: int) -> list[int]:
    """n response lengths evenly spread over [mean/2, 3 mean/2], capped (a simple stand-in for a distribution)."""
    if n == 1:
        return [min(mean, cap)]
    lo, hi = mean / 2, 3 * mean / 2
    return [int(min(cap, lo + (hi - lo) * i / (n - 1))) for i in range(n)]


def decode_time(arch: ModelArch, hw: Hardware, prompt: int, lengths: list[int], tp: int) -> float:
    """Seconds for one engine to decode `lengths` tokens for its sequences, all started together."""
    bw = tp * hw.hbm_bytes_per_s * hw.hbm_efficiency
    kvb = kv_bytes_per_token(arch)
    remaining = sorted(lengths)
    t, done, generated = 0.0, 0, 0
    # advance in chunks between finish events: within a chunk the running set is constant and the KV read grows
    # linearly, so the chunk's time is exact in closed form.
    for i, target in enumerate(remaining):
        steps = target - generated
        if steps <= 0:
            continue
        running = len(remaining) - i
        w = weight_bytes_read(arch, running)
        # sum over the chunk's steps of the KV bytes of `running` sequences at lengths prompt+generated..+steps-1
        kv = running * kvb * (steps * (prompt + generated) + steps * (steps - 1) / 2)
        t += steps * (hw.step_overhead_s + w / bw) + kv / bw
        generated = target
    return t


def prefill_time(arch: ModelArch, hw: Hardware, prompt: int, distinct_prompts: int, tp: int) -> float:
    return distinct_prompts * forward_flops(arch, prompt, 1) / (tp * hw.peak_flops * hw.prefill_mfu)


def kv_capacity(arch: ModelArch, hw: Hardware, tp: int, mem_fraction: float) -> float:
    return tp * hw.gpu_memory_bytes * mem_fraction - arch.num_params * 2


def estimate(key: str, hw: Hardware, *, prompt: int, mean_responses: list[int], max_response: int, prompts: int,
             samples: int, gpus: int, engine_tp: int, mfus: list[float], mem_fraction: float) -> dict:
    arch = arch_of(key)
    engines = gpus // engine_tp
    per_engine = prompts * samples // engines
    out = {"model": MODELS[key]["name"], "params_B": arch.num_params / 1e9,
           "active_matmul_params_B": active_matmul_params(arch) / 1e9, "kv_bytes_per_token": kv_bytes_per_token(arch),
           "prompt": prompt, "samples_per_step": prompts * samples, "gpus": gpus, "engines": engines,
           "scenarios": []}
    cap = kv_capacity(arch, hw, engine_tp, mem_fraction)
    for mean in mean_responses:
        lengths = spread(mean, prompts * samples, max_response)
        tr = train_step(arch, prompt, lengths)
        train_s = {f"{m:.2f}": tr["model_flops"] / (m * hw.peak_flops * gpus) for m in mfus}
        # engine e gets every engines-th sample (same mix of lengths on every engine)
        eng_lengths = sorted(lengths)[::engines][:per_engine]
        dec = decode_time(arch, hw, prompt, eng_lengths, engine_tp)
        groups_per_engine = max(1, prompts // engines)
        pre_aff = prefill_time(arch, hw, prompt, groups_per_engine, engine_tp)
        pre_rr = prefill_time(arch, hw, prompt, min(prompts, per_engine), engine_tp)
        kvb = kv_bytes_per_token(arch)
        peak_resp = sum(eng_lengths) * kvb  # all responses at full length (upper bound of the response KV)
        need_aff = groups_per_engine * prompt * kvb + peak_resp
        need_rr = min(prompts, per_engine) * prompt * kvb + peak_resp
        out["scenarios"].append({
            "mean_response": sum(lengths) / len(lengths), "max_response": max(lengths),
            "train_model_flops": tr["model_flops"], "train_hardware_flops_recompute": tr["hardware_flops_recompute"],
            "attention_share": tr["attention_share"], "forward_per_sample": tr["forward_per_sample_mean"],
            "train_seconds_at_mfu": train_s,
            "decode_seconds": dec, "prefill_seconds_group_affinity": pre_aff, "prefill_seconds_round_robin": pre_rr,
            "kv_capacity_bytes_per_engine": cap, "kv_needed_group_affinity": need_aff, "kv_needed_round_robin": need_rr,
        })
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--prompt", type=int, default=128000, help="prompt tokens (128K of the 160,000-token context)")
    p.add_argument("--mean-response", type=int, nargs="+", default=[8000, 16000, 32000],
                   help="mean response lengths to estimate (spread over [mean/2, 3 mean/2], capped)")
    p.add_argument("--max-response", type=int, default=32000)
    p.add_argument("--prompts", type=int, default=16, help="prompts per rollout step")
    p.add_argument("--samples", type=int, default=8, help="samples per prompt")
    p.add_argument("--gpus", type=int, default=32)
    p.add_argument("--engine-tp", type=int, default=8)
    p.add_argument("--mem-fraction", type=float, default=0.7)
    p.add_argument("--mfu", type=float, nargs="+", default=[0.2, 0.3, 0.4])
    p.add_argument("--hbm-efficiency", type=float, default=Hardware.hbm_efficiency)
    p.add_argument("--step-overhead-ms", type=float, default=Hardware.step_overhead_s * 1e3)
    p.add_argument("--prefill-mfu", type=float, default=Hardware.prefill_mfu)
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    hw = Hardware(hbm_efficiency=a.hbm_efficiency, step_overhead_s=a.step_overhead_ms / 1e3, prefill_mfu=a.prefill_mfu)
    results = [estimate(k, hw, prompt=a.prompt, mean_responses=a.mean_response, max_response=a.max_response,
                        prompts=a.prompts, samples=a.samples, gpus=a.gpus, engine_tp=a.engine_tp, mfus=a.mfu,
                        mem_fraction=a.mem_fraction) for k in a.models]
    print(f"ESTIMATES, not measurements. {hw.name}: {hw.peak_flops / 1e12:.0f} TFLOP/s BF16, "
          f"{hw.hbm_bytes_per_s / 1e12:.2f} TB/s HBM at {hw.hbm_efficiency:.0%}, {hw.step_overhead_s * 1e3:.1f} ms per "
          f"decode step, prefill at {hw.prefill_mfu:.0%} MFU. {a.gpus} GPUs, engines of TP {a.engine_tp}, "
          f"{a.prompts} x {a.samples} samples, prompt {a.prompt:,} tokens.")
    mfu_cols = " / ".join(f"{m:.0%}" for m in a.mfu)
    for r in results:
        print(f"\n{r['model']}: {r['params_B']:.2f}B params, {r['active_matmul_params_B']:.2f}B active matmul params "
              f"per token, KV {r['kv_bytes_per_token']:,} B/token (bf16), {r['engines']} engines")
        print(f"  {'mean resp':>9} {'max':>6} {'fwd/sample':>10} {'attn':>5} {'train PF':>9} {'+recomp PF':>10} "
              f"{'train s @ MFU ' + mfu_cols:>26} {'decode s':>8} {'prefill s aff/rr':>16} {'KV GB need aff/rr of cap':>26}")
        for s in r["scenarios"]:
            ts = " / ".join(f"{v:.0f}" for v in s["train_seconds_at_mfu"].values())
            print(f"  {s['mean_response']:>9,.0f} {s['max_response']:>6,} {s['forward_per_sample'] / 1e15:>8.2f}PF "
                  f"{s['attention_share']:>5.0%} {s['train_model_flops'] / 1e15:>9.0f} "
                  f"{s['train_hardware_flops_recompute'] / 1e15:>10.0f} {ts:>26} {s['decode_seconds']:>8.0f} "
                  f"{s['prefill_seconds_group_affinity']:>7.1f}/{s['prefill_seconds_round_robin']:<8.1f} "
                  f"{s['kv_needed_group_affinity'] / 1e9:>7.0f}/{s['kv_needed_round_robin'] / 1e9:.0f} of "
                  f"{s['kv_capacity_bytes_per_engine'] / 1e9:.0f}")
    if a.json:
        a.json.write_text(json.dumps({"hardware": hw.__dict__, "args": {k: str(v) for k, v in vars(a).items()},
                                      "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
