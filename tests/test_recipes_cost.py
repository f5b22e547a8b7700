"""scripts/cost_estimate.py: the FLOPs it builds on reproduce peers.md's worked Qwen3-4B figures, its decode model
equals a step-by-step simulation, and docs/recipes.md quotes what the script prints (estimates stay in sync)."""
from __future__ import annotations

import json
import sys

import pytest

from .helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cost_estimate as ce  # noqa: E402

from slime_ext.flops import forward_flops  # noqa: E402


def test_qwen3_4b_flops_match_the_worked_calculation():
    arch = ce.arch_of("qwen3-4b")
    assert arch.num_params == pytest.approx(4.022e9, rel=1e-3)  # peers.md B.2: 4.022B
    assert forward_flops(arch, 160000) == pytest.approx(8.84e15, rel=2e-3)  # 8.84 PF at 160K, logits everywhere
    assert forward_flops(arch, 131072, 1) == pytest.approx(6.02e15, rel=2e-3)  # 128K prefill
    assert ce.kv_bytes_per_token(arch) == 147456  # 144 KiB per token


def test_models_match_their_published_architectures():
    assert ce.arch_of("r1-qwen3-8b").num_params == pytest.approx(8.19e9, rel=1e-2)
    moe = ce.arch_of("qwen3-30b-a3b")
    assert moe.num_params == pytest.approx(30.5e9, rel=1e-2)
    assert ce.active_matmul_params(moe) == pytest.approx(2.73e9, rel=2e-2)  # "A3B" minus embeddings
    assert ce.kv_bytes_per_token(moe) == 98304


def test_decode_closed_form_equals_a_step_by_step_simulation():
    arch, hw = ce.arch_of("qwen3-30b-a3b"), ce.Hardware()
    prompt, lengths, tp = 1000, [3, 7, 7, 12], 8
    bw = tp * hw.hbm_bytes_per_s * hw.hbm_efficiency
    t, kvb = 0.0, ce.kv_bytes_per_token(arch)
    for step in range(max(lengths)):
        running = [n for n in lengths if n > step]
        t += hw.step_overhead_s + (ce.weight_bytes_read(arch, len(running)) + len(running) * kvb * (prompt + step)) / bw
    assert ce.decode_time(arch, hw, prompt, lengths, tp) == pytest.approx(t, rel=1e-12)


def test_moe_reads_only_the_routed_experts():
    moe = ce.arch_of("qwen3-30b-a3b")
    full = moe.num_params * 2
    experts = ce.expert_params(moe) * 2
    assert ce.weight_bytes_read(moe, 1) == pytest.approx(full - experts + experts * 8 / 128)
    assert ce.weight_bytes_read(moe, 10_000) == pytest.approx(full, rel=1e-6)
    dense = ce.arch_of("qwen3-4b")
    assert ce.weight_bytes_read(dense, 1) == dense.num_params * 2


def test_training_flops_are_three_forwards_with_logits_on_responses():
    arch = ce.arch_of("qwen3-4b")
    out = ce.train_step(arch, 128000, [1000, 3000])
    fwd = forward_flops(arch, 129000, 1000) + forward_flops(arch, 131000, 3000)
    assert out["model_flops"] == pytest.approx(3 * fwd) and out["hardware_flops_recompute"] == pytest.approx(4 * fwd)


def test_docs_quote_the_scripts_figures(tmp_path):
    out = tmp_path / "cost.json"
    assert ce.main(["--json", str(out)]) == 0
    docs = (ROOT / "docs" / "recipes.md").read_text()
    for result in json.loads(out.read_text())["results"]:
        for s in result["scenarios"]:
            pf = f"{s['train_model_flops'] / 1e15:,.0f} PF"
            decode = f"{s['decode_seconds']:,.0f} s"
            train30 = f"{s['train_seconds_at_mfu']['0.30']:.0f}"
            assert pf in docs and decode in docs and train30 in docs, \
                f"docs/recipes.md is out of date for {result['model']} at mean {s['mean_response']:.0f}: {pf}, {decode}"
