"""Trajectory importers on the agents' own published files (excerpts in tests/fixtures/published, see its
PROVENANCE.md; the expected counts below were read off those files by hand), on messy synthetic records of each
agent family, URL normalisation, and `longtrace data import` with rejects, reasons and resume."""
import json
import re
from pathlib import Path

import pytest

from data_gen.agent_formats import extract_citations
from data_gen.importers import ImportFailed, import_record, iter_records
from data_gen.tool_text import page_failure, parse_page_outputs, parse_relaxed, parse_search_output
from data_gen.trajectory import document_roles, tier_candidates, url_key
from data_gen.urls import canonical_url, numbered_citations, urls_in_text

from .test_data_cli import cli, read

W = "https://en.wikipedia.org/wiki/"


@pytest.mark.parametrize("raw, want", [
    ("https://en.wikipedia.org/wiki/Lady_Gaga", W + "Lady_Gaga"),
    ("http://en.m.wikipedia.org/wiki/Lady_Gaga#Career", W + "Lady_Gaga"),
    ("https://r.jina.ai/https://en.wikipedia.org/wiki/lady_Gaga", W + "Lady_Gaga"),
    ("view-source:https://en.wikipedia.org/wiki/Caf%C3%A9_society", W + "Caf%C3%A9_society"),
    ("https://en.wikipedia.org/wiki/Café society", W + "Caf%C3%A9_society"),
    ("en.wikipedia.org/wiki/AC%2FDC_(band)?oldid=5", W + "AC/DC_(band)"),
    ("https://en.wikipedia.org/w/index.php?title=Poker_Face&action=edit", W + "Poker_Face"),
    ("https://de.m.wikipedia.org/wiki/Paul_Beneke", "https://de.wikipedia.org/wiki/Paul_Beneke"),
    ("http://www.Example.com:80/a/b/?utm_source=x&id=3&fbclid=y#top", "https://example.com/a/b?id=3"),
    ("https://example.com/", "https://example.com"),
    ("HTTPS://EXAMPLE.com/Path/%7Euser", "https://example.com/Path/~user"),
    ("https://example.com/a?srsltid=AfmBO&gclid=1", "https://example.com/a"),
    ("<https://example.com/x>", "https://example.com/x"),
    ("not a url", "not a url"),
])
def test_url_normalisation_table(raw, want):
    assert canonical_url(raw) == want


def test_urls_in_text_trims_punctuation_and_keeps_balanced_parentheses():
    text = f"See {W}AC/DC_(band). Also (https://x.org/a), and https://x.org/b?q=1."
    assert urls_in_text(text) == [W + "AC/DC_(band)", "https://x.org/a", "https://x.org/b?q=1"]


def test_relaxed_arguments():
    assert parse_relaxed("{'query': ['a', 'b'], 'num': 5,}") == {"query": ["a", "b"], "num": 5}
    assert parse_relaxed('{"ok": true, "x": None}') == {"ok": True, "x": None}
    assert parse_relaxed('{"url": ["https://a.org", "https://b.org"') == {"url": ["https://a.org", "https://b.org"]}
    assert parse_relaxed('```json\n{"a": 1}\n```') == {"a": 1}


# ------------------------------------------------------------------------------------------------ fixtures
def carr_search_output(hits):
    return "\n\n".join(f"[{i}] Title: {t}\n[{i}] URL Source: {u}\n[{i}] Description: {d}" for i, (t, u, d) in enumerate(hits))


