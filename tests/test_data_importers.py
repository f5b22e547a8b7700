"""Trajectory importers on realistic records of each agent family (messy ones included), URL normalisation,
and `longtrace data import` with rejects and resume."""
import json

import pytest

from data_gen.importers import ImportFailed, import_record, iter_records
from data_gen.tool_text import parse_relaxed, parse_search_output
from data_gen.trajectory import document_roles
from data_gen.urls import canonical_url, urls_in_text

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
    assert not opens[1]["ok"] and "forbidden" in opens[1]["error"]  # matched by tool_call_id, not by order
    assert t["events"][3]["matches"] == 2 and t["events"][3]["url"] == W + "Lady_Gaga"
    cites = [e for e in t["events"] if e["type"] == "cite"]
    assert [c["seen"] for c in cites] == [True, True, False]  # References cut; never-seen URL does not count
    roles = document_roles(t)
    assert roles["opened"] == [W + "Lady_Gaga"]
    assert roles["cited"] == [W + "Lady_Gaga", W + "RedOne"]
    assert W + "Gaga_(film)" in roles["searched"] and W + "RedOne" in roles["searched"]
    assert t["final_answer"] == "RedOne" and t["termination"] == "answer"
    assert t["verdict"] is None  # no outcome verdict in the record: the CLI judges it


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
    good = carr_record()
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
