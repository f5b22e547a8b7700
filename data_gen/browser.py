"""The search agent's browser: a backend (local index or the HTTP search server) plus one session's state.

``Browser`` keeps the last search results (so ``open(3)`` means the 4th result, 0-based as in CaRR), the page
open now (for ``find``) and the list of normalised events of the trajectory (see trajectory.py).
Backends: ``LocalBackend`` (the store and BM25 index in this process) and ``HttpBackend`` (a running
``longtrace data search-server``); both apply the leak filter (``forbidden`` strings, e.g. the question).
"""
from __future__ import annotations

import re
from typing import Protocol

import httpx

from reward.normalize import normalize_bytes

from .search_index import SearchIndex
from .store import Store


class SearchBackend(Protocol):
    async def search(self, query: str, k: int, forbidden: list[str]) -> list[dict]: ...

    async def open(self, target: str, forbidden: list[str]) -> dict: ...


def page_markdown(store: Store, pid: int) -> tuple[str, str, str]:
    page = store.page(pid)
    return page.title, page.url, page.text(markdown=True)


def _leaks(text: str, forbidden: list[str]) -> bool:
    body = normalize_bytes(text, "unicode")
    return any(n and n in body for n in (normalize_bytes(f, "unicode") for f in forbidden))


class LocalBackend:
    def __init__(self, index: SearchIndex, store: Store):
        self.index, self.store = index, store

    async def search(self, query: str, k: int, forbidden: list[str]) -> list[dict]:
        return [h.to_dict() for h in self.index.search(query, k, forbidden)]

    def open_sync(self, target: str, forbidden: list[str]) -> dict:
        pid = self.store.resolve_url(target) if "/" in target else None
        if pid is None:
            pid = self.store.resolve_title(target)
        if pid is None:
            return {"ok": False, "url": target, "title": None, "text": "", "error": f"no page found for {target!r}"}
        title, url, text = page_markdown(self.store, pid)
        if forbidden and _leaks(title + "\n" + text, forbidden):
            return {"ok": False, "url": url, "title": title, "text": "", "error": "Forbidden string found"}
        return {"ok": True, "url": url, "title": title, "text": text, "error": None}

    async def open(self, target: str, forbidden: list[str]) -> dict:
        return self.open_sync(target, forbidden)


class HttpBackend:
    """Talks to ``longtrace data search-server`` (POST /search, POST /open)."""

    def __init__(self, base_url: str, timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def search(self, query: str, k: int, forbidden: list[str]) -> list[dict]:
        resp = await self._client.post("/search", json={"query": query, "k": k, "forbidden": forbidden})
        resp.raise_for_status()
        return resp.json()["results"]

    async def open(self, target: str, forbidden: list[str]) -> dict:
        resp = await self._client.post("/open", json={"url": target, "forbidden": forbidden, "max_chars": 0})
        if resp.status_code in (403, 404):
            return {"ok": False, "url": target, "title": None, "text": "", "error": resp.json().get("detail", "not found")}
        resp.raise_for_status()
        return resp.json()

    async def aclose(self) -> None:
        await self._client.aclose()


def find_in_text(text: str, pattern: str, context: int = 200, max_matches: int = 20) -> list[str]:
    """Case-insensitive occurrences of ``pattern`` with ``context`` characters either side."""
    if not pattern.strip():
        return []
    out = []
    for m in re.finditer(re.escape(pattern.strip()), text, re.IGNORECASE):
        out.append(text[max(0, m.start() - context): m.end() + context])
        if len(out) >= max_matches:
            break
    return out


class Browser:
    def __init__(self, backend: SearchBackend, forbidden: list[str] | None = None, page_chars: int = 10_000):
        self.backend, self.forbidden, self.page_chars = backend, list(forbidden or []), page_chars
        self.results: list[dict] = []
        self.page: dict | None = None
        self.events: list[dict] = []
        self.turn = 0

    async def search(self, query: str, k: int = 10) -> list[dict]:
        event = {"type": "search", "turn": self.turn, "query": query, "results": []}
        self.events.append(event)
        try:
            hits = await self.backend.search(query, k, self.forbidden)
        except (httpx.HTTPError, ValueError, KeyError) as e:
            event["error"] = f"{type(e).__name__}: {e}"
            return []
        self.results = hits
        event["results"] = [{"rank": i, "title": h["title"], "url": h["url"], "snippet": h["snippet"]}
                            for i, h in enumerate(hits)]
        return hits

    async def open(self, target: int | str, text_kind: str = "page_markdown", chars: int | None = None) -> dict:
        requested_as = "id" if isinstance(target, int) else "url"
        if isinstance(target, int):
            if not 0 <= target < len(self.results):
                result = {"ok": False, "url": "", "title": None, "text": "",
                          "error": f"no result with id {target} in the last search"}
            else:
                result = await self._open(self.results[target]["url"])
        else:
            result = await self._open(target)
        shown = result["text"][: chars if chars is not None else self.page_chars] if result["ok"] else ""
        self.events.append({"type": "open", "turn": self.turn, "url": result["url"], "title": result.get("title"),
                            "requested_as": requested_as, "ok": result["ok"], "text_kind": text_kind,
                            "chars": len(shown), "error": result.get("error")})
        if result["ok"]:
            self.page = result
        return {**result, "shown": shown}

    async def _open(self, url: str) -> dict:
        try:
            return await self.backend.open(url, self.forbidden)
        except (httpx.HTTPError, ValueError, KeyError) as e:
            return {"ok": False, "url": url, "title": None, "text": "", "error": f"{type(e).__name__}: {e}"}

    def find(self, pattern: str) -> list[str]:
        matches = find_in_text(self.page["text"], pattern) if self.page else []
        self.events.append({"type": "find", "turn": self.turn, "pattern": pattern,
                            "url": self.page["url"] if self.page else None, "matches": len(matches)})
        return matches

    def seen_urls(self) -> set[str]:
        from .trajectory import url_key

        urls = set()
        for e in self.events:
            if e["type"] == "search":
                urls.update(url_key(r["url"]) for r in e["results"])
            elif e["type"] == "open" and e["ok"]:
                urls.add(url_key(e["url"]))
        return urls