def carr_record():
    """A CaRR slime dump, values wrapped in one-element lists like the released example file."""
    hits = [("Lady Gaga", W + "Lady_Gaga", "American singer"), ("Gaga (film)", W + "Gaga_(film)", "a film"),
            ("RedOne", "https://r.jina.ai/https://en.wikipedia.org/wiki/RedOne", "producer")]
    history = [
        {"role": "user", "content": "Which producer co-wrote the singer's debut hit?\n\nYour response should be in "
                                    "the following format:\n## Explanation with Citations\n...\n## Exact Answer\n..."},
        {"role": "assistant", "reasoning_content": "search first", "content": "",
         "tool_calls": [{"session_id": "s", "tool_call_id": "c1", "name": "browser.search",
                         "arguments": json.dumps({"query": "Lady Gaga debut single", "num": 3})}]},
        {"role": "tool", "content": [{"session_id": "s", "tool_call_id": "c1", "output": carr_search_output(hits)}]},
        # two calls in one turn: open result 0 and result 1 (the second fails with a forbidden-string page)
        {"role": "assistant", "reasoning_content": "open both", "content": "",
         "tool_calls": [{"tool_call_id": "c2", "name": "browser.open", "arguments": '{"id": 0}'},
                        {"tool_call_id": "c3", "name": "browser.open", "arguments": '{"id": "1"}'}]},
        {"role": "tool", "content": [
            {"tool_call_id": "c3", "output": "Failed: Forbidden string found in the page."},
            {"tool_call_id": "c2", "output": "Title: Lady Gaga\nURL Source: https://en.wikipedia.org/wiki/Lady_Gaga\n"
                                             "Markdown Content:\nLady Gaga is an American singer. Her debut single "
                                             "Just Dance was co-written by RedOne."}]},
        {"role": "assistant", "reasoning_content": "find", "content": "",
         "tool_calls": [{"tool_call_id": "c4", "name": "browser.find", "arguments": '{"pattern": "RedOne"}'}]},
        {"role": "tool", "content": [{"tool_call_id": "c4", "output": "[Match 1]\n...co-written by RedOne.\n\n[Match 2]\nRedOne"}]},
        {"role": "assistant", "reasoning_content": "done",
         "content": "## Explanation with Citations\nHer debut single was co-written by RedOne "
                    f"[[0]({W}Lady_Gaga)], [[2](https://en.m.wikipedia.org/wiki/RedOne)], "
                    "[[9](https://never-seen.org/page)].\n\n## Exact Answer\nRedOne\n\n## References\n"
                    f"[[5]({W}Gaga_(film))]"},
    ]
    return {"prompt": ["<|im_start|>user\n...<|im_end|>"], "label": ["RedOne"], "history": [history],
            "rewards": [{"outcome_reward": 1.0}], "task_unfinished": [False]}


def test_carr_import():
    t = import_record(carr_record(), "auto")
    assert t["source_format"] == "carr" and t["format"] == "carr" and t["has_citations"]
    assert t["question"] == "Which producer co-wrote the singer's debut hit?" and t["gold_answer"] == "RedOne"
    kinds = [e["type"] for e in t["events"]]
    assert kinds == ["search", "open", "open", "find", "answer", "cite", "cite", "cite"]
    opens = [e for e in t["events"] if e["type"] == "open"]
    assert opens[0]["ok"] and opens[0]["url"] == W + "Lady_Gaga" and opens[0]["requested_as"] == "id"
    assert "co-written by RedOne" in opens[0]["text"] and opens[0]["text_kind"] == "page_markdown"
    assert not opens[1]["ok"] and "forbidden" in opens[1]["error"].lower()  # matched by tool_call_id, not by order
    assert t["events"][3]["matches"] == 2 and t["events"][3]["url"] == W + "Lady_Gaga"
    cites = [e for e in t["events"] if e["type"] == "cite"]
    assert [c["seen"] for c in cites] == [True, True, False]  # References cut; never-seen URL does not count
    roles = document_roles(t)
    assert roles["opened"] == [W + "Lady_Gaga"]
    assert roles["cited"] == [W + "Lady_Gaga", W + "RedOne"]
    assert W + "Gaga_(film)" in roles["searched"] and W + "RedOne" in roles["searched"]
    assert t["final_answer"] == "RedOne" and t["termination"] == "answer"
    # CaRR's own reward is the verdict (here as the reward server's {"outcome_reward": ...})
    assert t["verdict"]["judge"] == "record:rewards.outcome_reward" and t["correct"] is True
    no_reward = {k: v for k, v in carr_record().items() if k != "rewards"}
    assert import_record(no_reward)["verdict"] is None  # nothing of its own: the CLI judges it


