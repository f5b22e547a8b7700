"""Long-context assembly: gold documents plus distractors up to a token budget, shuffled, as one user message.

For each tier record (tiers.py) and strategy:

1. the fixed part is counted: one of ``INSTRUCTIONS`` (picked by the sample's seeded RNG), the "Documents:" line,
   the question line, and the chat template's own tokens around one user message (measured once); the budget
   L (default 131,072 tokens) covers all of it, so the rollout prompt is at most L tokens;
2. **all gold documents** go in (a sample whose gold documents alone exceed the budget fails with a reason:
   nothing is truncated);
3. distractors in the strategy's order, first fit: a document that does not fit the remaining budget is skipped
   (and counted) and the next one tried, until less than ``min_doc_tokens`` is left or the candidates run out:
       traj-tiered  (default) tier 1, then tier 2, each in order of first sighting
       traj-random  tier 1 and tier 2 together in a seeded random order
       search       one-shot BM25 for the question text (``search_depth`` hits, best first)
       random       uniformly random corpus pages
   ``fill`` (``none`` | ``search`` | ``random``) tops a trajectory strategy up once its tiers run out; filled
   documents are labelled ``fill``. Search and random candidates skip the gold pages, disambiguation pages,
   pages containing the question (tiers.LeakCheck) and duplicates (same page or content hash);
4. the chosen documents (gold included) are shuffled with a RNG seeded by (seed, question id, strategy) and
   numbered 1..N in their new order.

Prompt (the question last; ``input_messages`` is one user message, the template is applied at rollout)::

    <instruction>

    Documents:

    <section id="1" title="Page title">
    page text
    </section>

    <section id="2" title="...">
    ...
    </section>

    Question: <question>

Token accounting: each document's text is counted once and cached (tokens.TokenCounter), never the whole
context. The prompt is cut into pieces counted on their own: instruction + ``"\n\nDocuments:"``; per section
``'\n\n<section id="'``, the id's digits, ``'" title="..">\n'``, the text with its final newline, and
``"</section>"``; and ``"\n\nQuestion: " + question``. Every cut lies between a character class change where
Qwen's and GPT-2-style pre-tokenizers split (punctuation | digits, newline | "<"), except where a piece ending in
">" or ":" meets the newlines of the next: Qwen's pre-tokenizer glues those together. That junction effect is
measured once per tokenizer (``j_first``, ``j_mid``, ``j_last``: count of the joined pair minus the parts) and
added per junction. ``context_tokens`` in the record is this sum (chat template included); the tests compare it
with the real tokenizer on the final prompt (equal for Qwen's tokenizer and a byte-level BPE), and the bench
reports the gap. Section ids are 1..N whichever document gets which, so their tokens are known while choosing,
and the running count equals the final one: the context fills the budget to within one document.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from reward.normalize import normalize_bytes
from reward.schema import QUESTION_PREFIX

from .store import Store
from .tiers import LeakCheck, content_hash
from .tokens import TokenCounter

STRATEGIES = ("traj-tiered", "traj-random", "search", "random")
FILLS = ("none", "search", "random")
INSTRUCTIONS = (
    "Answer the question at the end using the documents below. Many of them are unrelated or only look relevant; "
    "rely on the ones that actually support your answer.",
    "Read the documents that follow and answer the final question. Base every step of your answer on what the "
    "documents say.",
    "The documents below may hold the information you need. Work out the answer to the question from them, and do "
    "not add facts they do not state.",
    "Use only the material in the following documents to answer the question that comes after them. If the "
    "documents do not settle it, say so.",
    "Below is a collection of documents, followed by a question. Trace the chain of facts the question describes "
    "through the documents and give a concise answer.",
    "Some of the documents below bear on the question and many do not. Find the relevant ones, connect them, and "
    "answer briefly.",
    "Answer the question after the documents. Point to the documents that support each step of your reasoning, "
    "and keep the final answer short.",
    "Here are several documents. The question at the end needs facts from more than one of them; combine what "
    "they say to answer it.",
)
DOCS_HEADER = "\n\nDocuments:"
SECTION_FOOTER = "</section>"


class AssemblyError(ValueError):
    """A sample that cannot be assembled (the message says why)."""


@dataclass
class AssemblyConfig:
    budget: int = 131_072
    strategy: str = "traj-tiered"
    seed: int = 0
    fill: str = "none"
    dataset_name: str = "longqa"
    source: str = "longqa"
    search_depth: int = 2000
    min_doc_tokens: int = 32  # stop once less than this is left
    max_misses: int = 64  # stop after this many candidates in a row did not fit or were rejected
    verify_tokens: bool = False  # also tokenise the final prompt (slow at 128K; tests and spot checks)

    def check(self) -> "AssemblyConfig":
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.fill not in FILLS:
            raise ValueError(f"unknown fill {self.fill!r}; choose one of {', '.join(FILLS)}")
        if self.budget < 256:
            raise ValueError(f"budget must be at least 256 tokens, got {self.budget}")
        return self


def _clean_body(text: str) -> str:
    # a document must not close or open sections itself (stats and readers split the prompt on these tags)
    return text.strip().replace("</section", "</ section").replace("<section", "< section") + "\n"


def _clean_title(title: str) -> str:
    return (title or "").replace('"', "&quot;").replace("\n", " ").strip()


HEADER_OPEN = '\n\n<section id="'


def _header_rest(title: str) -> str:
    return f'" title="{_clean_title(title)}">\n'


def section_header(section_id: int, title: str) -> str:
    """``HEADER_OPEN`` + id + ``_header_rest(title)``: counted as three pieces (punctuation | digits | punctuation
    boundaries, where pre-tokenizers split), so a title's count is reused whatever its section number."""
    return HEADER_OPEN + str(section_id) + _header_rest(title)


