"""Real SGLang 0.5.23 on its CPU backend: engine start, throughput direct vs through sglang-router, weight sync per
transport for a ~10M-parameter model, and the rollout-vs-trainer log-prob gap.

    .venv/bin/python benchmarks/sglang_engine.py [--requests 64] [--tokens 64] [--syncs 5] [--out runs/bench-sglang]

Needs the SGLang CPU environment (`bash scripts/setup_sglang_cpu.sh`). Printed, each with its baseline from the same
run:
  1. engine start: launch -> /health_generate answers, for one engine (and for the router after it);
  2. generate throughput of the tiny model: --requests concurrent sampled requests of --tokens tokens through the
     project's rollout client, straight to the engine and through the router (ratio router / direct);
  3. weight sync of a ~10M-parameter Qwen3 (fp32, ~37 MB) through WeightSync: disk, distributed (gloo) and tensor
     (shared memory), median of --syncs, MB/s, ratio to disk; a check that the engine then serves the new weights;
  4. log-prob gap between the engine's sampled-token log-probs and the trainer's (megatron-core, fp32) of the same
     tokens, slime's train-rollout invariant, and a transformers forward beside it; engine in float32 (the CPU
     default) and in bfloat16 (GPU production's dtype).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig  # noqa: E402
from slime_ext.sample import Sample  # noqa: E402
from slime_ext.sglang_engine import EngineConfig, EngineManager  # noqa: E402
from slime_ext.sglang_env import sglang_unavailable  # noqa: E402
from slime_ext.tiny_model import make_tiny_qwen3  # noqa: E402
from slime_ext.weight_sync import WeightSync, WeightSyncConfig  # noqa: E402


def table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def start(model: Path, log_dir: Path, router: bool, **kw) -> tuple[EngineManager, float]:
    """(manager, seconds from launch until the engine answered /health_generate [and the router listed it])."""
    cfg = EngineConfig(model_path=str(model), backend="sglang", device="cpu", num_engines=1, torch_threads=1,
                       log_dir=str(log_dir), **({} if router else {"router": None}), **kw)
    m = EngineManager(cfg)
    t0 = time.perf_counter()
    m.start()
    return m, time.perf_counter() - t0


def throughput(url: str, n: int, tokens: int) -> tuple[float, float]:
    """(output tokens/s, wall seconds) for n concurrent requests of `tokens` sampled tokens (no stop)."""
    sampling = SamplingConfig(max_response_len=tokens, temperature=1.0)

    async def go():
        client = RolloutClient(ClientConfig(url=url, concurrency=n), worker_urls=[url])
        try:
            t0 = time.perf_counter()
            out = await asyncio.gather(*(client.generate(Sample(prompt_tokens=[1, 5 + i % 50, 7, 9]), sampling)
                                         for i in range(n)))
            return sum(len(s.response_tokens) for s in out), time.perf_counter() - t0
        finally:
            await client.aclose()
    toks, wall = asyncio.run(go())
    return toks / wall, wall


def pause_flush_times(url: str, syncs: int) -> list[float]:
    """The protocol around every transport, alone: pause (retract) + flush + continue."""
    async def go():
        sync = WeightSync([url], WeightSyncConfig(transport="tensor"))
        times = []
        try:
            for _ in range(syncs):
                engines = sync.engines()
                t0 = time.perf_counter()
                await sync.open(engines)
                await asyncio.gather(*(e.resume_generation() for e in engines))
                times.append(time.perf_counter() - t0)
            return times
        finally:
            await sync.aclose()
    return asyncio.run(go())


def sync_times(url: str, model: Path, transport: str, syncs: int, work: Path) -> tuple[list[float], int]:
    import torch
    from safetensors.torch import load_file

    base = load_file(str(model / "model.safetensors"))
    cfg = WeightSyncConfig(transport=transport, disk_dir=str(work / "sync"), backend="gloo", bucket_mb=64)

    async def go():
        sync = WeightSync([url], cfg, template_dir=str(model))
        times = []
        try:
            for i in range(syncs + 1):  # the first distributed sync also builds the group: not counted
                named = [(k, v + 0.001 * (i + 1)) for k, v in base.items()]
                t0 = time.perf_counter()
                await sync.sync(named)
                times.append(time.perf_counter() - t0)
            return times[1:], sum(t.numel() * t.element_size() for t in base.values())
        finally:
            await sync.aclose()
    torch.manual_seed(0)
    return asyncio.run(go())


def engine_samples(url: str, n_prompts: int = 8, tokens: int = 48) -> list[Sample]:
    """Sampled responses (T = 1) with the engine's log-probs."""
    sampling = SamplingConfig(max_response_len=tokens, temperature=1.0)

    async def go():
        client = RolloutClient(ClientConfig(url=url), worker_urls=[url])
        try:
            return await asyncio.gather(*(client.generate(Sample(prompt_tokens=[1, 3 + i, 11, 20 + 2 * i]), sampling)
                                          for i in range(n_prompts)))
        finally:
            await client.aclose()
    return asyncio.run(go())


def gaps(samples: list[Sample], reference: list[list[float]]) -> tuple[float, float, int]:
    d = [abs(a - b) for s, ref in zip(samples, reference) for a, b in zip(s.rollout_logprobs, ref)]
    return statistics.mean(d), max(d), len(d)