def tongyi_messages(search_output, visit_output, final):
    return [
        {"role": "system", "content": "You are a deep research assistant..."},
        {"role": "user", "content": "Which city hosts the studio where the album was recorded?"},
        # missing <think>: the template pre-opens it; query given as a string instead of a list
        {"role": "assistant", "content": "I should search.\n</think>\n<tool_call>\n{\"name\": \"search\", "
                                         "\"arguments\": {\"query\": \"Signal Recording Studio city\"}}\n</tool_call>"},
        {"role": "user", "content": f"<tool_response>\n{search_output}\n</tool_response>"},
        # relaxed JSON (single quotes, trailing comma) and two URLs in one visit
        {"role": "assistant", "content": "<think>\nvisit both\n</think>\n<tool_call>\n{'name': 'visit', 'arguments': "
                                         "{'url': ['https://en.wikipedia.org/wiki/Signal_Recording_Studio', "
                                         "'https://music.example.com/studios/signal/'], 'goal': 'city',}}\n</tool_call>"},
        {"role": "user", "content": f"<tool_response>\n{visit_output}\n</tool_response>"},
        {"role": "assistant", "content": final},
    ]


VISIT = ("The useful information in https://en.wikipedia.org/wiki/Signal_Recording_Studio for user goal city as "
         "follows: \n\nEvidence in page: \nSignal Recording Studio is a studio in Varholm.\n\nSummary: \nIn Varholm.\n\n"
         "\n=======\nThe useful information in https://music.example.com/studios/signal/ for user goal city as follows: "
         "\n\nEvidence in page: \nThe provided webpage content could not be accessed.\n\nSummary: \nThe webpage "
         "content could not be processed.\n\n")


def test_literesearcher_import_text_results():
    search = ("A Google search for 'Signal Recording Studio city' found 2 results:\n\n## Web Results\n"
              "1. [Signal Recording Studio](https://en.wikipedia.org/wiki/Signal_Recording_Studio)\n"
              "Date published: 2020\nSource: Wikipedia\n\nA recording studio in Varholm.\n\n"
              "2. [Signal (band)](http://en.wikipedia.org/wiki/Signal_(band)?utm_source=serp)\n\nA band.")
    rec = {"question": "Which city hosts the studio where the album was recorded?", "answer": "Varholm",
           "messages": tongyi_messages(search, VISIT, "<think>\nfound it\n</think>\n<answer>Varholm</answer>"),
           "prediction": "Varholm", "termination": "answer", "judge": {"correct": True, "status": "ok"}}
    t = import_record(rec)
    assert t["source_format"] == "literesearcher" and t["format"] == "react" and not t["has_citations"]
    search_ev = t["events"][0]
    assert search_ev["query"] == "Signal Recording Studio city" and len(search_ev["results"]) == 2
    assert search_ev["results"][1]["url"].startswith("http://en.wikipedia.org/wiki/Signal_(band)")
    opens = [e for e in t["events"] if e["type"] == "open"]
    assert [o["ok"] for o in opens] == [True, False] and "could not be accessed" in opens[1]["error"]
    assert opens[1].get("unsearched") and opens[0]["text_kind"] == "llm_summary"
    assert t["final_answer"] == "Varholm" and t["verdict"]["correct"] and t["verdict"]["judge"] == "record:judge.correct"
    assert document_roles(t)["opened"] == [W + "Signal_Recording_Studio"]


def test_dr_venus_json_results_and_truncated_final_turn():
    search = json.dumps([{"query": "Signal Recording Studio city", "web_page_info_list": [
        {"title": "Signal Recording Studio", "url": "https://en.wikipedia.org/wiki/Signal_Recording_Studio",
         "snippet": "A studio in Varholm.", "date": "2021"},
        {"title": "Varholm", "url": "https://en.m.wikipedia.org/wiki/Varholm", "snippet": "A city."}]}])
    msgs = tongyi_messages(search, VISIT, "<think>\nI will now visit the city page to confirm, then answer")
    msgs[-1]["content"] += "\n</think>\n<tool_call>\n{\"name\": \"visit\", \"arguments\": {\"url\": [\"https://en.wiki"
    t = import_record({"question": "Which city hosts the studio where the album was recorded?", "gt": "Varholm",
                       "messages": msgs}, "dr-venus")
    assert t["source_format"] == "dr-venus" and t["termination"] == "truncated" and t["final_text"] == ""
    assert [e["type"] for e in t["events"]][:3] == ["search", "open", "open"]
    assert t["events"][0]["results"][1]["url"] == "https://en.m.wikipedia.org/wiki/Varholm"
    # the cut-off call was parsed (its JSON closed) but never got an output: recorded as an error
    assert t["events"][-1]["type"] == "error" and "no tool output" in t["events"][-1]["message"]
    assert t["gold_answer"] == "Varholm" and t["verdict"] is None