@dataclass
class _Cand:
    tier: str
    info: dict  # pid, title, url, source, provenance ...
    body: str  # the document text with its final newline
    tokens: int = 0  # tokens of ``body``
    rest: int = 0  # tokens of the header after the section id (the title part)
    cost: int = 0  # header (upper bound) + body + footer


class Assembler:
    def __init__(self, store: Store, counter: TokenCounter, cfg: AssemblyConfig, index=None, tokenizer_name: str = ""):
        self.store, self.counter, self.cfg, self.index = store, counter, cfg.check(), index
        self.tokenizer_name = tokenizer_name
        if "search" in (cfg.strategy, cfg.fill) and index is None:
            raise ValueError("the search strategy / fill needs the BM25 index (--index)")
        c = counter.count
        self.chat = counter.chat_overhead()
        self.instr = [c(i + DOCS_HEADER) for i in INSTRUCTIONS]
        self.footer, self.open = c(SECTION_FOOTER), c(HEADER_OPEN)
        # tokens gained (usually lost: Qwen glues ">" or ":" to the newlines after it) where two pieces meet
        join = lambda a, b: counter.count_uncached(a + b) - counter.count_uncached(a) - counter.count_uncached(b)  # noqa: E731
        self.j_first, self.j_mid = join(DOCS_HEADER, HEADER_OPEN), join(SECTION_FOOTER, HEADER_OPEN)
        self.j_last = join(SECTION_FOOTER, QUESTION_PREFIX)
        self._max_pid = None

    # -------------------------------------------------------------------------------------------- candidates
    def _page_cand(self, tier: str, pid: int, extra: dict | None = None) -> _Cand | None:
        page = self.store.page(pid)
        if page is None:
            return None
        info = {"pid": pid, "title": page.title, "url": page.url, "source": "store", **(extra or {})}
        return _Cand(tier, info, _clean_body(page.text()))

    def _doc_cand(self, doc: dict) -> _Cand | None:
        if doc.get("source") == "trajectory" or doc.get("pid") is None:
            if not doc.get("text"):
                return None
            info = {k: doc.get(k) for k in ("pid", "title", "url", "source", "provenance", "sightings")}
            return _Cand(doc["tier"], info, _clean_body(doc["text"]))
        return self._page_cand(doc["tier"], doc["pid"], {k: doc.get(k) for k in ("provenance", "sightings")})

    def _search_pids(self, question: str) -> Iterator[int]:
        for pid, _ in self.index.top_docs(question, self.cfg.search_depth):
            yield pid

    def _random_pids(self, rng: random.Random) -> Iterator[int]:
        conn = self.store.conn
        if self._max_pid is None:
            lo, hi = conn.execute("SELECT min(pid), max(pid) FROM pages").fetchone()
            self._max_pid = (lo or 0, hi or 0)
        lo, hi = self._max_pid
        for _ in range(50 * (hi - lo + 1) + 1000):
            row = conn.execute("SELECT pid FROM pages WHERE pid >= ? ORDER BY pid LIMIT 1", (rng.randint(lo, hi),)).fetchone()
            if row:
                yield row[0]

    def _corpus_cands(self, tier: str, pids: Iterator[int], taken_pids: set, taken_hashes: set, leak: LeakCheck,
                      rejected: dict) -> Iterator[_Cand]:
        for pid in pids:
            if pid in taken_pids:
                continue
            page = self.store.page(pid)
            if page is None or page.is_disambiguation:
                taken_pids.add(pid)
                continue
            text = page.text()
            norm = normalize_bytes(text, "unicode")
            h = content_hash(text)
            taken_pids.add(pid)
            if h in taken_hashes:
                rejected["duplicate"] += 1
                continue
            if leak.leaks(norm):
                rejected["contains_question"] += 1
                continue
            taken_hashes.add(h)
            yield _Cand(tier, {"pid": pid, "title": page.title, "url": page.url, "source": "store"}, _clean_body(text))

    # -------------------------------------------------------------------------------------------- costs
    def _cost(self, cands: list[_Cand]) -> None:
        """Text tokens and cost of each candidate's section without its id (ids are 1..N whatever the order, so
        their tokens are added by position while choosing) plus one junction."""
        texts = [c.body for c in cands] + [_header_rest(c.info["title"]) for c in cands]
        counts = self.counter.count_many(texts)
        n = len(cands)
        for i, c in enumerate(cands):
            c.tokens, c.rest = counts[i], counts[n + i]
            c.cost = self.open + c.rest + c.tokens + self.footer + self.j_mid

    def _id_tokens(self, k: int) -> int:
        return self.counter.count(str(k))

    def _total(self, fixed: int, docs: list[_Cand]) -> tuple[int, list[int]]:
        ids = self.counter.count_many([str(i) for i in range(1, len(docs) + 1)])
        sections = [self.open + d + c.rest + c.tokens + self.footer for d, c in zip(ids, docs)]
        return fixed + sum(sections) + self.j_mid * len(docs), sections

    # -------------------------------------------------------------------------------------------- assembly
    def assemble(self, rec: dict) -> dict:
        cfg = self.cfg
        qid = rec["question_id"]
        rng = random.Random(f"{cfg.seed}:{qid}:{cfg.strategy}")
        instruction_id = rng.randrange(len(INSTRUCTIONS))
        question_text = QUESTION_PREFIX + rec["question"].strip()
        # the sum below counts one junction per section; the first and last junctions differ from the middle ones
        fixed = (self.chat + self.instr[instruction_id] + self.counter.count(question_text)
                 + self.j_first + self.j_last - self.j_mid)

        gold = []
        for g in rec.get("gold", []):
            if g.get("pid") is None:
                raise AssemblyError(f"gold page {g.get('url')} is not in the store")
            c = self._page_cand("gold", g["pid"])
            if c is None:
                raise AssemblyError(f"gold page id {g['pid']} is not in the store")
            gold.append(c)
        if not gold:
            raise AssemblyError("the record has no gold documents")
        self._cost(gold)
        remaining = cfg.budget - fixed - sum(c.cost + self._id_tokens(i) for i, c in enumerate(gold, 1))
        if remaining < 0:
            raise AssemblyError(f"the gold documents alone need {cfg.budget - remaining} tokens, over the budget "
                                f"of {cfg.budget}")

        taken_pids = {c.info["pid"] for c in gold}
        taken_hashes = {content_hash(c.body) for c in gold}
        leak = LeakCheck(rec["question"])
        rejected = {"duplicate": 0, "contains_question": 0, "did_not_fit": 0}
        sources: list[Iterator[_Cand]] = []
        if cfg.strategy in ("traj-tiered", "traj-random"):
            docs = [d for d in rec.get("tier1", []) + rec.get("tier2", [])]
            if cfg.strategy == "traj-random":
                rng.shuffle(docs)
            tier_cands = [c for c in (self._doc_cand(d) for d in docs) if c is not None]
            for c in tier_cands:
                taken_pids.add(c.info["pid"])
                taken_hashes.add(content_hash(c.body))
            sources.append(iter(tier_cands))
            if cfg.fill == "search":
                sources.append(self._corpus_cands("fill", self._search_pids(rec["question"]), taken_pids, taken_hashes,
                                                  leak, rejected))
            elif cfg.fill == "random":
                sources.append(self._corpus_cands("fill", self._random_pids(random.Random(f"fill:{cfg.seed}:{qid}")),
                                                  taken_pids, taken_hashes, leak, rejected))
        elif cfg.strategy == "search":
            sources.append(self._corpus_cands("search", self._search_pids(rec["question"]), taken_pids, taken_hashes,
                                              leak, rejected))
        else:
            sources.append(self._corpus_cands("random", self._random_pids(random.Random(f"random:{cfg.seed}:{qid}")),
                                              taken_pids, taken_hashes, leak, rejected))

        chosen: list[_Cand] = []
        misses = 0
        for source in sources:
            while remaining >= cfg.min_doc_tokens and misses < cfg.max_misses:
                batch = [c for _, c in zip(range(32), source)]
                if not batch:
                    break
                self._cost(batch)
                for c in batch:
                    need = c.cost + self._id_tokens(len(gold) + len(chosen) + 1)
                    if need <= remaining:
                        chosen.append(c)
                        remaining -= need
                        misses = 0
                    else:
                        rejected["did_not_fit"] += 1
                        misses += 1

        docs = gold + chosen
        rng.shuffle(docs)
        total, section_tokens = self._total(fixed, docs)
        while total > cfg.budget and chosen:  # a guard (the running count is exact): drop the last distractor taken
            docs.remove(chosen.pop())
            rejected["did_not_fit"] += 1
            total, section_tokens = self._total(fixed, docs)
        if total > cfg.budget:
            raise AssemblyError(f"assembled context needs {total} tokens, over the budget of {cfg.budget}")
        headers = [section_header(i, c.info["title"]) for i, c in enumerate(docs, 1)]
        sections = "".join(h + c.body + SECTION_FOOTER for h, c in zip(headers, docs))
        prompt = INSTRUCTIONS[instruction_id] + DOCS_HEADER + sections + question_text
        counts = {t: 0 for t in ("gold", "tier1", "tier2", "fill", "search", "random")}
        for c in docs:
            counts[c.tier] += 1
        documents = [{"section_id": i, "tier": c.tier, "title": c.info["title"], "url": c.info["url"],
                      "pid": c.info["pid"], "source": c.info["source"], "tokens": t,
                      "provenance": c.info.get("provenance") or []}
                     for i, (t, c) in enumerate(zip(section_tokens, docs), 1)]
        meta = {
            "extra_reward_info": {"question": rec["question"], "rubrics": list(rec.get("rubric", [])),
                                  "dataset_name": cfg.dataset_name},
            "question_id": qid, "strategy": cfg.strategy, "fill": cfg.fill, "seed": cfg.seed,
            "instruction_id": instruction_id, "budget": cfg.budget, "context_tokens": total,
            "tokenizer": self.tokenizer_name, "tokenizer_fingerprint": self.counter.fp,
            "doc_counts": counts, "rejected_candidates": rejected, "documents": documents,
            "citations": rec.get("citations", "explicit"),
            "inferred_citations": [c["url"] for c in rec.get("inferred_citations", [])],
            "agents": rec.get("agents", []), "tier_pool": {"tier1": len(rec.get("tier1", [])),
                                                           "tier2": len(rec.get("tier2", []))},
        }
        if cfg.verify_tokens:
            meta["prompt_tokens_exact"] = self.counter.count_uncached(prompt) + self.chat
        return {"id": f"{qid}:{cfg.strategy}:{cfg.seed}", "source": cfg.source,
                "input_messages": [{"role": "user", "content": prompt}], "label": rec["answer"], "metadata": meta}


