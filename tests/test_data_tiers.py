"""Tiers on hand-made trajectories over the small synthetic world: cited never a distractor, failed opens not
counted, gold / question-text / duplicate filtering, inferred citations flagged, unresolved documents counted."""
import asyncio

import pytest

from data_gen.questions import QuestionError, template_question, walk_pages
from data_gen.tiers import build_tiers
from data_gen.walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed


@pytest.fixture(scope="module")
def question(small_world):
    async def run():
        for s in pick_seeds(small_world.store, 10, seed=5):
            for w in await walk_from_seed(small_world.store, s, WalkConfig(walks_per_seed=1), HeuristicChooser(), 5):
                try:
                    return template_question(w, walk_pages(small_world.store, w))
                except QuestionError:
                    pass

    q = asyncio.run(run())
    assert q is not None
    return q


def other_pages(world, question, n):
    gold = {g["pid"] for g in question["gold_pages"]}
    out = []
    for page in world.store.iter_pages():
        if page.pid not in gold and not page.is_disambiguation and len(page.text()) > 80:
            out.append(page)
        if len(out) == n:
            return out


def search(turn, query, urls):
    return {"type": "search", "turn": turn, "query": query,
            "results": [{"rank": i, "title": "", "url": u, "snippet": ""} for i, u in enumerate(urls)]}


def opened(turn, url, ok=True, text=None):
    e = {"type": "open", "turn": turn, "url": url, "title": None, "requested_as": "url", "ok": ok,
         "text_kind": "page_markdown", "chars": 0, "error": None if ok else "Failed to parse URL content"}
    if text is not None:
        e["text"] = text
    return e


def traj(qid, tid, events, correct=True, fmt="carr", final_text="", final_answer=None, has_citations=None):
    t = {"trajectory_id": tid, "question_id": qid, "agent": fmt, "format": fmt, "events": events, "correct": correct,
         "final_text": final_text, "final_answer": final_answer}
    if has_citations is not None:
        t["has_citations"] = has_citations
    return t