def test_deepresearcher_rendered_string_with_python_literals():
    results = repr([{"search_query": "Signal studio", "web_page_info_list": [
        {"title": "Signal Recording Studio", "url": W + "Signal_Recording_Studio", "quick_summary": "In Varholm."},
        {"title": "Lantern Studios", "url": "https://www.lantern.example/studio", "quick_summary": "Another one."}]}])
    pages = repr([{"url": W + "Signal_Recording_Studio", "information": [{"page_number": 0, "page_summary": "Varholm."}]},
                  {"url": "https://elsewhere.example/x", "information": [{"page_number": 0, "page_summary": "?"}]}])
    s = ("<|im_start|>system\nYou are Deep AI Research Assistant ...<|im_end|>\n<|im_start|>user\nQuestion: Where is "
         "the studio?<|im_end|>\n<|im_start|>assistant\n<think>search</think>\n<tool_call>\n{\"name\": \"web_search\", "
         "\"arguments\": {\"query\": [\"Signal studio\"]}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
         f"{results}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>read</think>\n<tool_call>\n"
         "{\"name\": \"browse_webpage\", \"arguments\": {\"url_list\": [\"" + W + "Signal_Recording_Studio\", "
         "\"https://elsewhere.example/x\"]}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
         f"{pages}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>ok</think>\n<answer>Varholm</answer><|im_end|>")
    t = import_record({"idx": 7, "question": "Where is the studio?", "message_str": s})
    assert t["source_format"] == "deepresearcher" and t["question_id"] == "7"
    opens = [e for e in t["events"] if e["type"] == "open"]
    assert opens[0]["ok"] and opens[0]["text_kind"] == "page_summaries"
    # DeepResearcher reads only URLs of the latest search: the other one is not opened
    assert not opens[1]["ok"] and "latest search" in opens[1]["error"]
    assert t["final_answer"] == "Varholm" and t["turns"] == 3


def test_search_r1_stream():
    resp = ("<think>need the studio</think>\n<search> Signal Recording Studio </search>\n\n<information>Doc 1(Title: "
            "\"Signal Recording Studio\") Signal Recording Studio is in Varholm.\nDoc 2(Title: Varholm) Varholm is a "
            "city.</information>\n\n<think>got it</think>\n<answer> Varholm </answer>")
    t = import_record({"question": "Where is the studio?", "golden_answers": ["Varholm", "Varholm, Ostland"],
                       "response": resp})
    assert t["source_format"] == "search-r1" and t["gold_answer"] == "Varholm"
    ev = t["events"][0]
    assert ev["query"] == "Signal Recording Studio"
    assert [r["url"] for r in ev["results"]] == [W + "Signal_Recording_Studio", W + "Varholm"]
    assert t["final_answer"] == "Varholm"


def test_search_output_parsers_agree_on_hits():
    carr = carr_search_output([("A", "https://a.org", "x"), ("B", "https://b.org", "y")])
    md = "A search for 'q' found 2 results:\n\n## Web Results\n1. [A](https://a.org)\nx\n\n2. [B](https://b.org)\ny"
    js = json.dumps([{"query": "q", "web_page_info_list": [{"title": "A", "url": "https://a.org", "snippet": "x"},
                                                          {"title": "B", "url": "https://b.org", "snippet": "y"}]}])
    for text in (carr, md, js):
        (groups,) = [parse_search_output(text)]
        assert [(h["rank"], h["title"], h["url"], h["snippet"]) for h in groups[0][1]] == [
            (0, "A", "https://a.org", "x"), (1, "B", "https://b.org", "y")]


def test_unreadable_records_raise_with_a_reason():
    with pytest.raises(ImportFailed, match="no conversation"):
        import_record({"question": "q"})
    with pytest.raises(ImportFailed, match="not recognised"):
        import_record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    with pytest.raises(ImportFailed, match="JSON object"):
        import_record(["a list"])
    with pytest.raises(ImportFailed, match="needs"):
        import_record({"schema": "longtrace.trajectory/v1", "question": "q"})


def test_json_document_inputs(tmp_path):
    p = tmp_path / "eval.json"
    p.write_text(json.dumps({"metadata": {"judge": "x"}, "records": [{"a": 1}, {"b": 2}]}, indent=2))
    assert [pos for pos, _ in iter_records(p)] == [1, 2]


