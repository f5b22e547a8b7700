"""BM25 search, the leak filter, and the search server end to end over HTTP."""
import asyncio

import httpx
import pytest

from data_gen.browser import Browser, HttpBackend, find_in_text
from data_gen.walk import pick_seeds

from .helpers import free_port, longtrace_cmd


def test_title_query_returns_the_gold_page_first(small_world):
    store, index = small_world.store, small_world.index
    pids = pick_seeds(store, 40, seed=3)
    firsts = []
    for pid in pids:
        page = store.page(pid)
        hits = index.search(page.title, 10)
        assert 1 <= len(hits) <= 10 and [h.rank for h in hits] == list(range(len(hits)))  # only pages sharing a word
        assert hits[0].score >= hits[-1].score
        firsts.append(hits[0].pid == pid)
        assert pid in [h.pid for h in hits[:3]]  # near the top even behind a namesake ("The X" vs "X")
    assert sum(firsts) >= 0.8 * len(firsts)


def test_snippets_and_urls(small_world):
    page = small_world.store.page(pick_seeds(small_world.store, 1, seed=8)[0])
    hit = small_world.index.search(page.title, 5)[0]
    assert hit.url == page.url and hit.url.startswith("https://en.wikipedia.org/wiki/")
    assert hit.snippet and "Section::::" not in hit.snippet and len(hit.snippet) <= 250


def test_leak_filter_drops_pages_containing_the_forbidden_text(small_world):
    store, index = small_world.store, small_world.index
    page = store.page(pick_seeds(store, 1, seed=2)[0])
    sentence = page.paragraphs[1][:60]
    with_leak = index.search(page.title, 10)
    without = index.search(page.title, 10, forbidden=[sentence])
    assert page.pid in [h.pid for h in with_leak] and page.pid not in [h.pid for h in without]
    assert len(without) == 10  # refilled from further down the ranking


def test_unknown_words_give_no_results(small_world):
    assert small_world.index.search("qqqzzzxxy", 10) == []


def test_find_in_text():
    text = "alpha beta gamma ALPHA delta"
    assert len(find_in_text(text, "alpha", context=3)) == 2
    assert find_in_text(text, "  ") == []


@pytest.fixture(scope="module")
def server(small_world):
    import os
    import signal
    import subprocess

    from .helpers import ROOT, wait_http

    port = free_port()
    proc = subprocess.Popen(
        longtrace_cmd("data", "search-server", "--store", str(small_world.db), "--index", str(small_world.index_dir),
                      "--port", str(port)),
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_retrieve_is_search_r1_compatible(server, small_world):
    page = small_world.store.page(pick_seeds(small_world.store, 1, seed=6)[0])
    r = httpx.post(f"{server}/retrieve", json={"queries": [page.title, "album produced"], "topk": 3, "return_scores": True})
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 2 and all(len(docs) == 3 for docs in result)
    first = result[0][0]
    assert set(first) == {"document", "score"} and set(first["document"]) == {"id", "contents"}
    assert first["document"]["contents"].startswith(f'"{page.title}"\n')
    bare = httpx.post(f"{server}/retrieve", json={"queries": [page.title]}).json()["result"][0]
    assert len(bare) == 3 and set(bare[0]) == {"id", "contents"}  # default topk 3, no scores


@pytest.mark.parametrize("path,body,status", [
    ("/retrieve", {"topk": 3}, 422),
    ("/retrieve", {"queries": ["x"], "topk": 0}, 422),
    ("/retrieve", {"queries": "not a list"}, 422),
    ("/search", {"query": ""}, 422),
    ("/open", {}, 422),
    ("/open", {"url": "https://en.wikipedia.org/wiki/No_Such_Page_Anywhere"}, 404),
    ("/open", {"id": 3, "session_id": "fresh"}, 404),
    ("/find", {"pattern": "x", "session_id": "never-opened"}, 409),
])
def test_bad_requests(server, path, body, status):
    assert httpx.post(f"{server}{path}", json=body).status_code == status


def test_sessions_search_open_find(server, small_world):
    page = small_world.store.page(pick_seeds(small_world.store, 1, seed=12)[0])
    s = {"session_id": "agent-1"}
    res = httpx.post(f"{server}/search", json={"query": page.title, "k": 5, **s}).json()["results"]
    assert res[0]["title"] == page.title and {"rank", "id", "title", "url", "snippet", "score"} <= set(res[0])
    opened = httpx.post(f"{server}/open", json={"id": 0, "max_chars": 50, **s}).json()
    assert opened["ok"] and opened["title"] == page.title and len(opened["text"]) == 50 and opened["truncated"]
    word = page.paragraphs[1].split()[1]
    found = httpx.post(f"{server}/find", json={"pattern": word, **s}).json()
    assert found["url"] == page.url and found["matches"] and word.lower() in found["matches"][0].lower()
    leak = httpx.post(f"{server}/open", json={"url": page.url, "forbidden": [page.paragraphs[1][:40]]})
    assert leak.status_code == 403


def test_http_backend_drives_a_browser(server, small_world):
    page = small_world.store.page(pick_seeds(small_world.store, 1, seed=13)[0])

    async def run():
        backend = HttpBackend(server)
        b = Browser(backend)
        hits = await b.search(page.title, 4)
        opened = await b.open(0)
        missing = await b.open("https://en.wikipedia.org/wiki/Nowhere_At_All")
        await backend.aclose()
        return b, hits, opened, missing

    b, hits, opened, missing = asyncio.run(run())
    assert hits[0]["title"] == page.title and opened["ok"] and opened["title"] == page.title
    assert not missing["ok"]
    assert [e["type"] for e in b.events] == ["search", "open", "open"]
    assert b.events[1]["requested_as"] == "id" and b.events[2]["ok"] is False


def test_agent_over_http_matches_the_in_process_backend(server, small_world):
    from data_gen.agent import AgentConfig, ScriptedAgent, run_trajectory
    from data_gen.browser import LocalBackend
    from data_gen.questions import QuestionError, template_question, walk_pages
    from data_gen.walk import HeuristicChooser, WalkConfig, walk_from_seed
    from reward.rule_judge import RuleJudge

    async def run():
        for seed_pid in pick_seeds(small_world.store, 10, seed=30):
            for w in await walk_from_seed(small_world.store, seed_pid, WalkConfig(walks_per_seed=1), HeuristicChooser(), 30):
                try:
                    q = template_question(w, walk_pages(small_world.store, w))
                except QuestionError:
                    continue
                http = HttpBackend(server)
                remote = await run_trajectory(q, 1, ScriptedAgent(), http, AgentConfig(), RuleJudge())
                await http.aclose()
                local = await run_trajectory(q, 1, ScriptedAgent(), LocalBackend(small_world.index, small_world.store),
                                             AgentConfig(), RuleJudge())
                return remote, local
        raise AssertionError("no question")

    remote, local = asyncio.run(run())
    assert remote["events"] == local["events"] and remote["messages"] == local["messages"]
    assert remote["stats"]["searches"] > 0 and remote["stats"]["opens_ok"] > 0
