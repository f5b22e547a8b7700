"""One stage of the GPU check (scripts/gpu_check.sh runs each in its own process, under its own timeout).

    python scripts/gpu_check.py STAGE --out results.jsonl [--dry-run] [--work DIR]

Stages (the review's plan, ../shared/research/sglang_megatron_gpu_review.md):
  env         GPU, torch / CUDA / NCCL, and whether megatron-core, transformer-engine, flash-attn and SGLang import
              (with the error text when they do not)
  attention   te vs sdpa vs local at TP=1 on a tiny Qwen3 with head_dim 128, fp32 and bf16: log-prob differences
              against local fp32
  packing     THD packing: every sample alone vs all packed in one micro-batch (te, sdpa), fp32
  train       bf16 + the distributed optimizer: 3 steps (finite grad norms, moving log-probs); offload frees device
              memory; after onload the log-probs equal those before the offload
  sglang      only where sglang imports: the project's engine launch, generate, the rollout-vs-trainer log-prob gap,
              a disk and a tensor (CUDA IPC) weight sync in SGLang's update sessions
  throughput  a Qwen3-0.6B-shaped random model at 16K and 32K tokens, recompute off / on: tokens/s, TFLOP/s, MFU
              against the datasheet peak and a measured matmul peak, peak memory

Every stage appends one JSON line: {"stage", "status": ok|skip|fail, "seconds", "figures", "reason"}. ``--dry-run``
runs the same code at CPU sizes (tiny models, short sequences), which is how the test suite keeps this script alive.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class Skip(Exception):
    """The stage cannot run here (a package or the GPU is missing): one line says why."""


def import_error(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def need_megatron() -> None:
    why = import_error("megatron.core")
    if why:
        raise Skip(f"megatron-core does not import ({why}); pass its wheel with --wheels")


def backends() -> list[str]:
    """Attention backends that can run here: te only on GPUs where it imports."""
    from slime_ext.megatron_model import transformer_engine_import_error

    have_te = torch.cuda.is_available() and transformer_engine_import_error() is None
    return (["te"] if have_te else []) + ["sdpa", "local"]


def tiny_model(work: Path, dry: bool) -> Path:
    from slime_ext.tiny_model import make_tiny_qwen3

    out = work / "tiny-qwen3-hd128"
    if not (out / "config.json").exists():  # head_dim 128, as the production models (flash kernels care)
        make_tiny_qwen3(out, num_layers=2, hidden_size=256, num_heads=2, num_kv_heads=1, head_dim=128,
                        ffn_hidden_size=512, vocab_size=2048, seed=0)
    return out


def items(vocab: int, n: int = 6, seed: int = 0, lengths=(40, 200)):
    import random

    from slime_ext.packing import TrainItem

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.randint(4, 16)
        out.append(TrainItem([rng.randrange(vocab) for _ in range(rng.randint(*lengths))],
                             [rng.randrange(vocab) for _ in range(r)], advantage=rng.uniform(-1, 1),
                             rollout_logprobs=[-2.0] * r))
    return out


def trainer(model: Path | str, attention: str, dtype: str, max_tokens: int, **kw):
    from slime_ext.trainer import MegatronTrainer, TrainerConfig

    return MegatronTrainer(TrainerConfig(hf_checkpoint=str(model), attention=attention, dtype=dtype,
                                         max_tokens_per_gpu=max_tokens, **kw))


def max_diff(a, b) -> float:
    return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


# ---- stages -----------------------------------------------------------------------------------------------------

def stage_env(args) -> dict:
    from slime_ext.flops import datasheet_peak

    f = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        f.update(gpu=name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                 memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                 cuda=torch.version.cuda, nccl=".".join(map(str, torch.cuda.nccl.version())),
                 datasheet_bf16_tflops=(datasheet_peak(name, torch.bfloat16) or 0) / 1e12)
    for module in ("megatron.core", "transformer_engine", "flash_attn", "sglang"):
        why = import_error(module)
        f[module] = "imports" if why is None else why
        if why is None:
            f[f"{module} version"] = getattr(sys.modules[module], "__version__", "?")
    return f


def stage_attention(args) -> dict:
    need_megatron()
    model = tiny_model(args.work, args.dry_run)
    batch = items(2048)
    f, reference = {}, None
    for dtype in ("fp32", "bf16"):
        for attention in reversed(backends()):  # local first: the reference
            logp = trainer(model, attention, dtype, 4096).compute_logprobs(batch)
            if reference is None:
                reference = logp
            f[f"{attention}_{dtype}_max_diff_vs_local_fp32"] = max_diff(logp, reference)
    worst = max(v for k, v in f.items() if k.endswith("fp32_max_diff_vs_local_fp32"))
    if worst > 1e-4:
        raise AssertionError(f"fp32 backends disagree by {worst:.2e}: {f}")
    return f


def stage_packing(args) -> dict:
    need_megatron()
    model = tiny_model(args.work, args.dry_run)
    batch = items(2048, n=8)
    f = {}
    for attention in backends():
        if attention == "local":
            continue
        alone = trainer(model, attention, "fp32", 1).compute_logprobs(batch)
        packed = trainer(model, attention, "fp32", 100_000).compute_logprobs(batch)
        f[f"{attention}_alone_vs_packed_max_diff"] = d = max_diff(alone, packed)
        if d > 1e-5:
            raise AssertionError(f"{attention}: packing changes the log-probs by {d:.2e}")
    return f


def stage_train(args) -> dict:
    need_megatron()
    model = tiny_model(args.work, args.dry_run)
    attention = backends()[0]
    t = trainer(model, attention, "bf16", 4096)  # the distributed optimizer is the trainer's default
    batch = items(2048)
    before = t.compute_logprobs(batch)
    norms = [t.train_step(batch)["grad_norm"] for _ in range(3)]
    after = t.compute_logprobs(batch)
    f = {"attention": attention, "grad_norms": norms, "logprob_change": max_diff(before, after)}
    if not all(math.isfinite(n) and n > 0 for n in norms) or f["logprob_change"] < 1e-4:
        raise AssertionError(f"bf16 training did not move: {f}")
    on_gpu = torch.cuda.is_available()
    held = torch.cuda.memory_allocated() if on_gpu else 0
    t.offload()
    freed = held - torch.cuda.memory_allocated() if on_gpu else 0
    t.onload()
    again = t.compute_logprobs(batch)
    f.update(offload_freed_mib=round(freed / 2**20, 1), logprob_diff_after_onload=max_diff(after, again))
    if f["logprob_diff_after_onload"] != 0.0 or (on_gpu and freed <= 0):
        raise AssertionError(f"offload / onload: {f}")
    return f


def stage_sglang(args) -> dict:
    why = import_error("sglang")
    if why:
        raise Skip(f"sglang does not import here ({why})")
    if not torch.cuda.is_available():
        raise Skip("the SGLang stage runs on a GPU (the CPU backend is covered by the test suite)")
    import asyncio

    import httpx

    from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
    from slime_ext.sample import Sample
    from slime_ext.sglang_engine import EngineConfig, EngineManager
    from slime_ext.weight_sync import WeightSync, WeightSyncConfig

    model = tiny_model(args.work, args.dry_run)
    f = {}
    t0 = time.perf_counter()
    manager = EngineManager(EngineConfig(model_path=str(model), backend="sglang", device="cuda", num_engines=1,
                                         router=None, mem_fraction_static=0.3, log_dir=str(args.work / "sglang")))
    manager.start()
    try:
        url = manager.engine_urls[0]
        f["engine_start_s"] = round(time.perf_counter() - t0, 1)

        async def rollout():
            client = RolloutClient(ClientConfig(url=url), worker_urls=[url])
            try:
                return await asyncio.gather(*(client.generate(Sample(prompt_tokens=[1, 5 + i, 9]),
                                                              SamplingConfig(max_response_len=32)) for i in range(4)))
            finally:
                await client.aclose()
        samples = asyncio.run(rollout())
        from slime_ext.packing import TrainItem

        t = trainer(model, backends()[0], "bf16", 4096)
        ref = t.compute_logprobs([TrainItem(s.prompt_tokens, s.response_tokens) for s in samples])
        gaps = [abs(a - b) for s, r in zip(samples, ref) for a, b in zip(s.rollout_logprobs, r)]
        f.update(logprob_gap_mean=sum(gaps) / len(gaps), logprob_gap_max=max(gaps))
        named = list(t.hf_named_tensors())
        for transport in ("disk", "tensor"):
            cfg = WeightSyncConfig(transport=transport, disk_dir=str(args.work / "sync"))
            sync = WeightSync([url], cfg, template_dir=str(model))
            t1 = time.perf_counter()
            version = asyncio.run(sync.sync(named))
            f[f"{transport}_sync_s"] = round(time.perf_counter() - t1, 3)
            f[f"{transport}_version"] = httpx.get(f"{url}/model_info", timeout=30).json()["weight_version"]
            assert f[f"{transport}_version"] == str(version)
    finally:
        manager.stop()
    return f


def stage_throughput(args) -> dict:
    need_megatron()
    from train_step import make_items, write_config

    from slime_ext.flops import datasheet_peak, forward_flops, matmul_peak

    preset = "tiny" if args.dry_run else "qwen3-0.6b"
    lengths = (512, 1024) if args.dry_run else (16384, 32768)
    config = write_config(preset, args.work / f"config-{preset}")
    attention = backends()[0]
    dtype = "fp32" if args.dry_run else "bf16"
    torch_dtype = torch.float32 if args.dry_run else torch.bfloat16
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    measured, sheet = matmul_peak(torch_dtype, device()), datasheet_peak(name, torch_dtype)
    f = {"preset": preset, "attention": attention, "measured_peak_tflops": measured / 1e12,
         "datasheet_peak_tflops": (sheet or 0) / 1e12}
    for recompute in (False, True):
        t = trainer(config, attention, dtype, max(lengths), recompute=recompute, load_weights=False)
        for seq in lengths:
            batch = make_items(t.arch.vocab_size, 1, seq, seq // 4)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t.compute_gradients(batch)  # warm-up
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            t.compute_gradients(batch)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            flops = 3 * forward_flops(t.arch, seq, seq // 4)
            key = f"{seq}{'_recompute' if recompute else ''}"
            f[key] = {"tokens_per_s": seq / seconds, "tflops": flops / seconds / 1e12,
                      "mfu_datasheet": flops / seconds / sheet if sheet else None, "mfu_measured": flops / seconds / measured,
                      "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
        del t
    return f


STAGES = {"env": stage_env, "attention": stage_attention, "packing": stage_packing, "train": stage_train,
          "sglang": stage_sglang, "throughput": stage_throughput}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=list(STAGES) + ["summary"])
    p.add_argument("--out", type=Path, required=True, help="results JSONL (appended)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: next to --out)")
    p.add_argument("--dry-run", action="store_true", help="CPU sizes")
    p.add_argument("--status", default=None, help=argparse.SUPPRESS)  # summary of a stage the shell timed out
    args = p.parse_args()
    args.work = args.work or args.out.parent / "gpu-check-work"
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "summary":
        return summary(args.out)
    t0 = time.perf_counter()
    row = {"stage": args.stage, "device": device(), "dry_run": args.dry_run}
    try:
        row.update(status="ok", figures=STAGES[args.stage](args))
    except Skip as e:
        row.update(status="skip", reason=str(e))
    except Exception as e:  # noqa: BLE001 (the JSONL names it; the exit code says it)
        row.update(status="fail", reason=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-3000:])
    row["seconds"] = round(time.perf_counter() - t0, 1)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
    print(f"[gpu-check] {args.stage}: {row['status']} in {row['seconds']} s"
          + (f": {row['reason']}" if row.get("reason") else ""), flush=True)
    return 1 if row["status"] == "fail" else 0


def summary(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    print(f"\n{'stage':<11} {'status':<7} {'seconds':>8}  figures / reason")
    for r in rows:
        detail = r.get("reason") or json.dumps(r.get("figures", {}), default=str)
        print(f"{r['stage']:<11} {r['status']:<7} {r.get('seconds', 0):>8}  {detail[:300]}")
    return 1 if any(r["status"] == "fail" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