def test_import_cli_rejects_and_resume(tmp_path):
    src = tmp_path / "carr.jsonl"
    good = {k: v for k, v in carr_record().items() if k != "rewards"}  # no verdict of its own: judged here
    lines = [json.dumps(good), "{broken json", json.dumps({"question": "no conversation here"}),
             json.dumps({**good, "label": ["Lady Gaga"]})]
    src.write_text("\n".join(lines) + "\n")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": "qx", "question": "Which producer co-wrote the singer's debut hit?",
                                     "answer": "RedOne", "gold_pages": [{"url": W + "RedOne", "title": "RedOne"}]}) + "\n")
    out = tmp_path / "t.jsonl"
    proc = cli("import", "--input", src, "--output", out, "--questions", questions)
    trajs = read(out)
    assert len(trajs) == 2 and all(t["question_id"] == "qx" and t["gold_urls"] == [W + "RedOne"] for t in trajs)
    # judged by the rule judge against each record's own label
    assert sorted(t["correct"] for t in trajs) == [False, True]
    rejects = read(tmp_path / "t.rejects.jsonl")
    assert [r["line"] for r in rejects] == [2, 3] and "no conversation" in rejects[1]["error"]
    assert "records rejected" in proc.stdout
    proc = cli("import", "--input", src, "--output", out, "--questions", questions)
    assert read(out) == trajs and "already imported (resume)" in proc.stdout


# ------------------------------------------------------------------------------------------------ published files
PUBLISHED = Path(__file__).parent / "fixtures" / "published"


def published(path):
    """The records of one excerpt, as the importer reads the file."""
    return [rec for _, rec in iter_records(PUBLISHED / path)]


def opens(t):
    return [e for e in t["events"] if e["type"] == "open"]


def failed(t):
    """(url, failure kind) of the opens that did not show the agent a page."""
    return [(e["url"], e["error"].split(":")[0]) for e in opens(t) if not e["ok"]]


def test_published_carr_browsecomp_example():
    (rec,) = published("carr/browsecomp_example.json")
    t = import_record(rec)
    assert t["source_format"] == "carr" and t["gold_answer"] == "UFC 219: Cyborg vs. Holm"
    assert t["question"].startswith("Can you tell me the name of the MMA event which occurred before 2022")
    assert t["stats"] == {"searches": 31, "opens": 10, "opens_ok": 10, "finds": 4, "cites": 5, "errors": 0}
    assert sum(len(e["results"]) for e in t["events"] if e["type"] == "search") == 49  # hits kept in the excerpt
    assert [e["requested_as"] for e in opens(t)] == ["id"] * 5 + ["url"] * 3 + ["id"] * 2
    glenn = "https://sports-statistics.com/ufc/ufc-fight-statistics/ufc-219-cyborg-vs-holm/myles-jury-v-ricky-glenn"
    assert [e["url"] for e in opens(t)][5:8] == [W + "John_McCarthy_(referee)", W + "UFC_219", glenn]
    finds = [e for e in t["events"] if e["type"] == "find"]
    assert [f["matches"] for f in finds] == [0, 6, 0, 1] and {f["url"] for f in finds} == {W + "UFC_219"}
    # the citations of the body (References cut); the referee's page has parentheses in its URL
    cited = [W + "UFC_219", glenn, W + "Myles_Jury", "https://www.wordhippo.com/what-is/another-word-for/gladiator.html",
             W + "John_McCarthy_(referee)"]
    assert t["citations"] == cited and all(e["seen"] for e in t["events"] if e["type"] == "cite")
    assert t["final_answer"] == "UFC 219: Cyborg vs. Holm" and t["termination"] == "answer"
    # CaRR's own reward ("rewards": [1.0]) is the verdict
    assert t["correct"] is True and t["verdict"]["judge"] == "record:rewards" and t["verdict"]["score"] == 1.0
    tiers = tier_candidates([t])
    assert sorted(tiers["cited"]) == sorted(url_key(u) for u in cited)
    # opened and not cited: 5 distractor pages; the cited referee page is not one of them
    assert len(tiers["tier1"]) == 5 and url_key(W + "John_McCarthy_(referee)") not in tiers["tier1"]


