"""`longtrace reward score`: batch scoring with rejects and resume, and the bench command."""
import json
import subprocess

import pytest

from .helpers import ROOT, longtrace_cmd

SAMPLE = ROOT / "reward" / "data" / "sample_responses.jsonl"


def run_cli(*args, check=True):
    proc = subprocess.run(longtrace_cmd("reward", *args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_the_bundled_sample(tmp_path):
    out = tmp_path / "scored.jsonl"
    run_cli("score", "--input", str(SAMPLE), "--output", str(out))
    rows = {r["key"]: r for r in read(out)}
    assert len(rows) == len(SAMPLE.read_text().splitlines())
    assert rows["id:g1-s1"]["reward"] == pytest.approx(0.7 + 0.3 * 0.8)  # group max is 1.0
    assert rows["id:g1-s4"]["invalid_reason"] == "truncated"
    assert rows["id:solo-2"]["correct"]  # slime-layout record in history mode


def test_bad_lines_go_to_rejects_with_line_numbers(tmp_path):
    lines = SAMPLE.read_text().splitlines()[:2]
    inp = tmp_path / "in.jsonl"
    bad_schema = {"label": "x", "extra_reward_info": {"rubrics": "not a list"}, "response": "r"}
    inp.write_text("\n".join([lines[0], "{broken json", json.dumps(bad_schema), lines[1], lines[0]]) + "\n")
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    proc = run_cli("score", "--input", str(inp), "--output", str(out), "--rejects", str(rejects))
    assert len(read(out)) == 2
    rej = read(rejects)
    assert [r["line"] for r in rej] == [2, 3, 5]
    assert "not valid JSON" in rej[0]["error"]
    assert "extra_reward_info.rubrics" in rej[1]["error"]
    assert "appears more than once" in rej[2]["error"]
    assert f"{inp}:2:" in proc.stderr  # logged as file:line


def test_resume_skips_finished_lines_and_repairs_a_torn_tail(tmp_path):
    out = tmp_path / "out.jsonl"
    run_cli("score", "--input", str(SAMPLE), "--output", str(out))
    full = out.read_text().splitlines()
    # simulate a crash: keep the first 5 lines and half of the 6th
    out.write_text("\n".join(full[:5]) + "\n" + full[5][: len(full[5]) // 2])
    proc = run_cli("score", "--input", str(SAMPLE), "--output", str(out))
    resumed = out.read_text().splitlines()
    assert len(resumed) == len(full)
    assert sorted(json.loads(x)["key"] for x in resumed) == sorted(json.loads(x)["key"] for x in full)
    assert "lines already done (resume)" in proc.stdout
    rows = {json.loads(x)["key"]: json.loads(x)["reward"] for x in resumed}
    assert rows == {json.loads(x)["key"]: json.loads(x)["reward"] for x in full}  # same scores after resume


def test_split_groups_are_rejected(tmp_path):
    lines = [json.loads(x) for x in SAMPLE.read_text().splitlines()]
    g1 = [x for x in lines if x.get("group_id") == "g1"]
    g2 = [x for x in lines if x.get("group_id") == "g2"]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps(x) for x in [g1[0], g2[0], g1[1]]) + "\n")
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    run_cli("score", "--input", str(inp), "--output", str(out), "--rejects", str(rej))
    assert "must be adjacent" in read(rej)[0]["error"] and read(rej)[0]["line"] == 3


def test_missing_input_is_a_clear_error(tmp_path):
    proc = run_cli("score", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl"), check=False)
    assert proc.returncode == 2 and "input file not found" in proc.stderr


def test_bench_prints_figures_and_the_regex_ratio():
    proc = run_cli("bench", "--responses", "16", "--kb", "8", "--regimes", "rare/ASCII,frequent/non-ASCII")
    assert "MB/s" in proc.stdout and "ratio vs regex pass" in proc.stdout and "frequent/non-ASCII" in proc.stdout
