"""A result cache for outcome judges, keyed by a hash of (judge identity, question, answer, content).

In memory always; optionally persisted to SQLite so repeated scoring runs and restarts of the reward server
do not pay for the same LLM calls twice. Only decided verdicts are cached, never errors.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

from .judge import Verdict


def cache_key(identity: str, question: str, answer: str, content: str) -> str:
    h = hashlib.sha256()
    for part in (identity, question, answer, content):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class JudgeCache:
    def __init__(self, path: str | Path | None = None, max_memory_entries: int = 100_000):
        self._memory: OrderedDict[str, Verdict] = OrderedDict()
        self._max = max_memory_entries
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
            if self._db is None:
                return None
            row = self._db.execute("SELECT value FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        verdict = Verdict(**json.loads(row[0]))
        self._remember(key, verdict)
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if verdict.error is not None:
            return
        self._remember(key, verdict)
        if self._db is not None:
            value = json.dumps(
                {"score": verdict.score, "correct": verdict.correct, "extracted": verdict.extracted, "reasoning": verdict.reasoning}
            )
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO verdicts (key, value) VALUES (?, ?)", (key, value))
                self._db.commit()

    def _remember(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._memory[key] = verdict
            self._memory.move_to_end(key)
            while len(self._memory) > self._max:
                self._memory.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
