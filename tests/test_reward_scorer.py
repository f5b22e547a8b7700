import asyncio
import json

import pytest

from reward.combine import CombineConfig
from reward.config import JudgeConfig, RewardConfig
from reward.judge import Verdict, judge_error
from reward.schema import RewardRequest
from reward.scorer import RewardInputError, RewardScorer

from .helpers import ScriptedJudge

RUBRICS = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]


def req(content, label="Moroccan-Swedish", rubrics=RUBRICS, reasoning="thinking", end="<|im_end|>", **kw):
    return RewardRequest(
        label=label,
        extra_reward_info={"question": "q?", "rubrics": rubrics, "dataset_name": kw.pop("dataset_name", "x"), **kw.pop("info", {})},
        response=f"{reasoning}</think>{content}{end}",
        **kw,
    )


def score(scorer, r, **kw):
    return asyncio.run(scorer.score(r, **kw))


def score_group(scorer, rs, **kw):
    return asyncio.run(scorer.score_group(rs, **kw))


WORKED = req("Lady Gaga's The Fame, Poker Face and LoveGame were produced by RedOne. **Answer:** Moroccan-Swedish")


def test_worked_example_end_to_end():
    cfg = RewardConfig(combine=CombineConfig(group_normalize=False))
    s = score(RewardScorer(cfg), WORKED)
    assert s.valid and s.correct
    assert s.rubric_reward == pytest.approx(0.8)
    assert s.reward == pytest.approx(0.94)
    assert s.missing_entities == ["Just Dance"]


def test_group_is_normalised_and_combined():
    group = [WORKED, req("Lady Gaga, The Fame, Just Dance, Poker Face, RedOne. **Answer:** Moroccan-Swedish"),
             req("Lady Gaga. **Answer:** Swedish")]
    g = score_group(RewardScorer(), group)
    assert [s.correct for s in g.samples] == [True, True, False]
    assert g.rubric_max == 1.0
    assert g.rewards == pytest.approx([0.7 + 0.3 * 0.8, 1.0, 0.0])


def test_invalid_samples_score_zero_and_skip_the_judge():
    judge = ScriptedJudge(lambda q, a, c: Verdict(1.0, True))
    scorer = RewardScorer(judge=judge)
    s = score(scorer, req("Lady Gaga **Answer:** Moroccan-Swedish", status="truncated"))
    assert (s.valid, s.invalid_reason, s.reward, s.rubric_reward) == (False, "truncated", 0.0, 0.0)
    assert judge.calls == 0
    assert scorer.metrics.snapshot()["invalid"] == {"truncated": 1}


def test_invalid_samples_can_still_be_scored():
    cfg = RewardConfig(combine=CombineConfig(punish_invalid=False, group_normalize=False))
    s = score(RewardScorer(cfg), req("Lady Gaga **Answer:** Moroccan-Swedish", end=""))
    assert s.invalid_reason == "no_stop_token" and s.correct and s.reward > 0.7


def test_judge_errors_are_carried_not_zeroed():
    scorer = RewardScorer(judge=ScriptedJudge(lambda q, a, c: judge_error("timeout after 120 s; gave up after 4 attempts")))
    g = score_group(scorer, [WORKED, WORKED])
    assert g.dropped is not None and g.samples[0].judge_error.startswith("timeout")
    assert scorer.metrics.snapshot()["judge_errors"] == {"timeout": 2}
    assert scorer.metrics.snapshot()["groups_dropped"] == 1


def test_a_judge_that_raises_becomes_a_judge_error():
    def boom(q, a, c):
        raise RuntimeError("boom")

    s = score(RewardScorer(judge=ScriptedJudge(boom)), WORKED)
    assert s.judge_error == "judge raised RuntimeError: boom"


def test_evaluation_mode_is_outcome_only():
    g = score_group(RewardScorer(), [WORKED, req("Lady Gaga **Answer:** Swedish")], evaluation=True)
    assert g.rewards == [1.0, 0.0]


def test_per_request_ratio_and_text_source_like_longtrace_slime():
    r = req("**Answer:** Moroccan-Swedish", reasoning="Lady Gaga The Fame Poker Face Just Dance RedOne",
            info={"rubric_reward_ratio": 0.5, "rubric_use_content": True, "rubric_use_reasoning_content": True})
    s = score(RewardScorer(), r)
    assert s.rubric_reward == 1.0 and s.reward == pytest.approx(1.0)
    r = req("**Answer:** Moroccan-Swedish", reasoning="Lady Gaga", info={"rubric_reward_ratio": 0.5, "rubric_use_content": True})
    assert score(RewardScorer(), r).reward == pytest.approx(0.5)  # content only: no entity


