"""slime interop: our custom reward functions called the way slime calls them.

slime itself is not installable here; ``FakeSample`` carries the fields of slime's ``Sample`` that the functions
read and write (prompt, response, label, status enum, metadata, tokens, remove_sample).
"""
import asyncio
import enum
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from reward import slime_rm
from reward.judge import judge_error

from .helpers import ScriptedJudge


class Status(enum.Enum):
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"


@dataclass
class FakeSample:
    response: str
    label: str = "Moroccan-Swedish"
    status: Status = Status.COMPLETED
    metadata: dict = field(default_factory=lambda: {"extra_reward_info": {
        "question": "q", "rubrics": ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]}})
    tokens: list = field(default_factory=list)
    remove_sample: bool = False


@pytest.fixture(autouse=True)
def fresh_reward_fn(monkeypatch):
    monkeypatch.setattr(slime_rm, "_REWARD_FN", None)
    monkeypatch.delenv("LONGTRACE_REWARD_URL", raising=False)
    monkeypatch.delenv("LONGTRACE_REWARD_CONFIG", raising=False)


GOOD = "think</think>Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish"


def test_per_sample_function_returns_a_reward_dict():
    args = SimpleNamespace(rubric_reward_ratio=0.3, normalize_rubric_reward=False, rubric_only_positive=True)
    out = asyncio.run(slime_rm.longtrace_rm(args, FakeSample(GOOD)))
    assert out["reward"] == pytest.approx(0.94) and out["outcome_reward"] == 1.0


def test_group_function_normalises_and_records_parts():
    args = SimpleNamespace()
    samples = [FakeSample(GOOD), FakeSample("think</think>Lady Gaga **Answer:** Moroccan-Swedish"),
               FakeSample(GOOD, status=Status.TRUNCATED)]
    rewards = asyncio.run(slime_rm.longtrace_group_rm(args, samples))
    assert rewards == pytest.approx([1.0, 0.7 + 0.3 * 0.25, 0.0])
    assert samples[2].metadata["longtrace_reward"]["invalid_reason"] == "truncated"
    assert not any(s.remove_sample for s in samples)


def test_longtrace_slime_flags_map_onto_the_config():
    cfg = slime_rm.config_from_slime_args(SimpleNamespace(
        rubric_reward_ratio=0.5, normalize_rubric_reward=False, rubric_only_negative=True,
        rubric_use_content=True, rubric_use_reasoning_content=True, no_punish_for_illform=True))
    assert (cfg.combine.eta, cfg.combine.group_normalize, cfg.combine.mode) == (0.5, False, "negative_only")
    assert cfg.rubric.source == "both" and not cfg.combine.punish_invalid


def test_dropped_groups_are_removed_from_training(monkeypatch):
    scorer = slime_rm.reward_fn_for(SimpleNamespace())
    monkeypatch.setattr(scorer, "judge", ScriptedJudge(lambda q, a, c: judge_error("HTTP 503; gave up after 4 attempts")))
    samples = [FakeSample(GOOD), FakeSample(GOOD)]
    rewards = asyncio.run(slime_rm.longtrace_group_rm(SimpleNamespace(), samples))
    assert rewards == [0.0, 0.0] and all(s.remove_sample for s in samples)


def test_stop_token_is_read_from_the_last_token_with_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|im_end|>": 0, "<|endoftext|>": 1, "a": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=["<|im_end|>", "<|endoftext|>"])
    fast.save_pretrained(tmp_path)
    args = SimpleNamespace(hf_checkpoint=str(tmp_path))
    ok = slime_rm.sample_to_request(args, FakeSample(GOOD, tokens=[2, 2, 0]))
    bad = slime_rm.sample_to_request(args, FakeSample(GOOD, tokens=[2, 2, 1]))
    assert ok.stop == "<|im_end|>" and bad.stop == "<|endoftext|>"