def test_published_literesearcher_viewer_case():
    (case,) = published("literesearcher/Seal0.json")
    t = import_record(case)
    assert t["source_format"] == "literesearcher" and t["question_id"] == "Seal0:110"
    assert t["gold_answer"] == "Astra Zeneca" and "AstraZeneca" in t["final_answer"]
    # the viewer's own stats: n_search 26 (queries), n_visit 20
    assert t["stats"]["searches"] == 26 and t["stats"]["opens"] == 20 and t["stats"]["opens_ok"] == 11
    assert sum(len(e["results"]) for e in t["events"] if e["type"] == "search") == 39  # hits kept in the excerpt
    lolma = W + "List_of_largest_mergers_and_acquisitions"
    assert [(url_key(u), kind) for u, kind in failed(t)] == [
        (lolma, "tool error"), (lolma, "tool error"), (lolma, "tool error"),  # "Failed to extract"
        (W + "Daimler-Benz_and_Chrysler", "http error"),  # the 404 is reported in the summary only
        (lolma, "tool error"), (lolma, "tool error"),
        ("https://finance.yahoo.com/news/10-giant-m-deals-almost-140203880.html", "blocked"),  # a consent banner
        ("https://businessinsider.com/the-biggest-merger-failures-of-all-time-2023-10", "tool error"),
        (lolma, "tool error")]  # the printable index.php URL
    # the same list read through r.jina.ai worked, and a page about deals "blocked by regulators" counts as read
    roles = document_roles(t)
    assert len(roles["opened"]) == 8 and lolma in roles["opened"]
    assert t["termination"] == "answer" and t["correct"] is True and t["verdict"]["judge"] == "record:judge_correct"


@pytest.mark.parametrize("name, searches, hits, visits, failures, answer", [
    ("0003.json", 65, 71, 16, [("https://www.reddit.com/r/MapPorn/comments/hkhv2u/the_name_origin_of_counties_in_the_united_states/",
                            "http error"),
                           (W + "Locations_in_the_United_States_named_for_a_place_in_England", "timeout"),
                           (W + "Global_Health_ Estimates", "not found")], "2020"),  # a URL with a space
    ("0005.json", 34, 38, 12, [("https://www.reddit.com/r/MapPorn/comments/3z32kz/us_counties_with_cities_that_are_named_after/",
                            "http error"),
                           (W + "List_of_the_most_common_U.S._county_name_etymologies", "timeout"),
                           (W + "Kent_County,_Indiana", "not found")], "2018"),  # summary claims it exists
])
def test_published_dr_venus_rl_rollouts(name, searches, hits, visits, failures, answer):
    (rec,) = published(f"dr_venus/RL_Rollout_Trajectories/{name}")
    t = import_record(rec)
    assert t["source_format"] == "dr-venus" and t["question_id"] == rec["request_id"]
    assert t["sample_index"] == rec["sample_idx"] and t["question"].startswith("A report from a public health agency")
    assert t["stats"]["searches"] == searches and t["stats"]["opens"] == visits
    assert sum(len(e["results"]) for e in t["events"] if e["type"] == "search") == hits
    assert failed(t) == failures and t["stats"]["opens_ok"] == visits - len(failures)
    assert t["final_answer"] == answer and t["termination"] == "answer"
    assert t["gold_answer"] is None and t["verdict"] is None and t["correct"] is None  # no gold: no verdict


def test_published_dr_venus_same_blocked_page_same_verdict():
    """Reddit's "You've been blocked by network security" page, in two rollouts: not opened in both."""
    pages = [[e for e in opens(import_record(rec)) if "reddit.com" in e["url"]]
             for name in ("0003.json", "0005.json") for rec in published(f"dr_venus/RL_Rollout_Trajectories/{name}")]
    assert [len(p) for p in pages] == [1, 1]
    assert [p[0]["ok"] for p in pages] == [False, False]
    assert pages[0][0]["error"] == pages[1][0]["error"] == "http error: 403 Forbidden"


def test_published_dr_venus_sft_trajectory():
    (rec,) = published("dr_venus/SFT_Trajectories/0000.json")
    t = import_record(rec)
    assert t["gold_answer"] == "Paul Beneke" and t["final_answer"] == "Paul Beneke"
    assert t["stats"]["searches"] == 12 and t["stats"]["opens"] == 12 and t["stats"]["opens_ok"] == 12
    assert sum(len(e["results"]) for e in t["events"] if e["type"] == "search") == 17
    assert t["verdict"] is None  # no verdict of its own: judged on import against "gt"


