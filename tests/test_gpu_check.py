"""scripts/gpu_check.sh --dry-run: the GPU check's stages at CPU sizes, so that the script cannot rot between the
rare sessions with a GPU. Every stage either passes or skips with a line naming what is missing here."""
import json
import os
import subprocess

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.timeout(900)


def test_gpu_check_dry_run_runs_every_stage(tmp_path):
    env = {**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else "python3",
           "GPU_CHECK_TIMEOUT_SCALE": "4"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=850)
    out = proc.stdout + proc.stderr
    rows = {r["stage"]: r for r in map(json.loads, (tmp_path / "gpu_check.jsonl").read_text().splitlines())}
    assert proc.returncode == 0, out[-4000:]
    assert list(rows) == ["env", "attention", "packing", "train", "sglang", "throughput"]
    assert rows["env"]["status"] == "ok" and rows["env"]["figures"]["megatron.core"] == "imports"
    for stage in ("attention", "packing", "train", "throughput"):
        assert rows[stage]["status"] == "ok", rows[stage]
    f = rows["attention"]["figures"]
    assert f["sdpa_fp32_max_diff_vs_local_fp32"] < 1e-4 and "te_fp32_max_diff_vs_local_fp32" not in f  # no TE here
    assert 0 < f["sdpa_bf16_max_diff_vs_local_fp32"] < 0.5  # bf16 differs, boundedly
    assert rows["packing"]["figures"]["sdpa_alone_vs_packed_max_diff"] < 1e-5
    t = rows["train"]["figures"]
    assert len(t["grad_norms"]) == 3 and t["logprob_diff_after_onload"] == 0.0
    assert rows["sglang"]["status"] == "skip" and "sglang" in rows["sglang"]["reason"]
    assert rows["throughput"]["figures"]["512"]["tokens_per_s"] > 0
    assert "stage" in out and "throughput" in out  # the summary table


def test_gpu_check_names_a_stage_that_timed_out(tmp_path):
    env = {**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else "python3",
           "GPU_CHECK_TIMEOUT_SCALE": "0.01"}  # env gets 1 s: its imports alone take longer
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--only", "env", "--out",
                           str(tmp_path)], cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 1
    row = json.loads((tmp_path / "gpu_check.jsonl").read_text().splitlines()[0])
    assert row["stage"] == "env" and row["status"] == "fail" and "timed out" in row["reason"]
