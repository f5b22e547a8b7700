"""Document tiers per question, pooled over its kept (correct) search-agent trajectories (LongTraceRL §2.5).

    gold     the walk's pages (the question's ``gold_pages``): always in the context, never a distractor
    cited    pages the agent cited (only citations of URLs some tool output showed): never a distractor
    tier 1   opened successfully (in any kept trajectory) but not cited       -> high-confusability distractors
    tier 2   seen in search results, never opened, not cited                  -> low-confusability distractors

Agents without citations (LiteResearcher, DR-Venus, DeepResearcher, Search-R1: ``has_citations`` false, or
any non-CaRR format without cite events) get **inferred** citations: URLs written in the final answer text, and
opened pages whose text contains the trajectory's final answer (whole words, unicode normalisation). The tier
record says ``citations: explicit | inferred | mixed | none`` and lists each inferred URL with its reason.

Each candidate is resolved to full text: by URL in the local corpus (the store), else the page text the agent
itself saw when it opened the page (imports keep it; ``source: trajectory``). A candidate known only by URL and
snippet that the store does not have is **unresolved**: counted and listed, never used.

Dropped (and listed under ``dropped``): documents that contain the question text (its normalised text, or any
13-token window of it when it is that long: CaRR's leak rule), documents that duplicate a gold page (same store
page reached by another URL, or the same normalised content hash) and documents that duplicate an earlier
candidate (tier 1 is processed before tier 2, so a duplicate keeps its higher tier).

Provenance: every document lists up to ``MAX_PROVENANCE`` sightings ``{trajectory_id, agent, turn, via
(search | open), query, rank}`` and ``sightings`` (how often it was seen in all).

Memory: one pass over the trajectory files keeps, per question, the URLs with their provenance (and the text
of opened pages the store does not have); no trajectory is held whole.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

from reward.normalize import normalize_bytes
from reward.rubric import Entity, EntityMatcher

from .store import Store
from .trajectory import url_key
from .urls import urls_in_text

MAX_PROVENANCE = 5
LEAK_NGRAM = 13


def content_hash(text: str) -> str:
    return hashlib.sha1(normalize_bytes(text, "unicode")).hexdigest()


class LeakCheck:
    """Does a document contain the question text? Whole normalised question, or any 13-token window."""

    def __init__(self, question: str, n: int = LEAK_NGRAM):
        q = normalize_bytes(question, "unicode")
        tokens = q.split(b" ")
        if len(tokens) <= n:
            self.needles = [q] if q else []
        else:
            self.needles = sorted({b" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)})
        self._matcher = EntityMatcher([Entity(x.decode()) for x in self.needles], "unicode", whole_word=True) \
            if self.needles else None

    def leaks(self, normalised_doc: bytes) -> bool:
        return bool(self._matcher and self._matcher.found(normalised_doc))


@dataclass
class _Doc:
    key: str
    url: str
    title: str = ""
    provenance: list = field(default_factory=list)
    sightings: int = 0
    text: str | None = None  # the page as the agent saw it (only kept when the store lacks the URL)

    def seen(self, prov: dict, title: str = "") -> None:
        self.sightings += 1
        if len(self.provenance) < MAX_PROVENANCE:
            self.provenance.append(prov)
        if title and not self.title:
            self.title = title


@dataclass
class _Pool:
    """What the kept trajectories of one question did, pooled."""
    searched: dict = field(default_factory=dict)  # key -> _Doc, in order of first sighting
    opened: dict = field(default_factory=dict)
    cited: dict = field(default_factory=dict)  # key -> {"url", "trajectory_id", "reason"}
    inferred: dict = field(default_factory=dict)
    pending_inference: list = field(default_factory=list)  # (trajectory_id, final_answer, [opened keys])
    agents: set = field(default_factory=set)
    kept: int = 0
    skipped: int = 0
    explicit_agents: int = 0
    inferred_agents: int = 0


def _cites_natively(t: dict) -> bool:
    if "has_citations" in t:
        return bool(t["has_citations"])
    return t.get("format") == "carr" or any(e.get("type") == "cite" for e in t.get("events", []))


class TierBuilder:
    """Accumulate trajectories (``add``), then ``tiers(question)`` for each question."""

    def __init__(self, store: Store, correct_only: bool = True, infer_citations: bool = True):
        self.store, self.correct_only, self.infer_citations = store, correct_only, infer_citations
        self.pools: dict[str, _Pool] = {}

    def _resolvable(self, url: str) -> bool:
        return self.store.resolve_url(url) is not None

    def add(self, t: dict) -> bool:
        pool = self.pools.setdefault(t["question_id"], _Pool())
        if self.correct_only and not t.get("correct"):
            pool.skipped += 1
            return False
        pool.kept += 1
        tid, agent = t.get("trajectory_id", ""), t.get("agent", "")
        pool.agents.add(agent)
        last_query: dict[str, tuple] = {}
        opened_here, seen_here = [], set()
        for e in t.get("events", []):
            kind = e.get("type")
            if kind == "search":
                for r in e.get("results", []):
                    key = url_key(r["url"])
                    prov = {"trajectory_id": tid, "agent": agent, "turn": e.get("turn"), "via": "search",
                            "query": e.get("query"), "rank": r.get("rank")}
                    pool.searched.setdefault(key, _Doc(key, r["url"])).seen(prov, r.get("title") or "")
                    last_query.setdefault(key, (e.get("query"), r.get("rank")))
                    seen_here.add(key)
            elif kind == "open" and e.get("ok") and e.get("url"):
                key = url_key(e["url"])
                query, rank = last_query.get(key, (None, None))
                prov = {"trajectory_id": tid, "agent": agent, "turn": e.get("turn"), "via": "open", "query": query,
                        "rank": rank}
                doc = pool.opened.setdefault(key, _Doc(key, e["url"]))
                doc.seen(prov, e.get("title") or "")
                if doc.text is None and e.get("text") and e.get("text_kind") in ("page_markdown", "passage") \
                        and not self._resolvable(e["url"]):
                    doc.text = e["text"]
                opened_here.append(key)
                seen_here.add(key)
            elif kind == "cite" and e.get("seen", True):
                pool.cited.setdefault(url_key(e["url"]), {"url": e["url"], "trajectory_id": tid, "reason": "explicit"})
        if _cites_natively(t):
            pool.explicit_agents += 1
        elif self.infer_citations:
            pool.inferred_agents += 1
            for u in urls_in_text(t.get("final_text") or "") + [u for u in (t.get("citations") or [])]:
                key = url_key(u)
                if key in seen_here:
                    pool.inferred.setdefault(key, {"url": u, "trajectory_id": tid, "reason": "url_in_answer"})
            if t.get("final_answer"):
                pool.pending_inference.append((tid, str(t["final_answer"]), opened_here))
        return True

    def _doc_text(self, doc: _Doc) -> tuple[str | None, dict]:
        pid = self.store.resolve_url(doc.url)
        if pid is not None:
            page = self.store.page(pid)
            return page.text(), {"pid": pid, "title": page.title, "url": page.url, "source": "store"}
        if doc.text:
            return doc.text, {"pid": None, "title": doc.title, "url": doc.url, "source": "trajectory"}
        return None, {}

    def tiers(self, question: dict) -> dict | None:
        """The tier record of a question, or None when no kept trajectory exists for it."""
        pool = self.pools.get(question["question_id"])
        if pool is None or pool.kept == 0:
            return None
        gold = []
        gold_keys, gold_pids, gold_hashes = set(), set(), set()
        for g in question.get("gold_pages", []):
            pid = g.get("pid") if g.get("pid") is not None else self.store.resolve_url(g["url"])
            page = self.store.page(pid) if pid is not None else None
            gold_keys.add(url_key(g["url"]))
            if page is not None:
                gold_pids.add(page.pid)
                gold_hashes.add(content_hash(page.text()))
                gold.append({"pid": page.pid, "title": page.title, "url": page.url, "source": "store"})
            else:
                gold.append({"pid": None, "title": g.get("title"), "url": g["url"], "source": "unresolved"})

        # inferred citations: opened pages whose text has the trajectory's answer
        for tid, answer, keys in pool.pending_inference:
            matcher = EntityMatcher([Entity(answer)], "unicode", whole_word=True)
            for key in keys:
                if key in pool.cited or key in pool.inferred or key in gold_keys:
                    continue
                text, _ = self._doc_text(pool.opened[key])
                if text and matcher.found(normalize_bytes(text, "unicode")):
                    pool.inferred[key] = {"url": pool.opened[key].url, "trajectory_id": tid, "reason": "contains_answer"}
        cited = {**pool.inferred, **pool.cited}

        leak = LeakCheck(question["question"])
        dropped = {"gold_duplicate": [], "contains_question": [], "duplicate": [], "unresolved": []}
        taken_pids, taken_hashes = set(), set()

        def resolve(doc: _Doc, tier: str) -> dict | None:
            text, info = self._doc_text(doc)
            if text is None:
                dropped["unresolved"].append(doc.url)
                return None
            h = content_hash(text)
            if info["pid"] in gold_pids or h in gold_hashes:
                dropped["gold_duplicate"].append(doc.url)
                return None
            if (info["pid"] is not None and info["pid"] in taken_pids) or h in taken_hashes:
                dropped["duplicate"].append(doc.url)
                return None
            if leak.leaks(normalize_bytes(text, "unicode")):
                dropped["contains_question"].append(doc.url)
                return None
            if info["pid"] is not None:
                taken_pids.add(info["pid"])
            taken_hashes.add(h)
            out = {**info, "tier": tier, "sha1": h, "chars": len(text), "sightings": doc.sightings,
                   "provenance": doc.provenance}
            if info["source"] == "trajectory":
                out["text"] = text
            return out

        tier1 = [d for d in (resolve(doc, "tier1") for key, doc in pool.opened.items()
                             if key not in cited and key not in gold_keys) if d]
        tier2 = [d for d in (resolve(doc, "tier2") for key, doc in pool.searched.items()
                             if key not in pool.opened and key not in cited and key not in gold_keys) if d]
        mode = ("mixed" if pool.explicit_agents and pool.inferred_agents else "explicit" if pool.explicit_agents
                else "inferred" if pool.inferred_agents else "none")
        return {
            "question_id": question["question_id"], "question": question["question"], "answer": question["answer"],
            "rubric": question.get("rubric", []), "gold": gold, "tier1": tier1, "tier2": tier2,
            "cited": list(cited), "citations": mode,
            "inferred_citations": list(pool.inferred.values()),
            "dropped": dropped, "agents": sorted(pool.agents),
            "counts": {"trajectories_kept": pool.kept, "trajectories_skipped": pool.skipped, "gold": len(gold),
                       "tier1": len(tier1), "tier2": len(tier2), "cited": len(cited),
                       **{f"dropped_{k}": len(v) for k, v in dropped.items()}},
        }


def build_tiers(store: Store, questions: Iterable[dict], trajectories: Iterable[dict], **kw) -> list[dict]:
    """In-memory convenience (tests, small jobs): tier records for the questions that have kept trajectories."""
    b = TierBuilder(store, **kw)
    for t in trajectories:
        b.add(t)
    return [r for r in (b.tiers(q) for q in questions) if r is not None]


def run_tiers(store: Store, questions_path, trajectory_paths, output, failures_path=None, rejects_path=None,
              correct_only: bool = True, infer_citations: bool = True, resume: bool = True,
              on_record=lambda: None) -> dict:
    """Tier records for every question of ``questions_path`` with kept trajectories, appended to ``output`` (keyed
    by question_id; finished questions skipped on a rerun). Questions without a kept trajectory go to the failures
    file; malformed trajectory or question lines to the rejects file."""
    from pathlib import Path

    from reward.jsonl import Rejects, ResumableOutput, read_jsonl

    output = Path(output)
    out = ResumableOutput(output, key_field="question_id", resume=resume)
    rejects = Rejects(rejects_path or output.with_suffix(".rejects.jsonl"),
                      ", ".join(str(p) for p in [questions_path, *trajectory_paths]))
    failures = Rejects(failures_path or output.with_suffix(".failures.jsonl"), questions_path)
    b = TierBuilder(store, correct_only=correct_only, infer_citations=infer_citations)
    counts = {"trajectories": 0, "trajectories_kept": 0, "questions": 0, "written": 0, "skipped_done": 0,
              "no_kept_trajectory": 0, "rejected_lines": 0, "unknown_question_trajectories": 0,
              "tier1": 0, "tier2": 0, "unresolved": 0, "dropped": 0}
    for path in trajectory_paths:
        for line, t in read_jsonl(path):
            on_record()
            if isinstance(t, Exception) or not isinstance(t, dict) or not isinstance(t.get("question_id"), str) \
                    or not isinstance(t.get("events"), list):
                why = f"not valid JSON: {t.msg}" if isinstance(t, Exception) else "a trajectory needs 'question_id' and 'events'"
                rejects.add(line, f"{Path(path).name}: {why}", getattr(t, "doc", t))
                counts["rejected_lines"] += 1
                continue
            counts["trajectories"] += 1
            counts["trajectories_kept"] += b.add(t)
    known = set()
    for line, q in read_jsonl(questions_path):
        on_record()
        if isinstance(q, Exception) or not isinstance(q, dict) or not all(
                isinstance(q.get(k), str) for k in ("question_id", "question", "answer")):
            rejects.add(line, f"{Path(questions_path).name}: a question needs string question_id, question, answer",
                        getattr(q, "doc", q))
            counts["rejected_lines"] += 1
            continue
        counts["questions"] += 1
        known.add(q["question_id"])
        if q["question_id"] in out.done:
            counts["skipped_done"] += 1
            continue
        rec = b.tiers(q)
        if rec is None:
            pool = b.pools.get(q["question_id"])
            failures.add(line, f"{q['question_id']}: no kept trajectory ("
                         + (f"{pool.skipped} incorrect" if pool else "none imported") + ")", q["question_id"])
            counts["no_kept_trajectory"] += 1
            continue
        out.write(rec)
        counts["written"] += 1
        counts["tier1"] += len(rec["tier1"])
        counts["tier2"] += len(rec["tier2"])
        counts["unresolved"] += len(rec["dropped"]["unresolved"])
        counts["dropped"] += sum(len(v) for k, v in rec["dropped"].items() if k != "unresolved")
    counts["unknown_question_trajectories"] = sum(p.kept + p.skipped for qid, p in b.pools.items() if qid not in known)
    out.close()
    rejects.close()
    failures.close()
    return counts
