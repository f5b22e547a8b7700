"""BM25 search over the page store (``bm25s``), persisted next to the store.

Each page is indexed as its title (repeated ``title_weight`` times, so title matches rank first) plus the
first ``max_chars`` characters of its cleaned text. Tokens are the reward package's unicode normalisation
(casefolded, accents folded, punctuation dropped) minus English stop words; scoring is Lucene BM25
(k1 = 0.9, b = 0.4, Pyserini's defaults). A hit carries the page's title, Wikipedia-style URL and a snippet
(the body paragraph sharing most words with the query). ``forbidden`` strings implement the leak filter: a
page whose text contains one of them (after normalisation) is dropped from the results.

Files in the index directory: bm25s's arrays and vocabulary, ``pids.npy`` (document -> page id) and
``longtrace_index.json`` (parameters and the store it was built from). Building writes a temporary directory
and renames it, so an interrupted build leaves no half index.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reward.normalize import normalize_bytes

from .kilt import SECTION_PREFIX, render_paragraph
from .store import Store

STOPWORDS = frozenset(
    "a an and are as at be but by for from had has have he her his i in into is it its of on or she that the their "
    "them they this to was were which who will with".split()
)
INDEX_META = "longtrace_index.json"


def tokenize(text: str) -> list[str]:
    return [t for t in normalize_bytes(text, "unicode").decode("utf-8").split() if t not in STOPWORDS]


@dataclass
class Hit:
    rank: int
    pid: int
    title: str
    url: str
    snippet: str
    score: float

    def to_dict(self) -> dict:
        return {"rank": self.rank, "id": self.pid, "title": self.title, "url": self.url, "snippet": self.snippet,
                "score": round(self.score, 4)}


def build_index(store: Store, out_dir: str | Path, title_weight: int = 3, max_chars: int = 4000,
                on_progress: Callable[[int], None] = lambda n: None, k1: float = 0.9, b: float = 0.4) -> dict:
    import bm25s

    out_dir = Path(out_dir)
    started = time.perf_counter()
    vocab: dict[str, int] = {}
    corpus_ids: list[list[int]] = []
    pids: list[int] = []
    for n, page in enumerate(store.iter_pages(), 1):
        tokens = tokenize(page.title) * title_weight + tokenize(page.text()[:max_chars])
        corpus_ids.append([vocab.setdefault(t, len(vocab)) for t in tokens])
        pids.append(page.pid)
        if n % 2000 == 0:
            on_progress(n)
    on_progress(len(pids))
    if not pids:
        raise ValueError(f"the store {store.path} has no pages to index")
    tokenize_s = time.perf_counter() - started
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index((corpus_ids, vocab), show_progress=False)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    retriever.save(str(tmp), show_progress=False)
    np.save(tmp / "pids.npy", np.asarray(pids, dtype=np.int64))
    meta = {"store": str(store.path.resolve()), "pages": len(pids), "vocab": len(vocab), "title_weight": title_weight,
            "max_chars": max_chars, "k1": k1, "b": b, "tokenize_s": round(tokenize_s, 3),
            "build_s": round(time.perf_counter() - started, 3)}
    (tmp / INDEX_META).write_text(json.dumps(meta, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return meta


class SearchIndex:
    def __init__(self, index_dir: str | Path, store: Store, snippet_chars: int = 240, mmap: bool = False):
        import bm25s

        self.dir = Path(index_dir)
        meta_path = self.dir / INDEX_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"no search index in {self.dir} (build it with 'longtrace data index')")
        self.meta = json.loads(meta_path.read_text())
        self.store, self.snippet_chars = store, snippet_chars
        self.retriever = bm25s.BM25.load(str(self.dir), mmap=mmap, show_progress=False, verbosity=0)
        self.pids = np.load(self.dir / "pids.npy")
        self._vocab = self.retriever.vocab_dict

    def scores(self, query: str) -> np.ndarray | None:
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return None
        return self.retriever.get_scores(ids)

    def top_docs(self, query: str, k: int) -> list[tuple[int, float]]:
        """(page id, score) of the best ``k`` documents, best first; no documents when no query word is indexed."""
        s = self.scores(query)
        if s is None or k <= 0:
            return []
        k = min(k, len(s))
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [(int(self.pids[i]), float(s[i])) for i in top if s[i] > 0]

    def snippet(self, paragraphs: tuple[str, ...], query_tokens: set[str]) -> str:
        best, best_hits = "", -1
        for p in paragraphs[1:40]:
            if not p or p.startswith(SECTION_PREFIX):
                continue
            hits = len(query_tokens.intersection(tokenize(p)))
            if hits > best_hits:
                best, best_hits = p, hits
        text = render_paragraph(best, markdown=False)
        return text if len(text) <= self.snippet_chars else text[: self.snippet_chars].rsplit(" ", 1)[0] + " ..."

    def search(self, query: str, k: int = 10, forbidden: list[str] | tuple[str, ...] = ()) -> list[Hit]:
        bans = [n for n in (normalize_bytes(f, "unicode") for f in forbidden if f) if n]
        qtokens = set(tokenize(query))
        want, hits = k, []
        while True:
            docs = self.top_docs(query, want + (len(bans) and 10))
            hits = []
            for pid, score in docs:
                page = self.store.page(pid)
                if page is None:
                    continue
                if bans:
                    body = normalize_bytes(page.title + "\n" + page.text(), "unicode")
                    if any(b in body for b in bans):
                        continue
                hits.append(Hit(len(hits), pid, page.title, page.url, self.snippet(page.paragraphs, qtokens), score))
                if len(hits) == k:
                    return hits
            if len(docs) < want + (len(bans) and 10) or want >= 8 * k:
                return hits
            want *= 2
