"""``longtrace data bench``: throughput of the data-generation stages on this machine (figures, no assertions).

1. Ingestion of KILT-shaped pages (18 paragraphs, ~3.5 KB of text, ~30 anchors, ~6 KB of JSON, a See also / References
   tail, like an average KILT page), one parser process; the floor is ``json.loads`` of the same lines.
2. A synthetic world of ``--pages`` pages: generation, ingestion, BM25 index build, then queries/s of
   ``SearchIndex.search`` (ranked hits with snippets) against bm25s's own ``retrieve`` call on the same index
   (the baseline), and walks/s with the heuristic chooser.
"""
from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from rich.table import Table

WORDS = ("the of and in to was is for on as by with he that at from his it an were are which this also be has or "
         "had first one their its new after who they two her she been other when time during there into school "
         "more years over only city university world war state national american film album band music "
         "season team river county church line station series company record released born played").split()


def kilt_shaped_records(n: int, seed: int):
    rng = random.Random(seed)
    for i in range(n):
        title = f"Page {i} {rng.choice(WORDS).title()}"
        text, anchors = [title + "\n"], []
        for p in range(1, 19):
            if p in (5, 11):
                text.append(f"Section::::{rng.choice(WORDS).title()}.\n")
                continue
            if p == 16:
                text.append("Section::::See also.\n")
                continue
            words = [rng.choice(WORDS) for _ in range(rng.randint(25, 45))]
            para = " ".join(words) + ".\n"
            for _ in range(2):
                w = rng.randrange(len(words))
                start = len(" ".join(words[:w])) + (1 if w else 0)
                target = rng.randrange(n)
                anchors.append({"paragraph_id": p, "start": start, "end": start + len(words[w]), "text": words[w],
                                "href": f"Page%20{target}", "wikipedia_title": f"Page {target}",
                                "wikipedia_id": str(10_000_000 + target)})
            text.append(para)
        yield {"_id": str(10_000_000 + i), "wikipedia_id": str(10_000_000 + i), "wikipedia_title": title,
               "text": text, "anchors": anchors, "categories": "Bench pages,Articles",
               "history": {"pageid": 10_000_000 + i, "revid": rng.randrange(10 ** 9)},
               "wikidata_info": {"wikidata_id": f"Q{i}"}}


def run_bench(args, out, console) -> int:
    from .search_index import SearchIndex, build_index, tokenize
    from .store import Store, connect, finalize, ingest
    from .synth_world import write_world
    from .walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp.name if tmp else args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    try:
        # 1. ingestion of KILT-shaped pages
        kilt = work / "kilt_shaped.jsonl"
        with open(kilt, "w", encoding="utf-8") as f:
            for rec in kilt_shaped_records(args.ingest_pages, args.seed):
                f.write(json.dumps(rec) + "\n")
        mb = kilt.stat().st_size / 1e6
        t = time.perf_counter()
        with open(kilt, "rb") as f:
            for line in f:
                json.loads(line)
        floor = time.perf_counter() - t
        db = work / "kilt_shaped.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        console.print(f"ingesting {args.ingest_pages:,} KILT-shaped pages ({mb:.0f} MB) ...")
        t = time.perf_counter()
        ingest(kilt, db, work / "kilt_shaped.rejects.jsonl", workers=1)
        total = time.perf_counter() - t
        conn = connect(db)
        t = time.perf_counter()
        finalize(conn)  # rerun alone to split load from finalize
        fin = time.perf_counter() - t
        conn.close()
        load = max(total - fin, 1e-9)
        rows.append(("ingest KILT-shaped pages (1 core)", f"{args.ingest_pages / load:,.0f} pages/s load, "
                     f"{args.ingest_pages / total:,.0f} pages/s with finalize", f"json.loads floor {args.ingest_pages / floor:,.0f} pages/s "
                     f"({load / floor:.1f}x the floor's time)"))

        # 2. synthetic world
        world, wdb, index_dir = work / "world.jsonl", work / "world.db", work / "index"
        console.print(f"synthetic world of {args.pages:,} pages ...")
        t = time.perf_counter()
        write_world(world, args.pages, args.seed)
        gen = time.perf_counter() - t
        rows.append(("synth-world generation", f"{args.pages / gen:,.0f} pages/s", f"{gen:.1f} s"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(wdb) + suffix).unlink(missing_ok=True)
        t = time.perf_counter()
        ingest(world, wdb, work / "world.rejects.jsonl")
        ing = time.perf_counter() - t
        rows.append(("ingest synthetic world", f"{args.pages / ing:,.0f} pages/s", f"{ing:.1f} s incl. finalize"))
        store = Store(wdb)
        t = time.perf_counter()
        meta = build_index(store, index_dir)
        build = time.perf_counter() - t
        rows.append(("BM25 index build", f"{build:.1f} s", f"{meta['pages']:,} pages, vocab {meta['vocab']:,}, "
                     f"tokenizing {meta['tokenize_s']:.1f} s"))
        index = SearchIndex(index_dir, store)
        rng = random.Random(args.seed)
        pids = rng.sample(range(1, len(store) + 1), min(args.queries, len(store)))
        queries = []
        for i, pid in enumerate(pids):
            page = store.page(pid)
            words = page.text().split()
            queries.append(page.title if i % 2 == 0 else " ".join(rng.sample(words, min(6, len(words)))))
        store.page.cache_clear()
        t = time.perf_counter()
        found = sum(index.search(q, 10)[0].pid == pid for q, pid in zip(queries[::2], pids[::2]))
        for q in queries[1::2]:
            index.search(q, 10)
        ours = time.perf_counter() - t
        tokenized = [tokenize(q) or ["the"] for q in queries]
        t = time.perf_counter()
        for toks in tokenized:
            index.retriever.retrieve([toks], k=10, show_progress=False, n_threads=0)
        base = time.perf_counter() - t
        rows.append(("search: ranked hits + snippets (1 core)", f"{len(queries) / ours:,.0f} queries/s",
                     f"bm25s retrieve() {len(queries) / base:,.0f} queries/s (ratio {base / ours:.2f}x); "
                     f"title queries with the page first: {found}/{len(queries[::2])}"))

        cfg = WalkConfig()
        seeds = pick_seeds(store, args.walk_seeds, args.seed)

        async def walks():
            n = 0
            for s in seeds:
                n += len(await walk_from_seed(store, s, cfg, HeuristicChooser(), args.seed))
            return n

        t = time.perf_counter()
        n_walks = asyncio.run(walks())
        wt = time.perf_counter() - t
        rows.append(("random walks, heuristic chooser", f"{n_walks / wt:,.0f} walks/s", f"{n_walks} walks of {cfg.k} pages "
                     f"from {len(seeds)} seeds in {wt:.1f} s"))
    finally:
        if tmp is not None:
            tmp.cleanup()
    table = Table(title="data generation throughput (this machine)")
    for col in ("stage", "figure", "detail / baseline"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    out.print(table)
    console.print("targets: ingestion >= 2,000 pages/s per core; search >= 200 queries/s per core on 100K pages")
    return 0
