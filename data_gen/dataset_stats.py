"""Statistics of assembled samples: how often distractors mention the gold chain's entities, documents per tier,
context lengths (LongTraceRL §2.8).

**Overlap**: for each sample and tier, the share of its distractor documents that contain at least one rubric
entity, matched exactly as the rubric reward matches a response (``reward.rubric`` + ``reward.normalize``,
LongTraceRL-exact ``reference`` normalisation and substring matching by default; ``unicode`` / whole-word on
request, like the reward's flags). A document is its section as the model sees it: the ``title`` attribute and
the text. The figure per tier is the **macro average** over the samples that have at least one document of that
tier; ``tier1+tier2`` pools a sample's trajectory distractors (the paper's traj-tiered / traj-random figure,
where the tiers filled the whole context) and ``all_distractors`` every non-gold document, ``fill`` included. Figures are per strategy, since one file
may hold several (ablations).

The paper reports (Qwen3-4B data, KILT + web search agent): tier 1 63.23%, traj-tiered 50.03%, traj-random
42.16%, one-shot search 15.00%, random 1.35% (``PAPER``).

Reads the samples file once, one record at a time; only per-sample numbers are kept.
"""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from reward.normalize import normalize_bytes
from reward.rubric import matcher_for, parse_entities

DISTRACTOR_TIERS = ("tier1", "tier2", "fill", "search", "random")
PAPER = {("traj-tiered", "tier1"): 63.23, ("traj-tiered", "tier1+tier2"): 50.03,
         ("traj-random", "tier1+tier2"): 42.16, ("search", "all_distractors"): 15.00,
         ("random", "all_distractors"): 1.35}
_SECTION = re.compile(r'<section id="(\d+)" title="(.*?)">\n(.*?)</section>', re.DOTALL)


def sections(prompt: str) -> dict[int, str]:
    """section id -> the section's title and text, parsed from an assembled prompt."""
    return {int(m.group(1)): m.group(2).replace("&quot;", '"') + "\n" + m.group(3) for m in _SECTION.finditer(prompt)}


def sample_overlap(record: dict, mode: str = "reference", whole_word: bool = False) -> dict:
    """Per tier (and ``all_distractors``): (documents, documents with at least one rubric entity) of one sample."""
    meta = record["metadata"]
    rubrics = meta["extra_reward_info"].get("rubrics") or []
    matcher = matcher_for(parse_entities(rubrics), mode, whole_word)
    texts = sections(record["input_messages"][0]["content"])
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for doc in meta["documents"]:
        if doc["tier"] == "gold":
            continue
        text = texts.get(doc["section_id"])
        if text is None:
            raise ValueError(f"section {doc['section_id']} of {record.get('id')} is not in the prompt")
        hit = bool(rubrics) and bool(matcher.found(normalize_bytes(text, mode)))
        keys = (doc["tier"], "tier1+tier2", "all_distractors") if doc["tier"] in ("tier1", "tier2") else \
            (doc["tier"], "all_distractors")
        for key in keys:
            out[key][0] += 1
            out[key][1] += hit
    return dict(out)


def _summary(values: list[float]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "min": 0, "max": 0}
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values), "min": min(values),
            "max": max(values)}


def _histogram(values: list[int], bins: int = 10) -> list[dict]:
    if not values:
        return []
    hi = max(values)
    width = max(1, -(-hi // bins))
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, v // width)] += 1
    return [{"from": i * width, "to": (i + 1) * width, "samples": c} for i, c in enumerate(counts)]


def dataset_stats(records: Iterable[dict], mode: str = "reference", whole_word: bool = False,
                  on_record=lambda: None) -> dict:
    per = defaultdict(lambda: {"samples": 0, "shares": defaultdict(list), "docs": defaultdict(int),
                               "docs_hit": defaultdict(int), "per_sample_docs": defaultdict(list), "tokens": [],
                               "citations": defaultdict(int)})
    for rec in records:
        meta = rec["metadata"]
        s = per[meta.get("strategy", "?")]
        s["samples"] += 1
        s["tokens"].append(int(meta.get("context_tokens", 0)))
        s["citations"][meta.get("citations", "explicit")] += 1
        counts = meta.get("doc_counts", {})
        for tier in ("gold", *DISTRACTOR_TIERS):
            s["per_sample_docs"][tier].append(counts.get(tier, 0))
        for tier, (n, hit) in sample_overlap(rec, mode, whole_word).items():
            if n:
                s["shares"][tier].append(hit / n)
                s["docs"][tier] += n
                s["docs_hit"][tier] += hit
        on_record()
    out = {"matcher": {"normalization": mode, "whole_word": whole_word,
                       "rule": "a distractor overlaps when it contains at least one rubric entity (reward.rubric)"},
           "samples": sum(s["samples"] for s in per.values()), "strategies": {}}
    for strategy, s in sorted(per.items()):
        overlap = {}
        for tier in (*DISTRACTOR_TIERS, "tier1+tier2", "all_distractors"):
            shares = s["shares"].get(tier, [])
            if not shares:
                continue
            overlap[tier] = {"macro_share_pct": round(100 * statistics.fmean(shares), 2), "samples": len(shares),
                             "documents": s["docs"][tier], "documents_with_entity": s["docs_hit"][tier],
                             "paper_pct": PAPER.get((strategy, tier))}
        out["strategies"][strategy] = {
            "samples": s["samples"], "overlap": overlap,
            "documents_per_sample": {t: _summary(v) for t, v in s["per_sample_docs"].items() if any(v)},
            "context_tokens": {**_summary(s["tokens"]), "histogram": _histogram(s["tokens"])},
            "citations": dict(s["citations"]),
        }
    return out


def overlap_rows(stats: dict) -> list[tuple[str, str, str, str, str]]:
    """(strategy, tier, ours %, paper %, documents) rows for printing."""
    rows = []
    for strategy, s in stats["strategies"].items():
        for tier, o in s["overlap"].items():
            paper = o["paper_pct"]
            rows.append((strategy, tier, f"{o['macro_share_pct']:.2f}", "" if paper is None else f"{paper:.2f}",
                         f"{o['documents_with_entity']}/{o['documents']} in {o['samples']} samples"))
    return rows


def write_json_atomic(path: str | Path, obj) -> None:
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