def test_longrlvr_samples_use_chunk_f_beta():
    content = "blah <useful_chunks><CHUNK_1><CHUNK_2></useful_chunks> then <useful_chunks><CHUNK_3><CHUNK_7></useful_chunks> **Answer:** Paris"
    r = req(content, label="Paris", rubrics=[3, "CHUNK_9"], dataset_name="longrlvr")
    s = score(RewardScorer(RewardConfig(combine=CombineConfig(group_normalize=False))), r)
    p, rec = 0.5, 0.5
    f2 = 5 * p * rec / (4 * p + rec)
    assert s.rubric_reward == pytest.approx(f2)
    assert s.reward == pytest.approx(1 + 0.3 * f2 + 0.7 * f2)


def test_unusable_rubric_items_are_input_errors():
    with pytest.raises(RewardInputError, match=r"extra_reward_info.rubrics\[0\]"):
        score(RewardScorer(), req("x", rubrics=[5]))
    with pytest.raises(RewardInputError, match="chunk id"):
        score(RewardScorer(), req("x", rubrics=["not a chunk"], dataset_name="longrlvr"))


# ------------------------------------------------------------------------------------------ lone surrogates


@pytest.mark.parametrize("mode", ["default", "reference"])
@pytest.mark.parametrize("judge", ["rule", "f1", "scripted"])
def test_lone_surrogates_anywhere_never_crash_the_scorer(mode, judge):
    bad = "Paris \ud800 France"
    rubrics = [bad, ["Lady \udc00Gaga", "RedOne"], {"name": "The \udfff Fame", "aliases": ["Fame\ud800"]}]
    cfg = RewardConfig(mode=mode, judge=JudgeConfig(kind="f1" if judge == "f1" else "rule"))
    scripted = ScriptedJudge(lambda q, a, c: Verdict(1.0, True, extracted=c)) if judge == "scripted" else None
    scorer = RewardScorer(cfg, judge=scripted)
    requests = [
        req(f"{bad}, RedOne. **Answer:** Moroccan\ud800-Swedish", label="Moroccan\ud800-Swedish",
            reasoning=f"The Fame {bad}", info={"question": "Which \ud800?"}, rubrics=rubrics),
        RewardRequest(label="x\udfff", extra_reward_info={"question": "q", "rubrics": rubrics},
                      history=[{"role": "user", "content": bad}, {"role": "assistant", "content": f"{bad} RedOne",
                                                                     "reasoning_content": bad}], stop="<|im_end|>"),
        req(bad, end="\ud800", rubrics=rubrics),  # invalid: no stop token
    ]
    g = score_group(scorer, requests)
    json.dumps(g.model_dump(), ensure_ascii=False).encode("utf-8")  # every result field encodes
    first = g.samples[0]
    assert first.valid and first.rubric_reward == pytest.approx(2 / 3)
    assert first.matched_entities == ["Paris \ufffd France", "Lady \ufffdGaga"]
    if judge == "scripted":
        assert "\ud800" not in first.extracted_answer and "\ufffd" in first.extracted_answer
    assert g.samples[2].invalid_reason == "no_stop_token"
    for r in requests:
        score(scorer, r).model_dump_json()


# ------------------------------------------------------------------------------------------ reference mode


def ref_scorer(judge=None, **combine):
    return RewardScorer(RewardConfig(mode="reference", combine=CombineConfig(**combine)),
                        judge=judge or ScriptedJudge(lambda q, a, c: Verdict(1.0, True)))


def test_reference_mode_validity_through_the_scorer():
    judge = ScriptedJudge(lambda q, a, c: Verdict(1.0, True))
    scorer = ref_scorer(judge)
    blank = score(scorer, req("   ", reasoning=" \n "))  # blank sides: valid there, judged
    assert blank.valid and blank.outcome_reward == 1.0 and judge.calls == 1
    assert not score(scorer, req("x", end="<|im_end|>\n")).valid and judge.calls == 1  # no stop token, not judged
    assert score(scorer, req("I <think> so. Lady Gaga")).valid  # <think> in the content passes
    default = score(RewardScorer(judge=judge), req("I <think> so. Lady Gaga"))
    assert default.invalid_reason == "special_token_in_content"


def test_reference_mode_rubric_reads_nothing_when_both_flags_are_off():
    off = {"rubric_use_content": False, "rubric_use_reasoning_content": False}
    r = req("Lady Gaga, The Fame. **Answer:** Moroccan-Swedish", info=off)
    assert score(ref_scorer(group_normalize=False), r).rubric_reward == 0.0
    assert score(RewardScorer(), r).rubric_reward == pytest.approx(0.4)  # default: the configured source


