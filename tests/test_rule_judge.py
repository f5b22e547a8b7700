import asyncio

import pytest

from reward.rule_judge import RuleJudge, extract_answer, parse_number, token_f1


@pytest.mark.parametrize(
    "content,expected",
    [
        ("so the result is \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
        ("<answer> Stockholm </answer>", "Stockholm"),
        ("## Explanation\nblah [[1](http://x)]\n\n## Exact Answer\nMoroccan-Swedish\n\n## References\n[1] x", "Moroccan-Swedish"),
        ("thinking...\n**Answer:** RedOne", "RedOne"),
        ("Answer: Paris\nlater\nFinal answer: Lyon", "Lyon"),
        ("I believe the answer is Paris.", None),  # no marker at a line start
        ("", None),
    ],
)
def test_extract_answer(content, expected):
    assert extract_answer(content) == expected


def test_parse_number():
    assert parse_number("population 1,234,567 people") == 1234567
    assert parse_number("ratio -3.5e2 and then 42%") == 42
    assert parse_number("no digits") is None


def judge(kind, answer, content, **kw):
    return RuleJudge(kind, **kw).judge_sync("question?", answer, content)


def test_rule_default_exact_contains_and_numeric():
    assert judge("rule", "Stockholm, Sweden", "**Answer:** stockholm sweden").correct
    assert judge("rule", "The Beatles", "Answer: Beatles").correct  # articles ignored
    assert judge("rule", "Beyoncé", "Answer: Beyonce Knowles").correct  # accent-folded whole-word containment
    assert not judge("rule", "Paris", "Answer: Parisian cafe").correct  # whole words only
    assert judge("rule", "1973", "Answer: 1,973.0").correct
    assert not judge("rule", "1973", "Answer: 1974").correct
    assert judge("rule", "Lord of the Rings", "it was lord of rings, I think").correct  # no marker: whole content


def test_exact_and_contains_kinds():
    assert judge("exact", "Paris", "Answer: paris!").correct
    assert not judge("exact", "Paris", "Answer: Paris, France").correct
    assert judge("contains", "Paris", "Answer: Paris, France").correct


def test_f1_score_and_threshold():
    v = judge("f1", "New York City", "Answer: New York", f1_threshold=0.5)
    assert v.score == pytest.approx(0.8) and v.correct
    assert not judge("f1", "New York City", "Answer: New York", f1_threshold=0.9).correct
    assert token_f1("a b", "c d") == 0.0


def test_numeric_tolerance():
    assert judge("numeric", "3.14159", "Answer: 3.1416", rel_tol=1e-4).correct
    assert not judge("numeric", "3.14159", "Answer: 3.2", rel_tol=1e-4).correct
    assert not judge("numeric", "about three", "Answer: 3").correct  # gold is not a number


def test_async_interface_and_unknown_kind():
    assert asyncio.run(RuleJudge().judge("q", "x", "Answer: x")).correct
    with pytest.raises(ValueError, match="unknown rule judge"):
        RuleJudge("fuzzy")


@pytest.mark.parametrize(
    "content,correct",
    [
        ("**1805** (the Battle of Trafalgar, 21 October)", True),
        ("**1805**\n\nExplanation: two hundred years before 2005.", True),
        ("__1805__, on 21 October", True),
        ("In **Trafalgar**, **1805**; not 1806", True),  # the first emphasised span holding a number
        ("**1806** (not 1805)", False),
        ("x ** 2 = 1805", True),  # not emphasis: the last number
        ("Some say **1805**.\nAnswer: 1806", False),  # an explicit answer wins
    ],
)
def test_markdown_emphasised_number_is_the_answer(content, correct):
    assert RuleJudge().judge_sync("When?", "1805", content).correct is correct


def test_lone_surrogates_do_not_crash_the_rule_judges():
    for kind in ("rule", "exact", "f1", "contains", "numeric"):
        v = RuleJudge(kind).judge_sync("q\ud800", "Paris \ud800", "Answer: Paris \ud800 France 1805")
        assert v.error is None
    assert RuleJudge().judge_sync("q", "Paris \ud800", "Paris \udfff").correct