def test_published_search_r1_transcripts():
    records = list(iter_records(PUBLISHED / "search_r1/case.txt"))
    assert [pos for pos, _ in records] == [1, 28]  # the first line of each conversation
    t1, t2 = (import_record(rec) for _, rec in records)
    assert t1["source_format"] == t2["source_format"] == "search-r1"
    assert t1["question"] == "paul walkers cars in fast and furious list?"
    assert [e["query"] for e in t1["events"] if e["type"] == "search"] == [
        "Paul Walker's cars in Fast and Furious", "list of cars paul walker drove in Fast and Furious"]
    assert {r["url"] for e in t1["events"] if e["type"] == "search" for r in e["results"]} == {W + "Paul_Walker"}
    # the last turn has no <|im_end|>: the closed <answer> still ends the episode
    assert t1["final_answer"] == "Charger" and t1["termination"] == "answer"
    assert [r["url"] for e in t2["events"] if e["type"] == "search" for r in e["results"]] == [
        W + "Cardiac_pacemaker", W + "Electrical_conduction_system_of_the_heart", W + "Sinoatrial_node"]
    assert t2["final_answer"] == "sinoatrial (SA) node" and t2["gold_answer"] is None


@pytest.mark.parametrize("output, kind", [
    ("Tool execution timed out after 120 seconds.", "timeout"),  # DR-Venus
    # LiteResearcher / DR-Venus visit frames, abridged from the published files
    ("Evidence in page: \nFailed to extract\n\nSummary: \nContent could not be processed", "tool error"),
    ("Evidence in page: \nThe webpage content is too short or could not be fully loaded (anti-crawl, login required, "
     "or empty page).\n\nSummary: \nThe webpage content could not be processed.", "tool error"),
    ("Evidence in page: \nSummary failed - cached markdown only\n\nSummary: \nSummary failed - cached markdown only",
     "tool error"),
    ("Evidence in page: \n" + "| Image | Navigation |\n" * 40 + "\nSummary: \nThe requested page for August 2008 is "
     "unavailable due to a 404 error. However, the website provides alternative tools.", "http error"),
    ("Evidence in page: \n*   [Article](https://en.wikipedia.org/w/index.php?title=Kent_County,_Indiana&action=edit&"
     "redlink=1 \"View the content page (page does not exist) [alt-c]\")\n\nSummary: \nThe webpage confirms the "
     "existence of 'Kent County, Indiana' by its title.", "not found"),
    ("Evidence in page: \n维基百科目前还没有与上述标题相同的条目。\n\nSummary: \n该条目不存在。", "not found"),
    ("Evidence in page: \nYou've been blocked by network security.\n\nTo continue, log in.\n\nSummary: \nNo content.",
     "blocked"),
    ("Evidence in page: \nThe webpage content is empty: \"content\":\"\".\n\nSummary: \nNothing.", "empty page"),
    ("Title: X\n\nURL Source: https://x.org/a\n\nWarning: Target URL returned error 404: Not Found\n\nMarkdown Content:\n"
     "Oops", "http error"),  # Jina Reader (CaRR's open)
    ("", "empty page"),
])
def test_page_failure_reads_the_whole_output(output, kind):
    assert page_failure(output).split(":")[0] == kind


@pytest.mark.parametrize("output", [
    # pages that were read, though their words look like failures
    "Evidence in page: \nThe deal was blocked by regulators; the bid failed.\n\nSummary: \nSeveral deals were blocked.",
    "Evidence in page: \n| 404 | 403 | Total |\n[Foo](https://en.wikipedia.org/w/index.php?title=Foo&action=edit&redlink=1"
    " \"Foo (page does not exist)\")\n\nSummary: \nThe county had 404 residents.",
    "Evidence in page: \nNo list here.\n\nSummary: \nThe provided webpage content does not contain any information "
    "about the headquarters.",
])
def test_page_failure_leaves_read_pages_alone(output):
    assert page_failure(output) is None


def test_numbered_citations_balance_parentheses():
    text = (f"[[7]({W}John_McCarthy_(referee))], [[1](https://x.org/a?b=1&c=(2)), [2](view-source:https://y.org/é#x)] "
            "[3](https://not-a-citation.org) [[4](https://z.org/a_(b)]")
    assert numbered_citations(text) == [(7, W + "John_McCarthy_(referee)"), (1, "https://x.org/a?b=1&c=(2)"),
                                        (2, "https://y.org/é#x"), (4, "https://z.org/a_(b")]
    assert extract_citations(text + "\n## References\n[[9](https://ref.org)]") == numbered_citations(text)


