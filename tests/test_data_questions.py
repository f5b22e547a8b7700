"""Question synthesis: template questions on the synthetic world, the LLM writer against a local fake endpoint."""
import asyncio
import json

import pytest

from data_gen.chat import ChatClient, ChatConfig
from data_gen.questions import (LLMQuestionWriter, QuestionError, QuestionLimits, display_name, template_question,
                                validate, walk_pages)
from data_gen.walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed
from reward.normalize import normalize
from reward.rubric import rubric_reward


@pytest.fixture(scope="module")
def walks(small_world):
    async def run():
        out = []
        for s in pick_seeds(small_world.store, 12, seed=11):
            out += await walk_from_seed(small_world.store, s, WalkConfig(walks_per_seed=2), HeuristicChooser(), 11)
        return out

    return asyncio.run(run())


def test_template_questions_are_valid_multi_hop(small_world, walks):
    store, made = small_world.store, 0
    for w in walks:
        pages = walk_pages(store, w)
        try:
            q = template_question(w, pages)
        except QuestionError:
            continue
        made += 1
        question = normalize(q["question"], "unicode")
        assert f" {normalize(q['answer'], 'unicode')} " not in f" {question} "
        for p in pages:  # names are paraphrased away
            assert f" {normalize(display_name(p.title), 'unicode')} " not in f" {question} "
        assert q["question"].startswith("Start with ") and q["question"].count("Move to") == len(pages) - 1
        assert len(q["hops"]) == len(pages) - 1
        for entity, title in zip(q["rubric"], q["rubric_pages"]):
            page = store.page_by_title(title)
            assert rubric_reward(page.title + "\n" + page.text(), [entity]).score == 1.0
        assert [g["title"] for g in q["gold_pages"]] == [n["title"] for n in w["nodes"]]
        assert q == template_question(w, pages)  # deterministic
    assert made >= 0.8 * len(walks)


def test_template_mode_needs_synthetic_facts(small_world, walks):
    pages = walk_pages(small_world.store, walks[0])
    stripped = [type(p)(p.pid, p.wiki_id, p.title, p.paragraphs, p.is_disambiguation, p.n_out, {}) for p in pages]
    with pytest.raises(QuestionError, match="synthetic"):
        template_question(walks[0], stripped)


def test_validation_catches_each_problem(small_world, walks):
    pages = walk_pages(small_world.store, walks[0])
    first = display_name(pages[0].title)
    ok_rubric = [{"entity": display_name(p.title), "page": i} for i, p in enumerate(pages[:3])]
    problems = validate(f"Start with {first} and go on for a while until the end. Then what?", "zzz",
                        [{"entity": "Nobody Atall", "page": 1}], pages, QuestionLimits())
    text = " | ".join(problems)
    assert "names a page" in text and "does not occur in its page" in text and "does not occur in the last page" in text
    assert "at least 3" in text
    q = "Start with a thing that is described only vaguely here. Move on twice. What year was it?"
    assert any("appears in the question" in p for p in validate(q + " 1999", "1999", ok_rubric, pages, QuestionLimits()))
    assert any("length" in p for p in validate("short", "x", ok_rubric, pages, QuestionLimits()))


def _good_reply(pages, answer):
    rubric = [{"entity": display_name(p.title), "page": i} for i, p in enumerate(pages, 1)][:-1]
    q = ("Start with an entity described without its name. " + " ".join("Move to the next related thing." for _ in pages[1:])
         + " What is the fact asked for?")
    return json.dumps({"question": q, "answer": answer, "rubric": rubric})


def _answer_in_last_page(pages):
    return display_name(pages[-1].title)


def test_llm_writer_accepts_good_json(small_world, walks, fake_chat):
    pages = walk_pages(small_world.store, walks[1])
    reply = "<think>planning</think>```json\n" + _good_reply(pages, _answer_in_last_page(pages)) + "\n```"
    server = fake_chat(lambda n, body: (200, reply, 0))
    client = ChatClient(ChatConfig(base_url=server.url, model="writer", retries=0))
    rec = asyncio.run(LLMQuestionWriter(client).write(walks[1], pages))
    assert rec["mode"] == "llm" and rec["attempts"] == 1 and rec["model"] == "writer"
    assert rec["answer"] == _answer_in_last_page(pages)
    assert rec["rubric_pages"] == [p.title for p in pages[:-1]]
    prompt = server.bodies[0]["messages"][-1]["content"]
    assert all(p.title in prompt for p in pages) and "Start with" in prompt


def test_llm_writer_retries_with_the_problems_then_succeeds(small_world, walks, fake_chat):
    pages = walk_pages(small_world.store, walks[2])
    bad_then_good = ["this is not json at all",
                     json.dumps({"question": "Start with " + display_name(pages[0].title) + " then keep going on and on.",
                                 "answer": "x", "rubric": []}),
                     _good_reply(pages, _answer_in_last_page(pages))]
    server = fake_chat(lambda n, body: (200, bad_then_good[n - 1], 0))
    client = ChatClient(ChatConfig(base_url=server.url, model="w", retries=0))
    rec = asyncio.run(LLMQuestionWriter(client, attempts=3).write(walks[2], pages))
    assert rec["attempts"] == 3 and server.calls == 3
    second = server.bodies[1]["messages"]
    assert second[-2]["role"] == "assistant" and "not a JSON object" in second[-1]["content"]
    assert "names a page" in server.bodies[2]["messages"][-1]["content"]


def test_llm_writer_gives_up_and_says_why(small_world, walks, fake_chat):
    pages = walk_pages(small_world.store, walks[3])
    server = fake_chat(lambda n, body: (200, "{}", 0))
    client = ChatClient(ChatConfig(base_url=server.url, model="w", retries=0))
    with pytest.raises(QuestionError, match="after 2 attempts"):
        asyncio.run(LLMQuestionWriter(client, attempts=2).write(walks[3], pages))
    failing = fake_chat(lambda n, body: (500, None, 0))
    client = ChatClient(ChatConfig(base_url=failing.url, model="w", retries=1, backoff_s=0.01, backoff_max_s=0.02))
    with pytest.raises(QuestionError, match="HTTP 500"):
        asyncio.run(LLMQuestionWriter(client).write(walks[3], pages))
    assert failing.calls == 2
