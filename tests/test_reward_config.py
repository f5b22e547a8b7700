import argparse
import json

import pytest

from reward.config import RewardConfig, add_reward_args, reward_config_from_args


def parse(argv):
    p = argparse.ArgumentParser()
    add_reward_args(p)
    return reward_config_from_args(p.parse_args(argv))


def test_defaults_are_the_longtracerl_recipe():
    cfg = RewardConfig().validate()
    assert (cfg.combine.mode, cfg.combine.eta, cfg.combine.group_normalize) == ("positive_only", 0.3, True)
    assert (cfg.rubric.normalization, cfg.rubric.source) == ("reference", "content")


def test_flags_override_defaults():
    cfg = parse(["--rubric-reward-ratio", "0.1", "--no-normalize-rubric-reward", "--rubric-combine", "both",
                 "--rubric-normalization", "unicode", "--rubric-whole-word", "--rubric-source", "both",
                 "--non-thinking", "--no-punish-for-illform", "--on-judge-error", "zero", "--stop-tokens", "</s>"])
    assert cfg.combine.eta == 0.1 and not cfg.combine.group_normalize and cfg.combine.mode == "both"
    assert cfg.rubric.normalization == "unicode" and cfg.rubric.whole_word and cfg.rubric.source == "both"
    assert not cfg.validity.thinking and not cfg.combine.punish_invalid and cfg.validity.stop_tokens == ("</s>",)
    assert cfg.combine.on_judge_error == "zero"


def test_llm_judge_needs_an_endpoint():
    with pytest.raises(ValueError, match="judge-base-url"):
        parse(["--judge", "llm"])
    cfg = parse(["--judge", "llm", "--judge-base-url", "http://127.0.0.1:1/v1", "--judge-model", "m",
                 "--judge-extra-body", '{"chat_template_kwargs": {"enable_thinking": false}}'])
    assert cfg.judge.llm.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}


def test_out_of_range_values_are_reported_together():
    with pytest.raises(ValueError) as e:
        parse(["--eta", "1.5", "--f1-threshold", "2"])
    assert "combine.eta=1.5" in str(e.value) and "f1_threshold=2.0" in str(e.value)


def test_json_config_file(tmp_path):
    path = tmp_path / "reward.json"
    path.write_text(json.dumps({"combine": {"eta": 0.5}, "validity": {"stop_tokens": ["<|im_end|>", "</s>"]}}))
    cfg = parse(["--reward-config", str(path), "--rubric-source", "reasoning"])
    assert cfg.combine.eta == 0.5 and cfg.validity.stop_tokens == ("<|im_end|>", "</s>")
    assert cfg.rubric.source == "reasoning"
    path.write_text(json.dumps({"combine": {"etta": 0.5}}))
    with pytest.raises(ValueError, match=r"reward.json: unknown key\(s\) in combine: etta"):
        parse(["--reward-config", str(path)])


def test_round_trip_through_dict():
    cfg = parse(["--eta", "0.2", "--judge", "f1"])
    assert RewardConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_reward_mode_flag_and_config_file(tmp_path):
    assert RewardConfig().mode == "default" and parse([]).mode == "default"
    assert parse(["--reward-mode", "reference"]).mode == "reference"
    path = tmp_path / "reward.json"
    path.write_text(json.dumps({"mode": "reference", "combine": {"eta": 0.5}}))
    assert parse(["--reward-config", str(path)]).mode == "reference"
    assert parse(["--reward-config", str(path), "--reward-mode", "default"]).mode == "default"  # the flag wins
    with pytest.raises(SystemExit):
        parse(["--reward-mode", "original"])
    with pytest.raises(ValueError, match="mode='lenient'"):
        RewardConfig(mode="lenient").validate()
    cfg = parse(["--reward-mode", "reference"])
    assert RewardConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_reward_mode_reaches_the_scorer_and_its_llm_judge():
    from reward.llm_judge import LLMJudge
    from reward.scorer import RewardScorer

    cfg = parse(["--reward-mode", "reference", "--judge", "llm", "--judge-base-url", "http://127.0.0.1:1/v1",
                 "--judge-model", "m"])
    scorer = RewardScorer(cfg)
    assert scorer.reference and isinstance(scorer.judge, LLMJudge) and scorer.judge.reference
    assert not RewardScorer(parse(["--judge", "llm", "--judge-base-url", "http://127.0.0.1:1/v1",
                                   "--judge-model", "m"])).judge.reference
