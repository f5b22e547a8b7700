"""``longtrace data bench --assembly``: samples/s and peak memory of 128K-token context assembly (no assertions).

Set-up (not timed): a synthetic world (``--pages``, 20,000 by default here), walks, template questions, scripted
agent trajectories (3 per question) and their tier records, written to files as a real build would.

Measured, on the same ``--assembly-samples`` tier records, with the strategy traj-tiered topped up by one-shot
search (the tiers of the synthetic world hold ~10K tokens, far from 128K):

1. **cold**: an empty token-count cache, so every document is tokenised once (the cost of a first build);
2. **warm**: the same documents again with the cache filled (another seed: new shuffles and instructions; what
   other strategies, seeds and reruns of a build cost);
3. **baseline**: tokenising each final prompt once, the least any method that re-tokenises whole contexts pays.

Each reports samples/s (wall) and samples per CPU-second (the per-core figure: the Rust tokenizer uses every core
for batches), the ratio to the baseline, the gap between the cached-count bound and the exact count of the
final prompts, and the peak RSS of the process. Samples stream to a file (one in memory at a time).
"""
from __future__ import annotations

import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from rich.table import Table


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_assembly_bench(args, out, console) -> int:
    from reward.jsonl import read_jsonl
    from reward.rule_judge import RuleJudge

    from .agent import AgentConfig, ScriptedAgent, run_trajectory
    from .assembly import Assembler, AssemblyConfig, run_assembly
    from .browser import LocalBackend
    from .questions import QuestionError, template_question, walk_pages
    from .search_index import SearchIndex, build_index
    from .store import Store, ingest
    from .synth_world import write_world
    from .tiers import run_tiers
    from .tokens import TokenCounter, load_tokenizer, qwen_tokenizer_dir
    from .walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    w = Path(tmp.name if tmp else args.workdir)
    w.mkdir(parents=True, exist_ok=True)
    pages = args.pages or 20_000
    n = args.assembly_samples
    spec = args.tokenizer or ("qwen" if qwen_tokenizer_dir() else "local-bpe")
    console.print(f"set-up: {pages}-page world, {n} questions, scripted trajectories, tiers (not timed)")
    if not (w / "world.db").exists():
        write_world(w / "world.jsonl", pages, args.seed)
        ingest(w / "world.jsonl", w / "world.db")
    store = Store(w / "world.db")
    if not (w / "index").exists():
        build_index(store, w / "index")
    index = SearchIndex(w / "index", store)
    import json

    async def make_questions():
        qs, judge = [], RuleJudge()
        for s in pick_seeds(store, 3 * n, seed=args.seed):
            for walk in await walk_from_seed(store, s, WalkConfig(walks_per_seed=1), HeuristicChooser(), args.seed):
                try:
                    qs.append(template_question(walk, walk_pages(store, walk)))
                except QuestionError:
                    pass
            if len(qs) >= n:
                break
        backend = LocalBackend(index, store)
        with open(w / "trajectories.jsonl", "w") as f:
            for q in qs:
                for i in range(3):
                    t = await run_trajectory(q, i, ScriptedAgent(), backend, AgentConfig(), judge)
                    f.write(json.dumps(t) + "\n")
        return qs

    qs = asyncio.run(make_questions())
    (w / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    run_tiers(store, w / "questions.jsonl", [w / "trajectories.jsonl"], w / "tiers.jsonl", resume=False)
    tok, desc = load_tokenizer(spec, corpus=(p.text() for p in store.iter_pages()), cache_dir=w)
    console.print(f"tokenizer: {desc}")
    rss_setup = _rss_mb()

    def measure(seed: int, counter: TokenCounter, name: str) -> dict:
        a = Assembler(store, counter, AssemblyConfig(budget=args.budget, strategy="traj-tiered", fill="search",
                                                     seed=seed), index=index, tokenizer_name=desc)
        path = w / f"samples_{name}.jsonl"
        t0, c0 = time.perf_counter(), _cpu()
        counts = run_assembly([a], w / "tiers.jsonl", path, resume=False)
        return {"samples": counts["written"], "wall": time.perf_counter() - t0, "cpu": _cpu() - c0, "path": path,
                "tokens": counts["tokens"], "counted": counter.tokens_counted}

    counter = TokenCounter(tok)
    cold = measure(1, counter, "cold")
    before = counter.tokens_counted
    warm = measure(2, counter, "warm")
    warm["counted"] = counter.tokens_counted - before

    gaps, t0, c0, k = [], time.perf_counter(), _cpu(), 0
    for _, rec in read_jsonl(warm["path"]):
        exact = counter.count_uncached(rec["input_messages"][0]["content"]) + counter.chat_overhead()
        gaps.append(rec["metadata"]["context_tokens"] - exact)
        k += 1
    base = {"samples": k, "wall": time.perf_counter() - t0, "cpu": _cpu() - c0}
    rss = _rss_mb()

    table = Table(title=f"context assembly at {args.budget:,} tokens, traj-tiered + search fill ({desc.split(' (')[0]}, "
                        f"{os.cpu_count()} cores)")
    for col in ("run", "samples", "samples/s", "samples per CPU-s", "vs baseline", "tokens tokenised"):
        table.add_column(col)
    bps = base["samples"] / base["wall"]
    for label, r in (("cold cache (every document tokenised once)", cold), ("warm cache (counts reused)", warm)):
        sps = r["samples"] / r["wall"]
        table.add_row(label, str(r["samples"]), f"{sps:.2f}", f"{r['samples'] / max(r['cpu'], 1e-9):.2f}",
                      f"{sps / bps:.1f}x", f"{r['counted']:,}")
    table.add_row("baseline: tokenise each final prompt once", str(base["samples"]), f"{bps:.2f}",
                  f"{base['samples'] / max(base['cpu'], 1e-9):.2f}", "1.0x", f"{warm['tokens']:,}")
    out.print(table)
    mean_tokens = warm["tokens"] / max(1, warm["samples"])
    summary = Table(title="accounting and memory", show_header=False)
    summary.add_row("tokenizer", desc)
    summary.add_row("mean context tokens (bound)", f"{mean_tokens:,.0f}")
    summary.add_row("bound - exact tokens per prompt (min / mean / max)",
                    f"{min(gaps)} / {statistics.fmean(gaps):.1f} / {max(gaps)}" if gaps else "-")
    summary.add_row("peak RSS after set-up / after the runs", f"{rss_setup:.0f} MB / {rss:.0f} MB")
    summary.add_row("target", ">= 5 samples/s per core at 128K")
    out.print(summary)
    store.close()
    if tmp:
        tmp.cleanup()
    return 0