def test_reference_mode_leading_think_stays_in_the_reasoning():
    r = req("**Answer:** Moroccan-Swedish", reasoning="<think>\nhmm", rubrics=["Think"],
            info={"rubric_use_content": False, "rubric_use_reasoning_content": True})
    assert score(ref_scorer(), r).rubric_reward == 1.0
    assert score(RewardScorer(), r).rubric_reward == 0.0


def test_reference_mode_multi_turn_order_r1_c1_r2_c2():
    r = RewardRequest(label="Moroccan-Swedish", stop="<|im_end|>",
                      extra_reward_info={"question": "q", "rubrics": ["Lady Gaga"], "rubric_use_content": True,
                                         "rubric_use_reasoning_content": True},
                      history=[{"role": "assistant", "reasoning_content": "I recall Lady", "content": "Gaga"},
                               {"role": "assistant", "reasoning_content": "The", "content": "**Answer:** Moroccan-Swedish"}])
    for scorer in (ref_scorer(), RewardScorer()):  # both modes read turns in conversation order
        assert score(scorer, r).rubric_reward == 1.0


def test_reference_mode_eta_gates_the_rubric_and_the_judge():
    judge = ScriptedJudge(lambda q, a, c: Verdict(1.0, True))
    s = score(ref_scorer(judge), WORKED, evaluation=True)  # eval: eta 0 -> the rubric is not computed
    assert (s.reward, s.rubric_reward, judge.calls) == (1.0, 0.0, 1)
    one = req("Lady Gaga **Answer:** Moroccan-Swedish", info={"rubric_reward_ratio": 1.0})
    s = score(ref_scorer(judge), one)  # eta 1 -> the judge is not asked: outcome 0, positive-only reward 0
    assert (s.outcome_reward, s.reward, judge.calls) == (0.0, 0.0, 1)
    data_ratio = req("Lady Gaga **Answer:** Moroccan-Swedish", info={"rubric_reward_ratio": 0.5})
    assert score(ref_scorer(judge), data_ratio, evaluation=True).reward == pytest.approx(0.5 + 0.5 * 0.2)
    assert score(RewardScorer(judge=judge), data_ratio, evaluation=True).reward == 1.0


def test_reference_mode_scores_invalid_responses_at_evaluation_only():
    two_ends = req("a</think>b **Answer:** Moroccan-Swedish")
    scorer = ref_scorer()
    assert score(scorer, two_ends).reward == 0.0
    s = score(scorer, two_ends, evaluation=True)
    assert not s.valid and s.reward == 1.0
    truncated = req("x **Answer:** Moroccan-Swedish", status="truncated")
    assert score(scorer, truncated, evaluation=True).reward == 0.0  # nothing kept to score
    assert score(RewardScorer(), two_ends, evaluation=True).reward == 0.0


def test_reference_mode_group_with_fractional_outcomes_and_an_aborted_sample():
    outcomes = iter([0.4, 1.0])
    judge = ScriptedJudge(lambda q, a, c: (lambda o: Verdict(o, o >= 0.5))(next(outcomes)))
    group = [req("Lady Gaga. **Answer:** Moroccan"), req("Lady Gaga, The Fame. **Answer:** Moroccan-Swedish"),
             req("x", status="aborted")]
    g = score_group(ref_scorer(judge), group)
    assert g.rewards == pytest.approx([0.7 * 0.4 + 0.3 * 0.5, 1.0, 0.0])
    assert g.samples[2].invalid_reason == "aborted"


def test_reference_mode_blank_answer_after_think_in_history_is_wrong_without_a_judge_call():
    judge = ScriptedJudge(lambda q, a, c: Verdict(1.0, True))
    r = RewardRequest(label="x", extra_reward_info={"question": "q", "rubrics": ["Lady Gaga"]},
                      history=[{"role": "assistant", "content": "Lady Gaga</think>  "}])
    s = score(ref_scorer(judge, group_normalize=False), r)
    assert (s.outcome_reward, s.rubric_reward, judge.calls) == (0.0, 1.0, 0)


def test_a_normaliser_that_cannot_encode_surrogates_gets_cleaned_text(monkeypatch):
    import reward.scorer as scorer_module

    real = scorer_module.normalized_rubric_text

    def strict(reasoning, content, source, mode, turns=None):
        for text in [reasoning, content, *(t for turn in turns or () for t in turn if t)]:
            text.encode("utf-8")  # raises on a lone surrogate, as a plain encoder does
        return real(reasoning, content, source, mode, turns)

    monkeypatch.setattr(scorer_module, "normalized_rubric_text", strict)
    for mode in ("default", "reference"):
        s = score(RewardScorer(RewardConfig(mode=mode)), req("Lady \ud800Gaga, RedOne **Answer:** Moroccan-Swedish"))
        assert s.valid and s.rubric_reward == pytest.approx(0.4) and s.correct  # the surrogate separates words
