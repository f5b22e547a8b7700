"""`longtrace data ...` end to end on a small synthetic world, including resume, rejects and failures files."""
import json
import subprocess

import pytest

from .helpers import ROOT, longtrace_cmd

SUBCOMMANDS = ("synth-world", "ingest", "stats", "walk", "questions", "index", "search", "search-server", "agent",
               "pipeline", "import", "tiers", "assemble", "export", "build", "bench")


def cli(*args, check=True):
    proc = subprocess.run(longtrace_cmd("data", *map(str, args)), cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_subcommand_has_help(capsys):
    from data_gen.cli import main
    from slime_ext.cli import main as longtrace

    assert longtrace(["--help"]) == 0 and "data" in capsys.readouterr().out
    for sub in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([sub, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: longtrace data {sub}")


def test_pipeline_end_to_end_with_resume(tmp_path):
    w = tmp_path
    cli("synth-world", "--pages", 500, "--seed", 3, "--output", w / "world.jsonl")
    first = (w / "world.jsonl").read_bytes()
    cli("synth-world", "--pages", 500, "--seed", 3, "--output", w / "world.jsonl")
    assert (w / "world.jsonl").read_bytes() == first
    cli("ingest", "--input", w / "world.jsonl", "--store", w / "world.db")
    assert "pages" in cli("stats", "--store", w / "world.db").stdout
    cli("index", "--store", w / "world.db", "--index", w / "index")
    title = json.loads(first.splitlines()[40])["wikipedia_title"]
    assert title in cli("search", "--store", w / "world.db", "--index", w / "index", title, "-k", 3).stdout

    walk = ["walk", "--store", w / "world.db", "--output", w / "walks.jsonl", "--seeds", 4, "--walks-per-seed", 2,
            "--seed", 5]
    cli(*walk)
    walks = read(w / "walks.jsonl")
    assert len(walks) == 8 and len({x["walk_id"] for x in walks}) == 8
    proc = cli(*walk)  # resume: every seed is done
    assert read(w / "walks.jsonl") == walks and "seeds already done" in proc.stdout
    # more seeds: the first four are skipped, new ones appended, same walks for the old seeds
    cli(*walk[:6], 6, *walk[7:])
    more = read(w / "walks.jsonl")
    assert more[:8] == walks and len(more) == 12

    with open(w / "walks.jsonl", "a") as f:
        f.write("{broken\n" + json.dumps({"walk_id": "bad"}) + "\n")
        f.write(json.dumps({"walk_id": "nowhere", "nodes": [{"title": "No Such Page"}, {"title": "Nor This"}]}) + "\n")
    q = ["questions", "--store", w / "world.db", "--walks", w / "walks.jsonl", "--output", w / "q.jsonl"]
    cli(*q, "--limit", 5)
    assert len(read(w / "q.jsonl")) == 5
    proc = cli(*q)
    qs = read(w / "q.jsonl")
    assert len({x["question_id"] for x in qs}) == len(qs) >= 10
    assert "walks already done (resume)" in proc.stdout
    rejects = read(w / "q.rejects.jsonl")
    assert [r["line"] for r in rejects] == [13, 14]
    failures = read(w / "q.failures.jsonl")
    assert any(f["line"] == 15 and "not in the store" in f["error"] for f in failures)

    agent = ["agent", "--questions", w / "q.jsonl", "--output", w / "t.jsonl", "--store", w / "world.db",
             "--index", w / "index", "--samples", 2]
    cli(*agent)
    trajs = read(w / "t.jsonl")
    assert len(trajs) == 2 * len(qs) and all(t["schema"] == "longtrace.trajectory/v1" for t in trajs)
    assert any(t["correct"] for t in trajs)
    # a crash mid-write: drop the last trajectory and tear the one before; rerun completes without duplicates
    lines = (w / "t.jsonl").read_text().splitlines()
    (w / "t.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:50])
    proc = cli(*agent)
    again = read(w / "t.jsonl")
    assert sorted(t["trajectory_id"] for t in again) == sorted(t["trajectory_id"] for t in trajs)
    assert "already done (resume)" in proc.stdout


def test_ingest_cli_reports_rejects_and_missing_input(tmp_path):
    src = tmp_path / "k.jsonl"
    good = {"wikipedia_id": "1", "wikipedia_title": "Only", "text": ["Only\n", "Only page.\n"]}
    src.write_text(json.dumps(good) + "\nnot json\n")
    proc = cli("ingest", "--input", src, "--store", tmp_path / "s.db")
    assert f"{src}:2:" in proc.stderr and "lines rejected" in proc.stdout
    assert read(tmp_path / "s.rejects.jsonl")[0]["line"] == 2
    missing = cli("ingest", "--input", tmp_path / "nope.jsonl", "--store", tmp_path / "x.db", check=False)
    assert missing.returncode == 2 and "input file not found" in missing.stderr


def test_llm_modes_need_an_endpoint(tmp_path, small_world):
    (tmp_path / "walks.jsonl").write_text("")
    proc = cli("questions", "--store", small_world.db, "--walks", tmp_path / "walks.jsonl", "--output",
               tmp_path / "q.jsonl", "--mode", "llm", check=False)
    assert proc.returncode == 2 and "--llm-base-url" in proc.stderr
    (tmp_path / "q.jsonl").write_text("")
    proc = cli("agent", "--questions", tmp_path / "q.jsonl", "--output", tmp_path / "t.jsonl", "--format", "react",
               "--store", small_world.db, "--index", small_world.index_dir, check=False)
    assert proc.returncode == 2 and "carr format only" in proc.stderr


def test_llm_question_failures_are_recorded(tmp_path, small_world, fake_chat):
    import asyncio

    from data_gen.walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed

    walks = asyncio.run(walk_from_seed(small_world.store, pick_seeds(small_world.store, 1, seed=1)[0],
                                       WalkConfig(walks_per_seed=2), HeuristicChooser(), 1))
    (tmp_path / "walks.jsonl").write_text("".join(json.dumps(w) + "\n" for w in walks))
    server = fake_chat(lambda n, body: (200, "not json" if n % 2 else "{\"question\": 3}", 0))
    proc = cli("questions", "--store", small_world.db, "--walks", tmp_path / "walks.jsonl", "--output",
               tmp_path / "q.jsonl", "--mode", "llm", "--llm-base-url", server.url, "--llm-model", "m",
               "--attempts", 2, "--llm-retries", 0)
    failures = read(tmp_path / "q.failures.jsonl")
    assert sorted(f["line"] for f in failures) == [1, 2] and all("after 2 attempts" in f["error"] for f in failures)
    assert server.calls == 4 and "LLM calls" in proc.stdout
    assert (tmp_path / "q.jsonl").read_text() == ""


def test_bench_prints_figures(tmp_path):
    proc = cli("bench", "--pages", 2000, "--ingest-pages", 500, "--queries", 100, "--walk-seeds", 10)
    for label in ("pages/s", "queries/s", "walks/s", "BM25 index build", "json.loads floor"):
        assert label in proc.stdout
