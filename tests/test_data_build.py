"""`longtrace data build CONFIG` end to end on a small synthetic world, then resumed after an interruption."""
import json
import shutil

from .test_data_cli import cli, read


def test_build_end_to_end_and_resume(tmp_path):
    work = tmp_path / "work"
    config = tmp_path / "build.yaml"
    config.write_text(f"""
workdir: {work}
world: {{pages: 500, seed: 2}}
walks: {{seeds: 5, walks_per_seed: 2, seed: 2}}
agent: {{samples: 2}}
assembly: {{tokenizer: "local-bpe:2048", budget: 2048, strategies: [traj-tiered, random], fill: search}}
export: {{eval_fraction: 0.3, name: test set}}
""")
    proc = cli("build", config)
    assert "dataset ready" in proc.stdout + proc.stderr
    samples = read(work / "samples.jsonl")
    questions = read(work / "questions.jsonl")
    tiers = read(work / "tiers.jsonl")
    assert len(tiers) >= 5 and len(samples) == 2 * len(tiers)
    assert {s["metadata"]["strategy"] for s in samples} == {"traj-tiered", "random"}
    assert all(s["metadata"]["context_tokens"] <= 2048 for s in samples)
    assert {t["question_id"] for t in tiers} <= {q["question_id"] for q in questions}
    stats = json.loads((work / "dataset" / "stats.json").read_text())
    assert stats["export"]["samples"]["train"] + stats["export"]["samples"]["eval"] == len(samples)
    assert (work / "dataset" / "README.md").read_text().startswith("---\nconfigs:")

    # an interruption: assembly died mid-write (torn line), tiers were half written, export never ran
    lines = (work / "samples.jsonl").read_text().splitlines()
    (work / "samples.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    t_lines = (work / "tiers.jsonl").read_text().splitlines()
    (work / "tiers.jsonl").write_text("\n".join(t_lines[:2]) + "\n")
    shutil.rmtree(work / "dataset")
    proc = cli("build", config)
    out = proc.stdout + proc.stderr
    assert "already done (resume)" in out and "skipping synth-world" in out
    again = read(work / "samples.jsonl")
    assert sorted(s["id"] for s in again) == sorted(s["id"] for s in samples)  # no duplicates, nothing missing
    before = {s["id"]: s for s in samples}
    assert all(s == before[s["id"]] for s in again)  # deterministic: resumed samples are the same samples
    by_q = {t["question_id"]: t for t in tiers}
    resumed = read(work / "tiers.jsonl")
    assert len(resumed) == len(tiers) and all(t == by_q[t["question_id"]] for t in resumed)
    assert (work / "dataset" / "data" / "train.parquet").exists()


def test_build_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"assembly": {"budgett": 5}}))
    proc = cli("build", bad, check=False)
    assert proc.returncode == 2 and "budgett" in proc.stderr