def run_assembly(assemblers: list[Assembler], tiers_path, output, failures_path=None, rejects_path=None,
                 resume: bool = True, limit: int | None = None, on_record=lambda: None) -> dict:
    """Assemble every tier record with every assembler (one per strategy), appending samples to ``output`` (keyed
    by ``id``; finished ids skipped on a rerun). Samples that cannot be assembled go to the failures file with the
    reason; malformed tier lines to the rejects file. Streams: one tier record and one sample in memory at a time."""
    from pathlib import Path

    from reward.jsonl import Rejects, ResumableOutput, read_jsonl

    output = Path(output)
    out = ResumableOutput(output, key_field="id", resume=resume)
    rejects = Rejects(rejects_path or output.with_suffix(".rejects.jsonl"), tiers_path)
    failures = Rejects(failures_path or output.with_suffix(".failures.jsonl"), tiers_path)
    counts = {"written": 0, "skipped_done": 0, "failed": 0, "rejected_lines": 0, "tokens": 0}
    for line, rec in read_jsonl(tiers_path):
        if isinstance(rec, Exception) or not isinstance(rec, dict) or not all(
                k in rec for k in ("question_id", "question", "answer", "gold")):
            rejects.add(line, "a tier record needs question_id, question, answer, gold", getattr(rec, "doc", rec))
            counts["rejected_lines"] += 1
            on_record()
            continue
        for a in assemblers:
            sid = f"{rec['question_id']}:{a.cfg.strategy}:{a.cfg.seed}"
            if sid in out.done:
                counts["skipped_done"] += 1
                continue
            if limit is not None and counts["written"] >= limit:
                break
            try:
                sample = a.assemble(rec)
            except AssemblyError as e:
                failures.add(line, f"{sid}: {e}", rec["question_id"])
                counts["failed"] += 1
                continue
            out.write(sample)
            counts["written"] += 1
            counts["tokens"] += sample["metadata"]["context_tokens"]
        on_record()
        if limit is not None and counts["written"] >= limit:
            break
    for a in assemblers:
        a.counter.flush()
    out.close()
    rejects.close()
    failures.close()
    return counts
