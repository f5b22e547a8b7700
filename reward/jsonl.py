"""JSONL plumbing for long batch jobs: numbered input lines, a rejects file, resumable append-only output.

* ``read_jsonl(path)`` yields ``(line_number, record_or_error)``: a line that is not JSON yields the error
  (with its position) instead of stopping the job.
* ``Rejects`` writes ``{"line", "error", "raw"}`` records for the lines a job could not use, and logs each as
  ``file:line: error``. It is rewritten on every run (bad lines are found again deterministically).
* ``ResumableOutput`` appends one JSON object per line and flushes it; on start it drops a torn last line
  left by a crash and collects the keys already written, so a rerun skips finished work.

data_gen's jobs use the same pieces.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed object or json.JSONDecodeError) for every non-blank line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                yield number, e


def count_lines(path: str | Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


class Rejects:
    """``keep_lines_before=N``: a job resuming at input line N keeps the earlier rejects (lines < N) that an
    interrupted run already wrote, instead of starting the file afresh."""

    def __init__(self, path: str | Path, source: str | Path, keep_lines_before: int | None = None):
        self.path, self.source, self.count = Path(path), str(source), 0
        self._f = None
        kept = []
        if self.path.exists():
            if keep_lines_before is not None:
                with open(self.path, encoding="utf-8") as f:
                    for raw in f:
                        try:
                            if json.loads(raw)["line"] < keep_lines_before:
                                kept.append(raw if raw.endswith("\n") else raw + "\n")
                        except (json.JSONDecodeError, KeyError, TypeError):
                            break  # torn tail
            self.path.unlink()
        if kept:
            self._f = open(self.path, "w", encoding="utf-8")
            self._f.writelines(kept)
            self._f.flush()
            self.count = len(kept)

    def add(self, line: int, error: str, raw: Any = None) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w", encoding="utf-8")
        self.count += 1
        log.warning("%s:%d: %s", self.source, line, error)
        raw_text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        self._f.write(json.dumps({"line": line, "error": error, "raw": raw_text[:4096]}, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class ResumableOutput:
    def __init__(self, path: str | Path, key_field: str = "key", resume: bool = True):
        self.path, self.key_field = Path(path), key_field
        self.done: set = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._repair_and_load()
        elif self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair_and_load(self) -> None:
        good_bytes = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn last line from a crash
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError:
                    break
                good_bytes += len(raw)
                if isinstance(record, dict) and self.key_field in record:
                    self.done.add(record[self.key_field])
        if good_bytes != self.path.stat().st_size:
            log.warning("%s: dropping a torn last line left by an interrupted run", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        self.done.add(record[self.key_field])

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
