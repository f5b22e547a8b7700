"""On-disk page store and link graph (SQLite), built by streaming ingestion of KILT JSONL.

Tables::

    pages(pid INTEGER PRIMARY KEY, wiki_id TEXT UNIQUE, title, title_key, paragraphs (JSON list), n_chars,
          is_disambig, categories (JSON), meta (JSON), line, n_out)
    links(src, paragraph_id, anchor, target_title, target_key, target_wiki_id, href_key, dst)
    titles(key TEXT PRIMARY KEY, pid, kind)      kind = 'title' | 'alias' (a redirect name seen in an href)
    info(k TEXT PRIMARY KEY, v)                  ingestion progress and state

Ingestion streams the file line by line, parses batches (in ``--workers`` processes when > 1) and writes each
batch *and* the byte offset after it in one transaction, so memory stays bounded (one batch at a time plus
SQLite's page cache) and a crash at any point resumes at the last committed offset with no duplicate rows.
Secondary indexes, title/alias resolution and out-degrees are built once after the load (``finalize``).
Duplicate ``wiki_id``s and malformed lines go to the rejects file with their line numbers.
"""
from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from reward.jsonl import Rejects

from .kilt import KiltFormatError, Page, parse_record, title_from_url, title_key, url_for_title

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pages(
    pid INTEGER PRIMARY KEY, wiki_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, title_key TEXT NOT NULL,
    paragraphs TEXT NOT NULL, n_chars INTEGER NOT NULL, is_disambig INTEGER NOT NULL, categories TEXT NOT NULL,
    meta TEXT NOT NULL, line INTEGER NOT NULL, n_out INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS links(
    src INTEGER NOT NULL, paragraph_id INTEGER NOT NULL, anchor TEXT NOT NULL, target_title TEXT NOT NULL,
    target_key TEXT NOT NULL, target_wiki_id TEXT, href_key TEXT, dst INTEGER);
CREATE TABLE IF NOT EXISTS titles(key TEXT PRIMARY KEY, pid INTEGER NOT NULL, kind TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS info(k TEXT PRIMARY KEY, v TEXT);
"""
FINAL_INDEXES = """
CREATE INDEX IF NOT EXISTS links_src ON links(src);
CREATE INDEX IF NOT EXISTS pages_title_key ON pages(title_key);
CREATE INDEX IF NOT EXISTS titles_lower ON titles(lower(key));
"""


class StoreError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------- ingestion
def _page_rows(page: Page, line: int) -> tuple[tuple, list[tuple]]:
    row = (
        page.wiki_id, page.title, page.title, json.dumps(page.paragraphs, ensure_ascii=False),
        sum(len(p) for p in page.paragraphs), int(page.is_disambiguation),
        json.dumps(page.categories, ensure_ascii=False), json.dumps(page.meta, ensure_ascii=False), line,
    )
    links = [
        (a.paragraph_id, a.text, a.target_title, a.target_title, a.target_wiki_id,
         a.href_title if a.href_title and a.href_title != a.target_title else None)
        for a in page.anchors
    ]
    return row, links


def parse_batch(batch: list[tuple[int, bytes]]) -> list[tuple[int, tuple | None, list | str]]:
    """[(line, raw bytes)] -> [(line, page row, link rows)] or [(line, None, error message)]."""
    out = []
    for line, raw in batch:
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            msg = f"not valid JSON: {e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
            out.append((line, None, msg))
            continue
        try:
            row, links = _page_rows(parse_record(record), line)
        except KiltFormatError as e:
            out.append((line, None, str(e)))
            continue
        out.append((line, row, links))
    return out


def _open_input(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_batches(path: Path, start_offset: int, start_line: int, batch_size: int) -> Iterator[tuple[list, int, int]]:
    """Batches of (line number, raw line) from ``start_offset``, each with the byte offset and line after it."""
    with _open_input(path) as f:
        if start_offset:
            f.seek(start_offset)
        offset, line, batch = start_offset, start_line, []
        for raw in f:
            offset += len(raw)
            line += 1
            if raw.strip():
                batch.append((line, raw))
            if len(batch) >= batch_size:
                yield batch, offset, line
                batch = []
        if batch or line != start_line:
            yield batch, offset, line


@dataclass
class IngestSummary:
    pages: int = 0
    links: int = 0
    rejects: int = 0
    resumed_from_line: int = 0
    finalized: bool = False


class SimulatedCrash(RuntimeError):
    """Raised by ``ingest(crash_after_batches=N)`` (tests of resumability)."""


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache: the bound on SQLite's share of memory
    conn.execute("PRAGMA temp_store=FILE")
    return conn


def _info(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT v FROM info WHERE k = ?", (key,)).fetchone()
    return row[0] if row else default


def _set_info(conn: sqlite3.Connection, **values) -> None:
    conn.executemany("INSERT OR REPLACE INTO info(k, v) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])


def ingest(
    input_path: str | Path,
    db_path: str | Path,
    rejects_path: str | Path | None = None,
    batch_size: int = 500,
    workers: int = 1,
    resume: bool = True,
    on_progress: Callable[[int, int], None] = lambda offset, pages: None,
    crash_after_batches: int | None = None,
) -> IngestSummary:
    """Stream a KILT JSONL file into the store (resumable), then finalize it."""
    input_path, db_path = Path(input_path), Path(db_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found: {input_path}")
    if not resume and db_path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db_path)
    conn.executescript(SCHEMA)
    source = _info(conn, "source")
    if source is not None and source != str(input_path.resolve()):
        raise StoreError(f"{db_path} was built from {source}, not {input_path}; use another --store or --no-resume")
    offset = int(_info(conn, "offset", "0"))
    line = int(_info(conn, "line", "0"))
    summary = IngestSummary(resumed_from_line=line)
    if _info(conn, "state") == "finalized":
        summary.finalized = True
        summary.pages = conn.execute("SELECT count(*) FROM pages").fetchone()[0]
        conn.close()
        return summary
    with conn:
        _set_info(conn, source=input_path.resolve(), state="loading", input_size=input_path.stat().st_size)
    rejects = Rejects(rejects_path or db_path.with_suffix(".rejects.jsonl"), input_path, keep_lines_before=line + 1)
    next_pid = (conn.execute("SELECT max(pid) FROM pages").fetchone()[0] or 0) + 1
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    batches_done = 0
    try:
        for results, end_offset, end_line in _parsed_batches(input_path, offset, line, batch_size, pool, workers):
            page_rows, link_rows, first_pid = [], [], next_pid
            for ln, row, links in results:
                if row is None:
                    rejects.add(ln, links)
                    continue
                page_rows.append((next_pid, *row))
                link_rows.append((next_pid, links, ln))
                next_pid += 1
            with conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO pages(pid, wiki_id, title, title_key, paragraphs, n_chars, is_disambig,"
                    " categories, meta, line) VALUES (?,?,?,?,?,?,?,?,?,?)", page_rows)
                kept = {r[0] for r in conn.execute(
                    "SELECT pid FROM pages WHERE pid >= ? AND pid < ?", (first_pid, next_pid))}
                rows = []
                for (pid, links, ln), prow in zip(link_rows, page_rows):
                    if pid not in kept:
                        rejects.add(ln, f"duplicate wikipedia_id {prow[1]!r} (first seen earlier in the file)")
                        continue
                    rows.extend((pid, *lk) for lk in links)
                conn.executemany(
                    "INSERT INTO links(src, paragraph_id, anchor, target_title, target_key, target_wiki_id, href_key)"
                    " VALUES (?,?,?,?,?,?,?)", rows)
                _set_info(conn, offset=end_offset, line=end_line)
            summary.pages += len(kept)
            summary.links += len(rows)
            on_progress(end_offset, summary.pages)
            batches_done += 1
            if crash_after_batches is not None and batches_done >= crash_after_batches:
                raise SimulatedCrash(f"simulated crash after {batches_done} batches")
        finalize(conn)
        summary.finalized = True
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        rejects.close()
        summary.rejects = rejects.count
        conn.close()
    return summary


def _parsed_batches(path: Path, offset: int, line: int, batch_size: int, pool, workers: int):
    """Parsed batches in file order; with a pool, at most 2 x workers batches are in flight (bounded memory)."""
    batches = _read_batches(path, offset, line, batch_size)
    if pool is None:
        for batch, end_offset, end_line in batches:
            yield parse_batch(batch), end_offset, end_line
        return
    in_flight: deque = deque()
    for batch, end_offset, end_line in batches:
        in_flight.append((pool.submit(parse_batch, batch), end_offset, end_line))
        if len(in_flight) >= 2 * workers:
            future, o, ln = in_flight.popleft()
            yield future.result(), o, ln
    while in_flight:
        future, o, ln = in_flight.popleft()
        yield future.result(), o, ln


def finalize(conn: sqlite3.Connection) -> None:
    """Indexes, title/alias table, link targets and out-degrees. Idempotent; run once after the load."""
    log.info("finalizing store: indexes, titles, link resolution, out-degrees")
    with conn:
        conn.executescript(FINAL_INDEXES)
        conn.execute("DELETE FROM titles")
        conn.execute("INSERT OR IGNORE INTO titles(key, pid, kind) SELECT title_key, pid, 'title' FROM pages")
        conn.execute("UPDATE links SET dst = (SELECT pid FROM pages WHERE pages.wiki_id = links.target_wiki_id)"
                     " WHERE target_wiki_id IS NOT NULL")
        conn.execute("UPDATE links SET dst = (SELECT pid FROM titles WHERE titles.key = links.target_key)"
                     " WHERE dst IS NULL")
        # redirect names seen in hrefs become aliases of the page the anchor resolved to
        conn.execute("INSERT OR IGNORE INTO titles(key, pid, kind) SELECT href_key, dst, 'alias' FROM links"
                     " WHERE href_key IS NOT NULL AND dst IS NOT NULL")
        conn.execute("UPDATE pages SET n_out = coalesce((SELECT count(DISTINCT dst) FROM links"
                     " WHERE links.src = pages.pid AND dst IS NOT NULL AND dst != pages.pid), 0)")
        _set_info(conn, state="finalized")
    conn.execute("PRAGMA optimize")


# --------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class StoredPage:
    pid: int
    wiki_id: str
    title: str
    paragraphs: tuple[str, ...]
    is_disambiguation: bool
    n_out: int
    meta: dict
    categories: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return url_for_title(self.title)

    def text(self, markdown: bool = False) -> str:
        from .kilt import render_paragraph

        return "\n".join(render_paragraph(p, markdown) for p in self.paragraphs[1:])


class Store:
    """Read access to a finalized store. Thread-safe (one SQLite connection per thread)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"store not found: {self.path} (build it with 'longtrace data ingest')")
        self._local = threading.local()
        state = _info(self.conn, "state")
        if state != "finalized":
            raise StoreError(f"{self.path} is not finalized (state={state}); rerun 'longtrace data ingest' to finish it")
        self.page = lru_cache(maxsize=4096)(self._page)
        self.out_links = lru_cache(maxsize=65536)(self._out_links)
        self.node = lru_cache(maxsize=1 << 18)(self._node)

    @property
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = connect(self.path, readonly=True)
        return c

    def __len__(self) -> int:
        return self.conn.execute("SELECT count(*) FROM pages").fetchone()[0]

    def _page(self, pid: int) -> StoredPage | None:
        row = self.conn.execute(
            "SELECT pid, wiki_id, title, paragraphs, is_disambig, n_out, meta, categories FROM pages WHERE pid = ?",
            (pid,)).fetchone()
        if row is None:
            return None
        return StoredPage(row[0], row[1], row[2], tuple(json.loads(row[3])), bool(row[4]), row[5], json.loads(row[6]),
                          tuple(json.loads(row[7])))

    def _node(self, pid: int) -> tuple[str, int, bool] | None:
        """(title, out-degree, is disambiguation) without loading the text."""
        row = self.conn.execute("SELECT title, n_out, is_disambig FROM pages WHERE pid = ?", (pid,)).fetchone()
        return (row[0], row[1], bool(row[2])) if row else None

    def _out_links(self, pid: int) -> tuple[tuple[int, str], ...]:
        """Resolved outgoing links (dst pid, anchor text) in page order, self-links dropped."""
        return tuple(self.conn.execute(
            "SELECT dst, anchor FROM links WHERE src = ? AND dst IS NOT NULL AND dst != src ORDER BY rowid", (pid,)))

    def resolve_title(self, title: str) -> int | None:
        key = title_key(title)
        row = self.conn.execute("SELECT pid FROM titles WHERE key = ?", (key,)).fetchone()
        if row is None:
            row = self.conn.execute("SELECT pid FROM titles WHERE lower(key) = lower(?) ORDER BY kind DESC LIMIT 1",
                                    (key,)).fetchone()
        return row[0] if row else None

    def resolve_url(self, url: str) -> int | None:
        title = title_from_url(url)
        return self.resolve_title(title) if title else None

    def page_by_title(self, title: str) -> StoredPage | None:
        pid = self.resolve_title(title)
        return self.page(pid) if pid is not None else None

    def walkable_pids(self, min_out: int = 4) -> list[int]:
        """Pages a walk may start from or step to: not disambiguation, at least ``min_out`` outgoing links."""
        return [r[0] for r in self.conn.execute(
            "SELECT pid FROM pages WHERE is_disambig = 0 AND n_out >= ? ORDER BY pid", (min_out,))]

    def iter_pages(self, batch: int = 1000) -> Iterator[StoredPage]:
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT pid, wiki_id, title, paragraphs, is_disambig, n_out, meta, categories FROM pages"
                " WHERE pid > ? ORDER BY pid LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for r in rows:
                yield StoredPage(r[0], r[1], r[2], tuple(json.loads(r[3])), bool(r[4]), r[5], json.loads(r[6]),
                                 tuple(json.loads(r[7])))
            last = rows[-1][0]

    def stats(self) -> dict:
        c = self.conn
        return {
            "pages": c.execute("SELECT count(*) FROM pages").fetchone()[0],
            "disambiguation_pages": c.execute("SELECT count(*) FROM pages WHERE is_disambig = 1").fetchone()[0],
            "links": c.execute("SELECT count(*) FROM links").fetchone()[0],
            "resolved_links": c.execute("SELECT count(*) FROM links WHERE dst IS NOT NULL").fetchone()[0],
            "aliases": c.execute("SELECT count(*) FROM titles WHERE kind = 'alias'").fetchone()[0],
            "walkable_pages": c.execute("SELECT count(*) FROM pages WHERE is_disambig = 0 AND n_out > 3").fetchone()[0],
        }

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

