"""Train-step time and peak memory of the attention backends on CPU: megatron's local spec (dense [T, T] mask) vs
``SDPAttention`` (PyTorch's fused attention per packed sample), at 2K / 4K / 8K packed tokens.

    .venv/bin/python benchmarks/attention.py [--preset small] [--tokens 2048 4096 8192] [--sample-len 512]

Each configuration runs in its own process (peak RSS is per process): one forward + backward of the policy loss
over ``tokens / sample-len`` samples after a warm-up step. Three ways to run the same batch:
  local (512 cap)   the local spec as the trainer runs it: micro-batches of at most 512 packed tokens (the baseline)
  local (packed)    the local spec packing the whole batch in one micro-batch: its [T, T] mask and scores
  sdpa (packed)     SDPAttention packing the whole batch in one micro-batch (THD, no mask)
Printed: seconds per step, peak RSS, and the ratio of each to the baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {"local (512 cap)": ("local", 512), "local (packed)": ("local", None), "sdpa (packed)": ("sdpa", None)}


def run_one(preset: str, attention: str, cap: int | None, tokens: int, sample_len: int) -> dict:
    from train_step import make_items, write_config

    from slime_ext.trainer import MegatronTrainer, TrainerConfig

    config = write_config(preset, Path(tempfile.mkdtemp(prefix="attn-bench-")) / "config")
    cfg = TrainerConfig(hf_checkpoint=str(config), dtype="fp32", attention=attention, load_weights=False,
                        max_tokens_per_gpu=tokens, local_spec_pack_tokens=cap or tokens)
    trainer = MegatronTrainer(cfg)
    items = make_items(trainer.arch.vocab_size, tokens // sample_len, sample_len, sample_len // 4)
    trainer.compute_gradients(items)  # warm-up
    t0 = time.perf_counter()
    trainer.compute_gradients(items)
    return {"seconds": time.perf_counter() - t0, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    p.add_argument("--sample-len", type=int, default=512)
    p.add_argument("--one", nargs=3, metavar=("ATTENTION", "CAP", "TOKENS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        attention, cap, tokens = a.one
        print(json.dumps(run_one(a.preset, attention, None if cap == "none" else int(cap), int(tokens), a.sample_len)))
        return 0
    rows = []
    for tokens in a.tokens:
        results = {}
        for name, (attention, cap) in VARIANTS.items():
            cmd = [sys.executable, __file__, "--preset", a.preset, "--sample-len", str(a.sample_len),
                   "--one", attention, str(cap or "none"), str(tokens)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                results[name] = None
                errors = [line for line in proc.stderr.splitlines() if "Error" in line] or proc.stderr.splitlines()[-1:]
                why = "killed (out of memory?)" if proc.returncode < 0 else (errors[-1] if errors else "")
                print(f"{name} at {tokens} tokens failed (exit {proc.returncode}): {why}", file=sys.stderr)
                continue
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        base = results["local (512 cap)"]
        for name, r in results.items():
            if r is None:
                rows.append([tokens, name, "failed (see above)", "", "", ""])
                continue
            rows.append([tokens, name, f"{r['seconds']:.2f}", f"{r['peak_rss_gb']:.2f}",
                         f"{r['seconds'] / base['seconds']:.2f}" if base else "", f"{r['peak_rss_gb'] / base['peak_rss_gb']:.2f}" if base else ""])
    header = ["packed tokens", "attention", "s / step (fwd+bwd)", "peak RSS GB", "time vs 512-cap local", "memory vs 512-cap local"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"train step on CPU, preset {a.preset}, fp32, samples of {a.sample_len} tokens")
    for r in [header] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