def transformers_logprobs(model: Path, samples: list[Sample]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    out = []
    for s in samples:
        with torch.no_grad():
            lp = torch.log_softmax(hf(torch.tensor([s.prompt_tokens + s.response_tokens])).logits[0].float(), dim=-1)
        p = len(s.prompt_tokens)
        out.append([float(lp[p - 1 + i, t]) for i, t in enumerate(s.response_tokens)])
    return out


def megatron_logprobs(model: Path, samples: list[Sample]) -> list[list[float]]:
    """The trainer's own log-probs of the engine's tokens (slime's train-rollout invariant): megatron-core, fp32,
    one process on gloo, as `longtrace train --cpu` computes them."""
    from slime_ext.packing import TrainItem
    from slime_ext.trainer import MegatronTrainer, TrainerConfig

    trainer = MegatronTrainer(TrainerConfig(hf_checkpoint=str(model), dtype="fp32"))
    items = [TrainItem(prompt_tokens=s.prompt_tokens, response_tokens=s.response_tokens, loss_mask=s.loss_mask,
                       advantage=0.0, rollout_logprobs=s.rollout_logprobs) for s in samples]
    return trainer.compute_logprobs(items)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--syncs", type=int, default=10)
    p.add_argument("--kv-tokens", type=int, default=8192,
                   help="the 10M engine's KV pool (--max-total-tokens): SGLang's flush clears it, which takes "
                        "~0.4 s on CPU at 65536 tokens (0.8 GB) and would hide the transports")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-sglang")
    a = p.parse_args()
    why = sglang_unavailable("cpu")
    if why:
        print(f"SGLang cannot run here: {why}", file=sys.stderr)
        return 1
    out = a.out.resolve()
    tiny = make_tiny_qwen3(out / "tiny", vocab_size=2048) if not (out / "tiny" / "config.json").exists() else out / "tiny"
    big = out / "qwen3-10m"
    if not (big / "config.json").exists():
        make_tiny_qwen3(big, num_layers=6, hidden_size=256, num_heads=4, num_kv_heads=2, head_dim=64,
                        ffn_hidden_size=768, vocab_size=8192)

    # 1 + 2: start, throughput direct vs router
    m, start_s = start(tiny, out / "logs-tiny", router=True)
    try:
        first = throughput(m.engine_urls[0], a.requests, a.tokens)
        router_tps, router_wall = throughput(m.router_url, a.requests, a.tokens)
        second = throughput(m.engine_urls[0], a.requests, a.tokens)  # again: the first run warms caches
    finally:
        m.stop()
    direct, direct_wall = max(first, second)
    table("engine start (SGLang on 2 CPU cores): launch -> /health_generate answers", ["what", "seconds"],
          [["tiny Qwen3 (0.4M parameters), engine + router", f"{start_s:.1f}"]])
    table(f"generate throughput: {a.requests} concurrent requests x {a.tokens} sampled tokens, tiny Qwen3",
          ["path", "output tok/s", "wall s", "ratio to direct"],
          [["direct to the engine (best of 2)", f"{direct:.0f}", f"{direct_wall:.2f}", "1.00"],
           ["through sglang-router", f"{router_tps:.0f}", f"{router_wall:.2f}", f"{router_tps / direct:.2f}"]])

    # 3: weight sync of ~10M parameters
    m, big_start = start(big, out / "logs-10m", router=False, max_total_tokens=a.kv_tokens)
    rows = []
    try:
        url = m.engine_urls[0]
        samples32 = engine_samples(url)  # before the syncs change the engine's weights
        protocol = pause_flush_times(url, a.syncs)
        rows.append(["(pause + flush + continue alone)", f"{statistics.median(protocol):.3f}", f"{min(protocol):.3f}",
                     "", ""])
        disk = None
        for transport in ("disk", "distributed", "tensor"):
            times, nbytes = sync_times(url, big, transport, a.syncs, out)
            med = statistics.median(times)
            disk = disk or med
            rows.append([transport, f"{med:.3f}", f"{min(times):.3f}", f"{nbytes / 1e6 / med:.0f}", f"{med / disk:.2f}"])
        params = nbytes // 4
    finally:
        m.stop()
    print(f"\nengine start, {params / 1e6:.1f}M-parameter Qwen3, engine alone: {big_start:.1f} s")
    table(f"weight sync, {params / 1e6:.1f}M-parameter Qwen3 in fp32 ({nbytes / 1e6:.0f} MB), pause + flush + "
          f"update + continue, {a.syncs} syncs (KV pool {a.kv_tokens} tokens)",
          ["transport", "median s", "min s", "MB/s", "ratio to disk"], rows)

    # 4: log-prob gap, engine in fp32 (above) and bf16
    m, _ = start(big, out / "logs-10m-bf16", router=False, dtype="bfloat16", max_total_tokens=a.kv_tokens)
    try:
        samples16 = engine_samples(m.engine_urls[0])
    finally:
        m.stop()
    rows = []
    for dtype, samples in (("float32", samples32), ("bfloat16", samples16)):
        for ref_name, ref in (("megatron-core trainer, fp32", megatron_logprobs(big, samples)),
                              ("transformers, fp32", transformers_logprobs(big, samples))):
            mean, worst, n = gaps(samples, ref)
            rows.append([dtype, ref_name, n, f"{mean:.2e}", f"{worst:.2e}"])
    base = float(rows[0][3])
    for r in rows:
        r.append(f"{float(r[3]) / base:.3g}")
    table("rollout vs train log-probs of the same sampled tokens (T=1, 8.9M model, 8 prompts x 48 tokens)",
          ["engine dtype", "reference", "tokens", "mean |gap|", "max |gap|", "ratio to the first row"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
