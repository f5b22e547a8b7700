import asyncio

import pytest

from reward.combine import CombineConfig
from reward.config import RewardConfig
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
