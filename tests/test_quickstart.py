"""README command 1, shortened: `bash scripts/quickstart.sh` with one training step, into a temporary run dir.

The same script users run: data build from the embedded config -> reward table -> tiny model on the build's
tokenizer -> `longtrace train` (Ray, Megatron-core trainer, SGLang engines on its CPU backend behind sglang-router,
rubric reward, wandb offline, eval, checkpoint)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.timeout(900)


def test_quickstart_one_step(tmp_path):
    run_dir = tmp_path / "quickstart"
    env = {**os.environ, "LONGTRACE_RUN_DIR": str(run_dir), "LONGTRACE_QUICKSTART_STEPS": "1",
           "LONGTRACE_VENV": sys.prefix, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh")], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=800)
    (tmp_path / "quickstart.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    out = proc.stdout
    for stage in ("== 1/4", "== 2/4", "== 3/4", "== 4/4", "== done"):
        assert stage in out, stage
    from slime_ext.sglang_env import sglang_unavailable

    why = sglang_unavailable("cpu")  # real SGLang where it can run here, else the fallback, saying why
    assert ("2 SGLang 0.5.23 engines on its CPU backend" in out) if why is None else (why in out), out[-3000:]

    # 1. the dataset: training records carry the rubric the reward reads
    train = (run_dir / "data" / "dataset" / "data" / "train.jsonl").read_text().splitlines()
    assert train
    first = json.loads(train[0])
    assert first["label"] and first["metadata"]["extra_reward_info"]["rubrics"]
    # 2. the reward table was scored
    assert (run_dir / "scored.jsonl").read_text().strip()
    # 4. one GRPO step with the rubric reward, then eval and a checkpoint
    rows = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rollout/step" in r]
    assert [r["rollout/step"] for r in steps] == [0]
    # a random model earns no reward, so the advantages (and the gradient) may be zero: the plumbing is what counts
    for key in ("rollout/reward_mean", "rollout/rubric_mean", "train/grad_norm", "perf/train_tokens_per_s_per_gpu"):
        assert key in steps[0], key
    assert any("eval/quickstart/accuracy" in r for r in rows)
    assert (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "iter_0000001"
    assert list((run_dir / "train" / "wandb").glob("offline-run-*"))
    assert "1/1" in out and "reward" in out  # the per-step table with progress