def test_import_cli_published_files(tmp_path):
    inputs = [PUBLISHED / p for p in ("carr/browsecomp_example.json", "literesearcher/Seal0.json",
                                      "dr_venus/SFT_Trajectories/0000.json", "dr_venus/RL_Rollout_Trajectories/0003.json",
                                      "dr_venus/RL_Rollout_Trajectories/0005.json", "search_r1/case.txt")]
    out = tmp_path / "t.jsonl"
    proc = cli("import", "--input", *inputs, "--output", out)
    trajs = read(out)
    assert [t["source_format"] for t in trajs] == ["carr", "literesearcher"] + ["dr-venus"] * 3 + ["search-r1"] * 2
    by_status = {}
    for t in trajs:
        by_status.setdefault(t["verdict"]["status"], []).append(t["correct"])
    # CaRR and LiteResearcher carry their own verdicts, DR-Venus SFT is judged against "gt", the rest have no gold
    assert by_status == {"from_record": [True, True], "judged": [True], "no_gold": [None] * 4}
    assert "3 correct, 0 wrong, 4 without a verdict" in proc.stdout and not (tmp_path / "t.rejects.jsonl").exists()


def test_import_cli_rejects_named_by_file_position_and_field(tmp_path):
    (case,) = published("literesearcher/Seal0.json")
    broken = json.loads(json.dumps(case))
    broken["steps"][1]["tool_calls"] = "search"
    doc = tmp_path / "viewer.json"
    doc.write_text(json.dumps({"benchmark": "Seal0", "cases": [case, broken, {"id": 3, "question": "q"}]}))
    out = tmp_path / "t.jsonl"
    proc = cli("import", "--input", doc, "--output", out)  # partial: 1 of 3
    assert len(read(out)) == 1 and "rejected records by reason" in proc.stdout
    rejects = read(tmp_path / "t.rejects.jsonl")
    assert [r["line"] for r in rejects] == [2, 3]
    assert rejects[0]["error"].startswith("viewer.json record 2: field 'steps[1].tool_calls'")
    assert rejects[1]["error"].startswith("viewer.json record 3: no conversation found")
    for reason in ("bad field", "no conversation"):
        assert reason in proc.stdout
    # nothing importable at all: a non-zero exit with the reasons
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n{broken\n["a list"]\n{"question": "r"}\n')
    proc = cli("import", "--input", bad, "--output", tmp_path / "none.jsonl", check=False)
    assert proc.returncode == 1 and "no trajectory imported" in proc.stderr
    table = proc.stdout[proc.stdout.index("rejected records by reason"):]
    assert re.search(r"no conversation\s*│\s*2\s*│", table) and re.search(r"invalid JSON\s*│\s*1\s*│", table)
    assert re.search(r"not an object\s*│\s*1\s*│", table)
    assert "bad.jsonl line 2: not valid JSON" in table


def test_published_deepresearcher_tool_outputs():
    """DeepResearcher publishes no trajectory; its hand-off buffers (signal/) hold one real web_search and one real
    browse_webpage exchange, in the formats its rollouts render (as Python literals) into tool responses."""
    (search,) = published("deepresearcher/data_search.json")
    assert search["tool_call"]["name"] == "web_search"
    groups = parse_search_output(repr(search["content"]))
    assert [(q, len(hits)) for q, hits in groups] == [
        ("Ray Lake The Real Thing", 10), ("Ray Lake update", 10), ("what happened to Ray Lake", 9)]
    assert groups[0][1][0]["url"] == W + "The_Real_Thing_(British_band)"
    (read,) = published("deepresearcher/data_read.json")
    pages = parse_page_outputs(repr(read["content"]))
    # 10 entries for the 6 URLs asked for: one page per URL, summaries merged; all read (none reports a failure)
    assert sorted(p.url for p in pages) == sorted(read["tool_call"]["arguments"]["url_list"])
    assert [p.error for p in pages] == [None] * 6
    assert [bool(p.text) for p in pages] == [True, False, True, True, True, True]  # facebook: nothing extracted
    assert "took his own life on 9 March 2000" in pages[0].text and pages[0].url == W + "The_Real_Thing_(British_band)"
