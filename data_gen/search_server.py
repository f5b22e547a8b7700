"""HTTP search server over the local store and BM25 index (``longtrace data search-server``).

    POST /retrieve  Search-R1 compatible: {"queries": [str], "topk": 3, "return_scores": false}
                    -> {"result": [[{"document": {"id", "contents"}, "score"} | {"id", "contents"}, ...], ...]}
                    contents = '"Title"\\n' + the page's leading text (``retrieve_chars``)
    POST /search    {"query", "k": 10, "session_id"?, "forbidden"?: [str]}
                    -> {"results": [{"rank", "id", "title", "url", "snippet", "score"}]}
    POST /open      {"url"? | "id"?, "session_id"?, "max_chars"?, "forbidden"?}  (an integer id = a rank in the
                    session's last search) -> {"ok", "title", "url", "text", "truncated"}; 404 when no page matches
    POST /find      {"pattern", "session_id"} -> {"url", "matches": [str]} in the session's open page
    GET  /health    {"status": "ok", "pages", "index"}

``forbidden`` (and ``--leak-filter-file``) is the leak filter: results and pages whose text contains one of the
strings (normalised) are dropped / refused. Sessions (last results, open page) live in memory, the oldest
dropped beyond ``max_sessions``. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""
from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from .browser import LocalBackend, find_in_text
from .search_index import SearchIndex
from .store import Store


class RetrieveRequest(BaseModel):
    queries: list[str] = Field(min_length=1, max_length=1024)
    topk: int = Field(3, ge=1, le=1000)
    return_scores: bool = False
    forbidden: list[str] = []


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=100)
    session_id: str | None = None
    forbidden: list[str] = []


class OpenRequest(BaseModel):
    url: str | None = None
    id: int | str | None = None
    session_id: str | None = None
    max_chars: int = Field(10_000, ge=0)  # 0 = the whole page
    forbidden: list[str] = []


class FindRequest(BaseModel):
    pattern: str = Field(min_length=1)
    session_id: str


def create_app(store: Store, index: SearchIndex, retrieve_chars: int = 2000, max_sessions: int = 4096,
               forbidden: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="longtrace search server")
    backend = LocalBackend(index, store)
    sessions: OrderedDict[str, dict] = OrderedDict()
    lock = Lock()
    global_bans = list(forbidden or [])

    def session(sid: str | None) -> dict | None:
        if sid is None:
            return None
        with lock:
            s = sessions.pop(sid, None) or {"results": [], "page": None}
            sessions[sid] = s
            while len(sessions) > max_sessions:
                sessions.popitem(last=False)
            return s

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pages": index.meta["pages"], "index": str(index.dir)}

    @app.post("/retrieve")
    def retrieve(req: RetrieveRequest) -> dict:
        out = []
        for q in req.queries:
            hits = index.search(q, req.topk, req.forbidden + global_bans)
            docs = []
            for h in hits:
                page = store.page(h.pid)
                doc = {"id": str(h.pid), "contents": f'"{page.title}"\n{page.text()[:retrieve_chars]}'}
                docs.append({"document": doc, "score": round(h.score, 4)} if req.return_scores else doc)
            out.append(docs)
        return {"result": out}

    @app.post("/search")
    def search(req: SearchRequest) -> dict:
        results = [h.to_dict() for h in index.search(req.query, req.k, req.forbidden + global_bans)]
        s = session(req.session_id)
        if s is not None:
            s["results"] = results
        return {"results": results}

    @app.post("/open")
    def open_page(req: OpenRequest) -> dict:
        s = session(req.session_id)
        target = req.url
        if target is None and req.id is not None:
            if isinstance(req.id, int) or (isinstance(req.id, str) and req.id.isdigit()):
                rank = int(req.id)
                if s is None or not 0 <= rank < len(s["results"]):
                    raise HTTPException(404, f"no result with id {rank} in the session's last search")
                target = s["results"][rank]["url"]
            else:
                target = req.id
        if not target:
            raise HTTPException(422, "give 'url' (or a title) or 'id' (a rank in the session's last search)")
        page = backend.open_sync(target, req.forbidden + global_bans)
        if not page["ok"]:
            raise HTTPException(404 if page["title"] is None else 403, page["error"])
        if s is not None:
            s["page"] = page
        text = page["text"] if req.max_chars == 0 else page["text"][: req.max_chars]
        return {"ok": True, "title": page["title"], "url": page["url"], "text": text,
                "truncated": len(text) < len(page["text"])}

    @app.post("/find")
    def find(req: FindRequest) -> dict:
        with lock:
            s = sessions.get(req.session_id)
        if s is None or s["page"] is None:
            raise HTTPException(409, "no page is open in this session (POST /open with its session_id first)")
        return {"url": s["page"]["url"], "matches": find_in_text(s["page"]["text"], req.pattern)}

    return app
