"""The LLM judge against a real local HTTP server that imitates an OpenAI-compatible endpoint."""
import asyncio
import logging

import pytest

from reward.config import LLMJudgeConfig
from reward.judge_cache import JudgeCache
from reward.llm_judge import LLMJudge, parse_judgement, parse_judgement_reference

GOOD = "extracted_final_answer: Stockholm\nreasoning: same city.\ncorrect: yes"
BAD = "extracted_final_answer: Oslo\nreasoning: different city.\ncorrect: no"


def make_judge(url, reference=False, **overrides):
    cfg = LLMJudgeConfig(base_url=url, model="judge-model", backoff_s=0.01, backoff_max_s=0.05, **overrides)
    return LLMJudge(cfg, reference=reference)


def run(judge, content="Answer: Stockholm", question="Which city?", answer="Stockholm"):
    async def go():
        try:
            return await judge.judge(question, answer, content)
        finally:
            await judge.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "reply,correct,extracted",
    [
        (GOOD, True, "Stockholm"),
        (BAD, False, "Oslo"),
        ("**extracted_final_answer:** Stockholm\n**reasoning:** ok\n**correct:** YES", True, "Stockholm"),
        ("<think>correct: no?</think>extracted_final_answer: X\ncorrect: Yes", True, "X"),
        ("Correct：yes", True, None),
    ],
)
def test_parse_judgement(reply, correct, extracted):
    v = parse_judgement(reply)
    assert v is not None and v.correct is correct and v.extracted == extracted


def test_parse_judgement_rejects_replies_without_a_decision():
    assert parse_judgement("I think it is probably right.") is None


def test_correct_and_incorrect_verdicts(fake_chat):
    server = fake_chat(lambda n, body: (200, GOOD if "Stockholm" in body["messages"][0]["content"] else BAD, 0))
    v = run(make_judge(server.url))
    assert v.correct and v.score == 1.0 and v.error is None
    body = server.bodies[0]
    assert body["model"] == "judge-model"
    prompt = body["messages"][0]["content"]
    assert "Which city?" in prompt and "Answer: Stockholm" in prompt  # question, gold and final content only


def test_malformed_replies_are_asked_again(fake_chat):
    server = fake_chat(lambda n, body: (200, "hmm, not sure" if n < 3 else GOOD, 0))
    v = run(make_judge(server.url, parse_retries=2))
    assert v.correct and server.calls == 3


def test_malformed_replies_become_a_judge_error(fake_chat):
    server = fake_chat(lambda n, body: (200, "no decision here", 0))
    v = run(make_judge(server.url, parse_retries=1))
    assert v.error is not None and "unparseable" in v.error and server.calls == 2
    assert not v.correct


def test_server_errors_are_retried_with_backoff(fake_chat):
    server = fake_chat(lambda n, body: (500 if n <= 2 else 200, GOOD, 0))
    v = run(make_judge(server.url, max_retries=3))
    assert v.correct and server.calls == 3


def test_persistent_500s_become_a_judge_error(fake_chat):
    server = fake_chat(lambda n, body: (503, None, 0))
    v = run(make_judge(server.url, max_retries=2))
    assert v.error is not None and "HTTP 503" in v.error and server.calls == 3


def test_timeouts_are_retried_then_reported(fake_chat):
    server = fake_chat(lambda n, body: (200, GOOD, 1.0))
    v = run(make_judge(server.url, timeout_s=0.2, max_retries=1))
    assert v.error is not None and "timeout" in v.error
    assert server.calls == 2


def test_client_errors_are_not_retried(fake_chat):
    server = fake_chat(lambda n, body: (401, None, 0))
    v = run(make_judge(server.url, max_retries=3))
    assert v.error is not None and "HTTP 401" in v.error and server.calls == 1


def test_malformed_body_is_an_error(fake_chat):
    server = fake_chat(lambda n, body: (200, None, 0))
    v = run(make_judge(server.url))
    assert v.error is not None and "malformed" in v.error


def test_unreachable_endpoint(fake_chat):
    judge = make_judge("http://127.0.0.1:9/v1", max_retries=1, timeout_s=1.0)
    v = run(judge)
    assert v.error is not None and "gave up after 2 attempts" in v.error


def test_cache_avoids_repeat_calls_and_persists(fake_chat, tmp_path):
    server = fake_chat(lambda n, body: (200, GOOD, 0))
    path = tmp_path / "judge.sqlite"
    first = run(make_judge(server.url, cache_path=str(path)))
    second = run(make_judge(server.url, cache_path=str(path)))  # a new process would see the same file
    assert first.correct and second.correct and second.cached
    assert server.calls == 1
    run(make_judge(server.url, cache_path=str(path)), content="Answer: something else")
    assert server.calls == 2  # different content -> different key


def test_errors_are_not_cached(fake_chat):
    server = fake_chat(lambda n, body: (500 if n == 1 else 200, GOOD, 0))
    cache = JudgeCache()
    cfg = LLMJudgeConfig(base_url=server.url, model="m", max_retries=0, backoff_s=0.01)
    assert run(LLMJudge(cfg, cache=cache)).error is not None
    assert run(LLMJudge(cfg, cache=cache)).correct
    assert server.calls == 2