def test_tiers_rules(small_world, question):
    store, q = small_world.store, question
    gold = q["gold_pages"]
    p = other_pages(small_world, q, 9)
    mobile = lambda page: page.url.replace("en.wikipedia", "en.m.wikipedia")  # noqa: E731
    unknown = "https://nowhere.example/unknown-page"
    leak_text = "A forum post quoting the puzzle: " + q["question"] + " Any ideas?"
    t1 = traj(q["question_id"], "a#0", [
        search(0, "first", [gold[0]["url"], p[0].url, p[1].url, p[2].url, unknown, mobile(store.page(gold[1]["pid"]))]),
        opened(1, gold[0]["url"]),
        opened(2, p[0].url),                     # opened, not cited: tier 1
        opened(3, p[1].url, ok=False),           # failed open: still only searched -> tier 2
        opened(4, p[3].url),                     # opened and cited: never a distractor
        opened(5, "https://forum.example/t/1", text=leak_text),   # contains the question: dropped
        opened(6, "https://copy.example/gold", text=store.page(gold[2]["pid"]).text()),  # duplicates a gold page
        opened(7, "https://mirror.example/p0", text=p[0].text()),  # duplicates a tier-1 page
        opened(8, "https://blog.example/post?utm_source=x", text="A blog post about something else entirely."),
        {"type": "cite", "turn": 9, "url": "http://en.m.wikipedia.org/wiki/" + p[3].url.rsplit("/", 1)[1], "seen": True},
        {"type": "cite", "turn": 9, "url": p[2].url, "seen": False},  # unseen citation: does not count
    ])
    bad = traj(q["question_id"], "a#1", [search(0, "x", [p[4].url]), opened(1, p[4].url)], correct=False)
    answer = q["answer"]
    react = traj(q["question_id"], "lite#0", [
        search(0, "q", [p[5].url, p[6].url, p[7].url]),
        opened(1, p[5].url), opened(2, p[6].url),
    ], fmt="react", has_citations=False, final_answer=answer,
        final_text=f"<think>see {p[7].url} and {p[6].url}.</think><answer>{answer}</answer>")
    (rec,) = build_tiers(store, [q], [t1, bad, react])
    t1_urls = [d["url"] for d in rec["tier1"]]
    t2_urls = [d["url"] for d in rec["tier2"]]
    gold_urls = {g["url"] for g in gold}

    assert p[0].url in t1_urls and "https://blog.example/post?utm_source=x" in t1_urls
    blog = next(d for d in rec["tier1"] if d["url"].startswith("https://blog"))
    assert blog["source"] == "trajectory" and blog["pid"] is None and "something else" in blog["text"]
    assert p[1].url in t2_urls and p[1].url not in t1_urls  # the failed open
    assert p[3].url not in t1_urls + t2_urls and p[3].url in rec["cited"]
    assert p[2].url in t2_urls  # its only citation was unseen
    assert p[4].url not in t1_urls + t2_urls  # seen only by an incorrect trajectory
    assert not gold_urls & set(t1_urls + t2_urls)  # gold (incl. the mobile URL of a gold page) never a distractor
    assert rec["dropped"]["contains_question"] == ["https://forum.example/t/1"]
    assert rec["dropped"]["gold_duplicate"] == ["https://copy.example/gold"]
    assert rec["dropped"]["duplicate"] == ["https://mirror.example/p0"]
    assert rec["dropped"]["unresolved"] == [unknown] and rec["counts"]["dropped_unresolved"] == 1
    # inferred citations of the citation-less agent: URL written in its final text (and seen)
    inferred = {c["url"]: c["reason"] for c in rec["inferred_citations"]}
    assert inferred[p[6].url] == "url_in_answer" and inferred[p[7].url] == "url_in_answer"
    assert p[6].url not in t1_urls and p[7].url not in t2_urls
    assert rec["citations"] == "mixed" and rec["counts"]["trajectories_kept"] == 2
    prov = next(d for d in rec["tier1"] if d["url"] == p[0].url)["provenance"]
    assert prov[0] == {"trajectory_id": "a#0", "agent": "carr", "turn": 2, "via": "open", "query": "first", "rank": 1}
    t2 = next(d for d in rec["tier2"] if d["url"] == p[1].url)
    assert t2["provenance"][0]["via"] == "search" and t2["provenance"][0]["rank"] == 2


def test_inferred_citation_from_an_opened_page_with_the_answer(small_world, question):
    store, q = small_world.store, question
    gold_pids = {g["pid"] for g in q["gold_pages"]}
    answer = "Zorblax"  # a word no page has, so that exactly the page we write it into matches
    p = other_pages(small_world, q, 3)
    text_with = "This page says the answer is Zorblax, as sources agree."
    t = traj(q["question_id"], "dv#0", [
        search(0, "q", [p[0].url, "https://site.example/a", p[1].url]),
        opened(1, "https://site.example/a", text=text_with), opened(2, p[0].url),
    ], fmt="react", has_citations=False, final_answer=answer, final_text=f"<answer>{answer}</answer>")
    (rec,) = build_tiers(store, [q], [t])
    assert rec["citations"] == "inferred"
    assert rec["inferred_citations"] == [{"url": "https://site.example/a", "trajectory_id": "dv#0",
                                          "reason": "contains_answer"}]
    assert [d["url"] for d in rec["tier1"]] == [p[0].url] and [d["url"] for d in rec["tier2"]] == [p[1].url]
    assert not gold_pids & {d["pid"] for d in rec["tier1"] + rec["tier2"]}
    (plain,) = build_tiers(store, [q], [t], infer_citations=False)
    assert {d["url"] for d in plain["tier1"]} == {p[0].url, "https://site.example/a"} and plain["citations"] == "none"


def test_questions_without_kept_trajectories_are_skipped(small_world, question):
    t = traj(question["question_id"], "x#0", [search(0, "q", [])], correct=False)
    assert build_tiers(small_world.store, [question], [t]) == []
    (rec,) = build_tiers(small_world.store, [question], [t], correct_only=False)
    assert rec["counts"]["trajectories_kept"] == 1 and rec["tier1"] == rec["tier2"] == []
