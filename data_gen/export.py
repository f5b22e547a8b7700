"""Export assembled samples as a Hugging Face ``datasets`` folder: JSONL and Parquet per split, stats.json and a
dataset card (README.md).

Layout::

    OUT/README.md                 dataset card: counts, overlap statistics, schema, how to load
    OUT/stats.json                dataset_stats over all exported samples
    OUT/data/{train,eval}.jsonl   one record per line
    OUT/data/{train,eval}.parquet the same records (explicit Arrow schema, row groups of ``row_group`` records)

Split: by question id (SHA-1 of it, so deterministic and stable when questions are added); every strategy of a
question lands in the same split. The record is slime's (LongTraceRL's) layout with a fixed schema, so the JSON
and Parquet files load the same way (docs/data_gen.md lists every field). The folder is written under
``OUT.tmp`` and renamed into place at the end: a crash leaves the previous export untouched. Records are
streamed (one Parquet row group in memory at a time).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from reward.rubric import parse_entity

from .dataset_stats import dataset_stats, overlap_rows

SPLITS = ("train", "eval")
DOC_TIERS = ("gold", "tier1", "tier2", "fill", "search", "random")


def split_of(question_id: str, eval_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha1(question_id.encode()).digest()[:4], "big") / 2 ** 32
    return "eval" if h < eval_fraction else "train"


def _int(v):
    return None if v is None else int(v)


def _str(v):
    return None if v is None else str(v)


def export_record(sample: dict, split: str) -> dict:
    """The sample with every field present and typed (the exported schema)."""
    meta = sample["metadata"]
    info = meta["extra_reward_info"]
    return {
        "id": str(sample["id"]), "source": str(sample.get("source", "longqa")),
        "input_messages": [{"role": str(m["role"]), "content": str(m["content"])} for m in sample["input_messages"]],
        "label": str(sample["label"]),
        "metadata": {
            "extra_reward_info": {"question": str(info["question"]),
                                  "rubrics": [parse_entity(r).name for r in info.get("rubrics", [])],
                                  "dataset_name": str(info.get("dataset_name", ""))},
            "question_id": str(meta["question_id"]), "split": split, "strategy": str(meta["strategy"]),
            "fill": str(meta.get("fill", "none")), "seed": int(meta.get("seed", 0)),
            "instruction_id": int(meta.get("instruction_id", 0)), "budget": int(meta["budget"]),
            "context_tokens": int(meta["context_tokens"]), "tokenizer": str(meta.get("tokenizer", "")),
            "tokenizer_fingerprint": str(meta.get("tokenizer_fingerprint", "")),
            "citations": str(meta.get("citations", "explicit")),
            "inferred_citations": [str(u) for u in meta.get("inferred_citations", [])],
            "agents": [str(a) for a in meta.get("agents", [])],
            "doc_counts": {t: int(meta.get("doc_counts", {}).get(t, 0)) for t in DOC_TIERS},
            "documents": [{
                "section_id": int(d["section_id"]), "tier": str(d["tier"]), "title": str(d.get("title") or ""),
                "url": str(d.get("url") or ""), "pid": _int(d.get("pid")), "source": str(d.get("source") or ""),
                "tokens": int(d.get("tokens", 0)),
                "provenance": [{"trajectory_id": _str(p.get("trajectory_id")), "agent": _str(p.get("agent")),
                                "turn": _int(p.get("turn")), "via": _str(p.get("via")), "query": _str(p.get("query")),
                                "rank": _int(p.get("rank"))} for p in d.get("provenance") or []],
            } for d in meta["documents"]],
        },
    }


def arrow_schema():
    import pyarrow as pa

    s, i = pa.string(), pa.int64()
    prov = pa.struct([("trajectory_id", s), ("agent", s), ("turn", i), ("via", s), ("query", s), ("rank", i)])
    doc = pa.struct([("section_id", i), ("tier", s), ("title", s), ("url", s), ("pid", i), ("source", s),
                     ("tokens", i), ("provenance", pa.list_(prov))])
    meta = pa.struct([
        ("extra_reward_info", pa.struct([("question", s), ("rubrics", pa.list_(s)), ("dataset_name", s)])),
        ("question_id", s), ("split", s), ("strategy", s), ("fill", s), ("seed", i), ("instruction_id", i),
        ("budget", i), ("context_tokens", i), ("tokenizer", s), ("tokenizer_fingerprint", s), ("citations", s),
        ("inferred_citations", pa.list_(s)), ("agents", pa.list_(s)),
        ("doc_counts", pa.struct([(t, i) for t in DOC_TIERS])), ("documents", pa.list_(doc)),
    ])
    return pa.schema([("id", s), ("source", s), ("input_messages", pa.list_(pa.struct([("role", s), ("content", s)]))),
                      ("label", s), ("metadata", meta)])


class _SplitWriter:
    def __init__(self, data_dir: Path, split: str, row_group: int, parquet: bool):
        import pyarrow.parquet as pq

        self.jsonl = open(data_dir / f"{split}.jsonl", "w", encoding="utf-8")
        self.schema = arrow_schema()
        self.parquet = pq.ParquetWriter(data_dir / f"{split}.parquet", self.schema, compression="zstd") if parquet else None
        self.rows: list[dict] = []
        self.row_group, self.count = row_group, 0

    def write(self, rec: dict) -> None:
        self.jsonl.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.count += 1
        if self.parquet is not None:
            self.rows.append(rec)
            if len(self.rows) >= self.row_group:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.parquet.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.jsonl.close()
        if self.parquet is not None:
            self._flush()
            self.parquet.close()


def export_dataset(samples: Iterable[dict], out_dir: str | Path, eval_fraction: float = 0.1, name: str = "longqa",
                   parquet: bool = True, row_group: int = 64, card_extra: dict | None = None,
                   on_record=lambda: None) -> dict:
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    writers = {sp: _SplitWriter(tmp / "data", sp, row_group, parquet) for sp in SPLITS}
    questions = {sp: set() for sp in SPLITS}

    def stream():
        for sample in samples:
            sp = split_of(str(sample["metadata"]["question_id"]), eval_fraction)
            rec = export_record(sample, sp)
            writers[sp].write(rec)
            questions[sp].add(rec["metadata"]["question_id"])
            yield rec

    try:
        stats = dataset_stats(stream(), on_record=on_record)
    finally:
        for w in writers.values():
            w.close()
    summary = {"samples": {sp: w.count for sp, w in writers.items()},
               "questions": {sp: len(q) for sp, q in questions.items()},
               "eval_fraction": eval_fraction, "files": ["data/" + f"{sp}.{ext}" for sp in SPLITS
                                                         for ext in (("jsonl", "parquet") if parquet else ("jsonl",))]}
    stats["export"] = summary
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    (tmp / "README.md").write_text(dataset_card(name, stats, summary, parquet, card_extra or {}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary


def dataset_card(name: str, stats: dict, summary: dict, parquet: bool, extra: dict) -> str:
    ext = "parquet" if parquet else "jsonl"
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    lines += [f"  - split: {sp}\n    path: data/{sp}.{ext}" for sp in SPLITS]
    lines += ["task_categories:", "- question-answering", "language:", "- en", "tags:", "- long-context",
              "- reinforcement-learning", "---", "", f"# {name}", "",
              "Long-context multi-hop question answering for reinforcement learning, built by LongTrace-RL "
              "(`longtrace data`), after LongTraceRL (arXiv 2605.31584): each sample is one user message holding "
              "an instruction, the gold documents of a random-walk question among distractor documents taken from "
              "search-agent trajectories (tier 1: opened but not cited; tier 2: seen in results, never opened), "
              "shuffled, then the question. The reward uses `label` (outcome judge) and "
              "`metadata.extra_reward_info.rubrics` (the gold chain's entities).", "", "## Counts", "",
              "| split | samples | questions |", "| --- | --- | --- |"]
    lines += [f"| {sp} | {summary['samples'][sp]} | {summary['questions'][sp]} |" for sp in SPLITS]
    for k, v in extra.items():
        lines.append(f"\n{k}: {v}")
    lines += ["", "## Statistics", "",
              "Share of distractor documents that contain at least one rubric entity (macro average over samples; "
              "the matcher of the rubric reward), next to the figures the LongTraceRL paper reports for its data:", "",
              "| strategy | tier | ours (%) | paper (%) | documents |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in overlap_rows(stats)]
    lines += ["", "| strategy | samples | context tokens mean (min-max) | documents per sample (mean by tier) |",
              "| --- | --- | --- | --- |"]
    for strategy, s in stats["strategies"].items():
        ct = s["context_tokens"]
        docs = ", ".join(f"{t} {v['mean']}" for t, v in s["documents_per_sample"].items())
        lines.append(f"| {strategy} | {s['samples']} | {ct['mean']} ({ct['min']}-{ct['max']}) | {docs} |")
    lines += ["", "Full figures (histograms included) are in `stats.json`.", "", "## Record", "",
              "- `id`: `<question_id>:<strategy>:<seed>`; `source`: routing key for slime's source configs",
              "- `input_messages`: one user message (instruction, `Documents:`, `<section id=... title=...>` blocks, "
              "`Question: ...`); the chat template is applied at rollout time",
              "- `label`: the gold answer",
              "- `metadata.extra_reward_info`: `question`, `rubrics` (gold chain entities), `dataset_name`",
              "- `metadata`: `question_id`, `split`, `strategy`, `fill`, `seed`, `instruction_id`, `budget`, "
              "`context_tokens` (upper bound with the chat template), `tokenizer`, `citations` "
              "(explicit / inferred / mixed), `inferred_citations`, `agents`, `doc_counts`, `documents` (per "
              "section: `section_id`, `tier`, `title`, `url`, `pid`, `source`, `tokens`, `provenance`)", "",
              "## Loading", "", "```python", "from datasets import load_dataset",
              f"ds = load_dataset(\"{ext}\", data_files={{\"train\": \"data/train.{ext}\", \"eval\": \"data/eval.{ext}\"}})",
              "```", ""]
    return "\n".join(lines)