def test_concurrency_is_bounded(fake_chat):
    server = fake_chat(lambda n, body: (200, GOOD, 0.05))
    judge = make_judge(server.url, max_concurrency=3)

    async def go():
        try:
            return await asyncio.gather(*(judge.judge("q", "Stockholm", f"Answer: Stockholm {i}") for i in range(12)))
        finally:
            await judge.aclose()

    verdicts = asyncio.run(go())
    assert all(v.correct for v in verdicts)
    assert server.calls == 12 and server.peak_in_flight <= 3


def test_api_key_comes_from_the_environment_and_is_never_logged(fake_chat, monkeypatch, caplog):
    secret = "sk-test-very-secret-key"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    server = fake_chat(lambda n, body: (500 if n == 1 else 200, GOOD, 0))
    with caplog.at_level(logging.DEBUG):
        v = run(make_judge(server.url, api_key_env="MY_JUDGE_KEY", max_retries=2))
    assert v.correct
    assert server.headers[0].get("Authorization") == f"Bearer {secret}"
    assert secret not in caplog.text and "judge request failed" in caplog.text
    assert secret not in repr(make_judge(server.url, api_key_env="MY_JUDGE_KEY").cfg)


def test_extra_body_is_sent(fake_chat):
    server = fake_chat(lambda n, body: (200, GOOD, 0))
    run(make_judge(server.url, extra_body={"chat_template_kwargs": {"enable_thinking": False}}))
    assert server.bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}


# ------------------------------------------------------------------------------------- reference parsing (LongTraceRL)


@pytest.mark.parametrize(
    "reply,decision,extracted",
    [
        (GOOD, "yes", "Stockholm"),
        ("extracted_final_answer: X\ncorrect: yes\ncorrect: no", "yes", "X"),  # the first decision
        ("<think>correct: no</think>extracted_final_answer: X\ncorrect: yes", "no", "X"),  # inside <think>
        ("extracted_final_answer: X\nincorrect: yes", "yes", "X"),  # no word boundary before
        ("correct: yesterday", "yes", None),  # nor after
        ("correct: nope", "no", None),
        ("**correct:** yes", None, None),  # stars after the colon: no decision
        ("correct***: yes", None, None),  # three stars: no decision
        ("correct：yes", None, None),  # full-width colon
        ("extracted_final_answer:\ncorrect: yes", "yes", "correct: yes"),  # the answer pattern runs over the newline
        ("CORRECT : YES", "YES", None),  # as written
    ],
)
def test_parse_judgement_reference(reply, decision, extracted):
    assert parse_judgement_reference(reply) == (decision, extracted)


def test_reference_judge_asks_until_it_has_an_extracted_answer(fake_chat):
    server = fake_chat(lambda n, body: (200, "correct: yes" if n < 3 else GOOD, 0))
    v = run(make_judge(server.url, reference=True))
    assert v.correct and v.extracted == "Stockholm" and server.calls == 3


@pytest.mark.parametrize("reply,correct", [("correct: yes", True), ("CORRECT: YES", False)])
def test_reference_judge_after_the_last_attempt_compares_the_decision_as_written(fake_chat, reply, correct):
    server = fake_chat(lambda n, body: (200, reply, 0))
    v = run(make_judge(server.url, reference=True))
    assert v.error is None and v.correct is correct and server.calls == 3


def test_reference_judge_without_any_decision_is_an_error_not_a_silent_zero(fake_chat):
    server = fake_chat(lambda n, body: (200, "**extracted_final_answer:** X\n**correct:** yes", 0))
    v = run(make_judge(server.url, reference=True))
    assert v.error is not None and "unparseable" in v.error and server.calls == 3
    default = fake_chat(lambda n, body: (200, "**extracted_final_answer:** X\n**correct:** yes", 0))
    assert run(make_judge(default.url)).correct  # the default parser reads it


def test_reference_and_default_verdicts_are_cached_apart(fake_chat, tmp_path):
    server = fake_chat(lambda n, body: (200, "extracted_final_answer: X\ncorrect: yes\ncorrect: no", 0))
    path = str(tmp_path / "judge.sqlite")
    assert run(make_judge(server.url, cache_path=path, reference=True)).correct
    assert not run(make_judge(server.url, cache_path=path)).correct
    assert server.calls == 2


def test_lone_surrogates_are_sent_as_valid_json(fake_chat):
    server = fake_chat(lambda n, body: (200, GOOD, 0))
    for reference in (False, True):
        v = run(make_judge(server.url, reference=reference), content="Answer: Stock\ud800holm", question="Which\udfff city?",
                answer="Stockholm\ud800")
        assert v.error is None and v.correct
    prompt = server.bodies[-1]["messages"][0]["content"]
    assert "Stock\ufffdholm" in prompt and "Which\ufffd city?" in prompt
