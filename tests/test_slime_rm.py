"""slime interop: our reward functions driven the way slime drives them.

slime is not installable here and CI cannot reach GitHub, so the first part of this file writes slime's contract
down from its source (THUDM/slime at commit 624b824): what slime does around a reward function, restated in our
own code, each piece naming the slime file it comes from. The tests then run our functions through it.
"""
from __future__ import annotations

import argparse
import asyncio
import enum
import importlib
import json
import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from reward import slime_rm
from reward.config import RewardConfig, add_reward_args, reward_config_from_args
from reward.judge import Verdict, judge_error

from .helpers import ScriptedJudge

SLIME = "THUDM/slime@624b824"

# ------------------------------------------------------------------------------------------ slime's contract


class Status(enum.Enum):
    """slime/utils/types.py (Sample.Status)."""

    PENDING = "pending"
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass
class Sample:
    """slime/utils/types.py: the Sample fields a reward function sees, under slime's names and defaults."""

    group_index: int | None = None
    index: int | None = None
    prompt: Any = ""
    tokens: list = field(default_factory=list)  # prompt + response token ids
    response: str = ""
    response_length: int = 0
    label: Any = None
    reward: Any = None
    loss_mask: list | None = None
    remove_sample: bool = False
    status: Status = Status.PENDING
    metadata: dict = field(default_factory=dict)
    generate_function_path: str | None = None
    custom_rm_path: str | None = None


def slime_args(**kw) -> SimpleNamespace:
    """The attributes of slime's args these paths read, with slime's defaults (slime/utils/arguments.py)."""
    base = dict(custom_rm_path=None, group_rm=False, reward_key=None, eval_reward_key=None, rm_type=None, rm_url=None,
                hf_checkpoint=None, rollout_stop=None, rollout_stop_token_ids=None, rollout_skip_special_tokens=False,
                rollout_function_path="slime.rollout.sglang_rollout.generate_rollout", eval_function_path=None,
                custom_config_path=None, eval_datasets=[])
    return SimpleNamespace(**{**base, **kw})


def load_function(path: str):
    """slime/utils/misc.py load_function: "module.attr" -> attr."""
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


async def async_rm(args, sample, **kwargs):
    """slime/rollout/rm_hub/__init__.py async_rm: the sample's custom_rm_path (set by the eval path) first, then
    --custom-rm-path; called as rm(args, sample, **kwargs), and slime's callers pass no kwargs."""
    if sample.custom_rm_path:
        return await load_function(sample.custom_rm_path)(args, sample, **kwargs)
    if args.custom_rm_path is not None:
        return await load_function(args.custom_rm_path)(args, sample, **kwargs)
    raise NotImplementedError("built-in rm types are not part of this contract")


async def batched_async_rm(args, samples, **kwargs):
    """slime/rollout/rm_hub/__init__.py batched_async_rm: the whole list to --custom-rm-path."""
    assert args.custom_rm_path is not None
    return await load_function(args.custom_rm_path)(args, samples, **kwargs)


def train_rollout_rewards(args, group: list[Sample]) -> None:
    """slime/rollout/sglang_rollout.py generate_and_rm / generate_and_rm_group (train: evaluation=False): without
    --group-rm each sample gets ``sample.reward = await async_rm(args, sample)``; with it, the group gets
    ``batched_async_rm(args, group)``. No ``evaluation`` reaches the reward function either way."""

    async def go():
        if args.group_rm:
            rewards = await batched_async_rm(args, group)
            for s, r in zip(group, rewards):
                s.reward = r
        else:
            for s in group:
                if s.status != Status.ABORTED and s.reward is None:
                    s.reward = await async_rm(args, s)

    asyncio.run(go())


def train_data(args, samples: list[Sample]) -> dict:
    """slime/ray/rollout.py _convert_samples_to_train_data + Sample.get_reward_value (slime/utils/types.py):
    the reward is ``sample.reward`` or ``sample.reward[args.reward_key]``; a removed sample's loss mask is zeroed."""
    masks = []
    for s in samples:
        mask = s.loss_mask if s.loss_mask is not None else [1] * s.response_length
        masks.append([0] * s.response_length if s.remove_sample else mask)
    rewards = [s.reward if not args.reward_key else s.reward[args.reward_key] for s in samples]
    return {"raw_reward": rewards, "loss_masks": masks}


def eval_dataset_rm_path(args, dataset: dict, defaults: dict) -> str | None:
    """slime/utils/eval_config.py DATASET_SAMPLE_SPECS["custom_rm_path"]: dataset entry, then eval.defaults, then
    args.eval_custom_rm_path, then args.custom_rm_path."""
    for source in (dataset, defaults):
        if "custom_rm_path" in source:
            return source["custom_rm_path"]
    for attr in ("eval_custom_rm_path", "custom_rm_path"):
        if getattr(args, attr, None) is not None:
            return getattr(args, attr)
    return None


def eval_rollout(args, samples: list[Sample], dataset: dict | None = None, defaults: dict | None = None) -> list:
    """slime/rollout/sglang_rollout.py eval_rollout + eval_rollout_single_dataset: asserts ``not args.group_rm``;
    each eval sample gets ``custom_rm_path`` from the dataset config and is scored per sample through async_rm
    (generate_and_rm with evaluation=True, which does not pass it on); the reported reward is ``sample.reward`` or
    ``sample.reward[args.eval_reward_key or args.reward_key]``."""
    assert not args.group_rm, "Group RM is not supported for eval rollout"
    rm_path = eval_dataset_rm_path(args, dataset or {}, defaults or {})

    async def go():
        for s in samples:
            s.custom_rm_path = rm_path
            s.reward = await async_rm(args, s)

    asyncio.run(go())
    key = args.eval_reward_key or args.reward_key
    return [s.reward if not key else s.reward[key] for s in samples]


def call_eval_function(args, rollout_id: int = 0, data_source=None):
    """slime/ray/rollout.py RolloutManager.eval -> slime/rollout/base_types.py call_rollout_fn:
    ``load_function(args.eval_function_path)(args, rollout_id, data_source, evaluation=True)``."""
    return load_function(args.eval_function_path)(args, rollout_id, data_source, evaluation=True)


def apply_custom_config(args, path) -> None:
    """slime/utils/arguments.py slime_validate_args: ``--custom-config-path`` YAML, every top-level key set on args."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    for k, v in data.items():
        setattr(args, k, v)


def slime_parse(argv: list[str], add_custom_arguments=None) -> argparse.Namespace:
    """slime/utils/arguments.py parse_args: slime's own flags (+ ``add_custom_arguments``, registered first) parsed by
    Megatron's parser with ignore_unknown_args=True, so other flags vanish without an error."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    if add_custom_arguments is not None:
        parser = add_custom_arguments(parser)
    parser.add_argument("--custom-rm-path")
    parser.add_argument("--group-rm", action="store_true", default=False)
    parser.add_argument("--reward-key")
    parser.add_argument("--custom-config-path")
    args, _unknown = parser.parse_known_args(argv)
    return args


# ------------------------------------------------------------------------------------------ fixtures and data

RUBRICS = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]
GOOD = "think</think>Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish"  # 4 of 5 entities
WRONG = "think</think>Lady Gaga **Answer:** Swedish"


def sample(response=GOOD, status=Status.COMPLETED, label="Moroccan-Swedish", **kw) -> Sample:
    return Sample(prompt="<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", response=response, label=label,
                  status=status, metadata={"extra_reward_info": {"question": "q", "rubrics": list(RUBRICS)}}, **kw)


@pytest.fixture(autouse=True)
def fresh_reward_fn(monkeypatch):
    monkeypatch.setattr(slime_rm, "_STATE", {})
    monkeypatch.setattr(slime_rm, "COUNTS", type(slime_rm.COUNTS)())
    monkeypatch.delenv("LONGTRACE_REWARD_URL", raising=False)
    monkeypatch.delenv("LONGTRACE_REWARD_CONFIG", raising=False)


def tokenizer_dir(path, vocab: list[str], eos: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [t for t in vocab if t.startswith("<")]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, additional_special_tokens=specials)
    fast.save_pretrained(path)
    return str(path)


QWEN_VOCAB = ["a", "<|im_end|>", "<|endoftext|>"]  # eos <|im_end|>
# DeepSeek-R1-0528-Qwen3-8B ends its turns on its own EOS
DEEPSEEK_VOCAB = ["a", "<｜end▁of▁sentence｜>", "<|endoftext|>"]


def ended_on(tok_id: int, n: int = 3, **kw) -> Sample:
    """A COMPLETED sample whose last generated token is ``tok_id``."""
    return sample(tokens=[0] * 5 + [0] * (n - 1) + [tok_id], response_length=n, **kw)


# ------------------------------------------------------------------------------------------ training, per sample


def test_per_sample_training_reward_through_slime():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm")
    group = [sample(), sample(WRONG), sample(GOOD, status=Status.TRUNCATED)]
    train_rollout_rewards(args, group)
    assert train_data(args, group)["raw_reward"] == pytest.approx([0.94, 0.0, 0.0])  # eta 0.3, 4/5 entities, raw
    assert group[2].metadata["longtrace_reward"]["invalid_reason"] == "truncated"


def test_reward_key_selects_from_the_reward_dict():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="reward")
    s = sample()
    train_rollout_rewards(args, [s])
    assert s.reward["outcome_reward"] == 1.0 and train_data(args, [s])["raw_reward"] == [pytest.approx(0.94)]
    with pytest.raises(ValueError, match="reward-key"):
        train_rollout_rewards(slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="score"), [sample()])


def test_object_labels_carry_the_rubric():
    s = Sample(response=GOOD, status=Status.COMPLETED,
               label={"label": "Moroccan-Swedish", "extra_reward_info": {"question": "q", "rubrics": RUBRICS}})
    train_rollout_rewards(slime_args(custom_rm_path="reward.slime_rm.longtrace_rm"), [s])
    assert s.reward == pytest.approx(0.94)


# ------------------------------------------------------------------------------------------ defect 1: evaluation


def test_eval_is_outcome_only_when_eval_inherits_the_training_rm():
    # --eval-prompt-data without an eval config: eval samples get custom_rm_path = --custom-rm-path
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="reward")
    assert eval_rollout(args, [sample(), sample(WRONG)]) == pytest.approx([1.0, 0.0])
    train = [sample()]
    train_rollout_rewards(args, train)
    assert train_data(args, train)["raw_reward"] == [pytest.approx(0.94)]  # training keeps the rubric term


def test_eval_entry_point_named_by_the_eval_config():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="reward")
    defaults = {"custom_rm_path": "reward.slime_rm.longtrace_eval_rm"}
    assert eval_rollout(args, [sample(), sample(WRONG)], defaults=defaults) == pytest.approx([1.0, 0.0])
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm")
    assert eval_rollout(args, [sample()], dataset={"custom_rm_path": slime_rm.EVAL_RM_PATH}) == [1.0]


@pytest.fixture
def fake_slime_rollout(monkeypatch):
    """slime's default rollout module, reduced to its eval path (see eval_rollout above)."""
    module = types.ModuleType("fake_slime_sglang_rollout")
    calls = []

    def generate_rollout(args, rollout_id, data_source, evaluation=False):
        assert evaluation
        calls.append(rollout_id)
        return {"eval": {"rewards": eval_rollout(args, data_source)}}

    module.generate_rollout = generate_rollout
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return f"{module.__name__}.generate_rollout"


def test_group_rm_training_crashes_slime_eval_without_our_eval_function():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True)
    with pytest.raises(AssertionError, match="Group RM is not supported"):
        eval_rollout(args, [sample()])


def test_group_rm_training_evaluates_through_longtrace_eval_rollout(fake_slime_rollout):
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True,
                      rollout_function_path=fake_slime_rollout,
                      eval_function_path="reward.slime_rm.longtrace_eval_rollout")
    out = call_eval_function(args, 3, [sample(), sample(WRONG), sample(GOOD, status=Status.TRUNCATED)])
    assert out["eval"]["rewards"] == pytest.approx([1.0, 0.0, 0.0])  # floats: no reward key in a group-rm run
    assert args.group_rm is True  # restored for training
    group = [sample(), sample(WRONG)]
    train_rollout_rewards(args, group)
    assert [s.reward for s in group] == pytest.approx([1.0, 0.0])  # training still group-normalises: r_hat = 1


def test_group_function_without_group_rm_in_training_is_a_clear_error():
    with pytest.raises(TypeError, match="--group-rm"):
        train_rollout_rewards(slime_args(custom_rm_path="reward.slime_rm.longtrace_group_rm"), [sample()])


# ------------------------------------------------------------------------------------------ defect 2: configuration


def flag_values(tmp_path) -> dict[str, tuple[list[str], Any]]:
    """For every reward flag: (argv for `longtrace reward score`, the YAML value a slime user writes)."""
    json_cfg = tmp_path / "reward.json"
    json_cfg.write_text(json.dumps({"combine": {"eta": 0.5}}))
    parser = argparse.ArgumentParser()
    add_reward_args(parser)
    out = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            out[flag] = ([action.option_strings[1]], False)  # the default is on
        elif action.nargs == 0:
            out[flag] = ([flag], True)
        elif action.choices:
            value = [c for c in action.choices if c != action.default][-1]  # a value that is not the default
            out[flag] = ([flag, value], value)
        elif action.nargs == "+":
            out[flag] = ([flag, "</s>", "<|im_end|>"], ["</s>", "<|im_end|>"])
        elif action.dest == "reward_config":
            out[flag] = ([flag, str(json_cfg)], str(json_cfg))
        elif action.dest == "judge_extra_body":
            out[flag] = ([flag, '{"top_k": 5}'], {"top_k": 5})
        elif action.type is float:
            out[flag] = ([flag, "0.25"], 0.25)
        elif action.type is int:
            out[flag] = ([flag, "7"], 7)
        else:
            out[flag] = ([flag, "X_VALUE"], "X_VALUE")
    return out


BASE = {"judge_base_url": "http://127.0.0.1:9/v1", "judge_model": "m"}  # lets --judge llm validate
BASE_ARGV = ["--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "m"]


def test_every_reward_flag_reaches_the_config_through_slimes_custom_config_yaml(tmp_path):
    values = flag_values(tmp_path)
    assert len(values) == len(slime_rm.reward_flag_dests()) >= 25
    cli = argparse.ArgumentParser()
    add_reward_args(cli)
    default = reward_config_from_args(cli.parse_args(BASE_ARGV))
    for flag, (argv, yaml_value) in values.items():
        expected = reward_config_from_args(cli.parse_args(BASE_ARGV + argv))
        assert expected != default or flag in ("--judge-base-url", "--judge-model"), flag
        key = flag[2:].replace("-", "_")
        path = tmp_path / "custom.yaml"
        path.write_text(yaml.safe_dump({"longtrace_reward": {**BASE, key: yaml_value}, "some_other_custom_arg": 1}))
        args = slime_parse(["--custom-rm-path", "reward.slime_rm.longtrace_rm", "--custom-config-path", str(path)])
        apply_custom_config(args, args.custom_config_path)
        assert slime_rm.config_from_slime_args(args) == expected, flag


def test_reward_flags_on_slimes_command_line_are_dropped_but_the_hook_registers_them():
    argv = ["--custom-rm-path", "x.y", "--rubric-reward-ratio", "0.1", "--rubric-combine", "both",
            "--rubric-source", "reasoning", "--no-punish-for-illform"]
    assert slime_rm.config_from_slime_args(slime_parse(argv)) == RewardConfig().validate()  # what slime's train.py does
    cfg = slime_rm.config_from_slime_args(slime_parse(argv, add_custom_arguments=slime_rm.add_slime_reward_arguments))
    assert (cfg.combine.eta, cfg.combine.mode, cfg.rubric.source) == (0.1, "both", "reasoning")
    assert not cfg.combine.punish_invalid and cfg.combine.group_normalize  # an unset flag keeps the default (on)


def test_reward_flags_at_the_top_of_the_yaml_are_reported(tmp_path, caplog):
    path = tmp_path / "custom.yaml"
    path.write_text("rubric_reward_ratio: 0.1\n")  # not under longtrace_reward: slime sets it, nothing reads it
    args = slime_args()
    apply_custom_config(args, path)
    assert slime_rm.config_from_slime_args(args).combine.eta == 0.3
    assert "ignoring top-level rubric_reward_ratio" in caplog.text and "'longtrace_reward'" in caplog.text


def test_yaml_forms_and_errors(tmp_path, monkeypatch):
    args = slime_args(longtrace_reward="--rubric-reward-ratio 0.2 --no-normalize-rubric-reward")
    cfg = slime_rm.config_from_slime_args(args)
    assert cfg.combine.eta == 0.2 and not cfg.combine.group_normalize
    cfg = slime_rm.config_from_slime_args(slime_args(longtrace_reward={"eta": 0.4, "--rubric-combine": "both",
                                                                        "normalize_rubric_reward": True}))
    assert (cfg.combine.eta, cfg.combine.mode, cfg.combine.group_normalize) == (0.4, "both", True)
    with pytest.raises(ValueError, match="unknown reward flag 'rubric_ratio'"):
        slime_rm.config_from_slime_args(slime_args(longtrace_reward={"rubric_ratio": 0.1}))
    with pytest.raises(ValueError, match="invalid choice"):
        slime_rm.config_from_slime_args(slime_args(longtrace_reward={"judge": "gpt"}))
    with pytest.raises(ValueError, match="true or false"):
        slime_rm.config_from_slime_args(slime_args(longtrace_reward={"non_thinking": "yes"}))
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"combine": {"eta": 0.6, "mode": "both"}}))
    monkeypatch.setenv("LONGTRACE_REWARD_CONFIG", str(path))
    cfg = slime_rm.config_from_slime_args(slime_args(longtrace_reward={"eta": 0.1}))
    assert (cfg.combine.eta, cfg.combine.mode) == (0.1, "both")  # the YAML flag over the env JSON


def test_configured_reward_is_what_slime_trains_on(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("longtrace_reward:\n  rubric_reward_ratio: 0.5\n  rubric_combine: both\n")
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", custom_config_path=str(path))
    apply_custom_config(args, path)
    group = [sample(), sample(WRONG)]
    train_rollout_rewards(args, group)
    assert [s.reward for s in group] == pytest.approx([0.5 + 0.5 * 0.8, 0.5 * 0.2])


# ------------------------------------------------------------------------------------------ defect 3: stop tokens


def test_completed_sample_ending_on_the_models_own_eos_is_valid(tmp_path):
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="reward",
                      hf_checkpoint=tokenizer_dir(tmp_path, DEEPSEEK_VOCAB, "<｜end▁of▁sentence｜>"))
    kept = ended_on(1, response=GOOD + "<｜end▁of▁sentence｜>")  # slime default: special tokens kept in the text
    skipped = ended_on(1)  # --rollout-skip-special-tokens
    other = ended_on(2)  # <|endoftext|>: not this model's EOS
    group = [kept, skipped, other]
    train_rollout_rewards(args, group)
    assert train_data(args, group)["raw_reward"] == pytest.approx([0.94, 0.94, 0.0])
    assert other.metadata["longtrace_reward"]["invalid_reason"] == "no_stop_token"
    seen = []
    slime_rm.reward_fn_for(args).judge = ScriptedJudge(lambda q, a, c: seen.append(c) or Verdict(1.0, True))
    train_rollout_rewards(args, [ended_on(1, response=GOOD + "<｜end▁of▁sentence｜>\n")])
    assert seen == ["Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish"]  # EOS not in the content


def test_qwen_endings(tmp_path):
    args = slime_args(hf_checkpoint=tokenizer_dir(tmp_path, QWEN_VOCAB, "<|im_end|>"))
    assert slime_rm.sample_to_request(args, ended_on(1, response=GOOD + "<|im_end|>")).stop == "<|im_end|>"
    assert slime_rm.sample_to_request(args, ended_on(2)).stop == "<|endoftext|>"  # rejected by the scorer
    assert slime_rm.sample_to_request(args, ended_on(0)).stop == "a"  # COMPLETED on a plain token: no stop
    assert slime_rm.sample_to_request(args, ended_on(1, status=Status.TRUNCATED)).stop is None


def test_rollout_stop_ids_and_strings_are_accepted_stops(tmp_path):
    path = tmp_path / "tok"
    args = slime_args(hf_checkpoint=tokenizer_dir(path, QWEN_VOCAB, "<|im_end|>"), rollout_stop_token_ids=[0],
                      rollout_stop=["Moroccan-Swedish"])
    assert slime_rm.sample_to_request(args, ended_on(0, response="think</think>x")).stop == "<|im_end|>"
    args.rollout_stop_token_ids = None
    assert slime_rm.sample_to_request(args, ended_on(0, response=GOOD)).stop == "<|im_end|>"  # the stop string


def test_without_a_tokenizer_a_completed_sample_is_trusted(tmp_path):
    args = slime_args(hf_checkpoint=str(tmp_path / "missing"))
    assert slime_rm.sample_to_request(args, ended_on(2)).stop == "<|im_end|>"
    assert slime_rm.sample_to_request(slime_args(), sample()).stop == "<|im_end|>"


# ------------------------------------------------------------------------------------------ defect 4: judge failures


def failing_judge(args):
    scorer = slime_rm.reward_fn_for(args)
    scorer.judge = ScriptedJudge(lambda q, a, c: judge_error("HTTP 503; gave up after 4 attempts"))


def test_a_failed_judge_is_never_trained_on_per_sample(caplog):
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", reward_key="reward")
    failing_judge(args)
    group = [sample(response_length=4), sample(WRONG, status=Status.TRUNCATED, response_length=4)]
    train_rollout_rewards(args, group)
    data = train_data(args, group)
    assert group[0].remove_sample and data["loss_masks"][0] == [0, 0, 0, 0]
    assert not group[1].remove_sample and data["loss_masks"][1] == [1, 1, 1, 1]  # invalid: no judge call, a real 0
    assert slime_rm.COUNTS["judge_error_removed"] == 1 and "removed from training" in caplog.text
    assert data["raw_reward"] == [0.0, 0.0]
    assert eval_rollout(args, [sample()]) == [0.0] and slime_rm.COUNTS["judge_error_eval"] == 1


def test_judge_failures_count_as_wrong_only_when_configured():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_rm", longtrace_reward={"on_judge_error": "zero"})
    failing_judge(args)
    s = sample()
    train_rollout_rewards(args, [s])
    assert s.reward == 0.0 and not s.remove_sample and slime_rm.COUNTS["judge_error_zeroed"] == 1


# ------------------------------------------------------------------------------------------ groups


def test_group_function_normalises_and_records_parts():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True)
    group = [sample(), sample("think</think>Lady Gaga **Answer:** Moroccan-Swedish"), sample(status=Status.TRUNCATED)]
    train_rollout_rewards(args, group)
    assert [s.reward for s in group] == pytest.approx([1.0, 0.7 + 0.3 * 0.25, 0.0])
    assert group[2].metadata["longtrace_reward"]["invalid_reason"] == "truncated"
    assert not any(s.remove_sample for s in group)


def test_dropped_groups_are_removed_from_training():
    args = slime_args(custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True)
    failing_judge(args)
    group = [sample(response_length=2), sample(response_length=2)]
    train_rollout_rewards(args, group)
    assert [s.reward for s in group] == [0.0, 0.0] and all(s.remove_sample for s in group)
    assert train_data(args, group)["loss_masks"] == [[0, 0], [0, 0]] and slime_rm.COUNTS["groups_removed"] == 1


def test_remote_rm_question_is_the_prompts_question_not_its_documents():
    """slime's remote_rm sends the whole prompt (~128K tokens of documents); the judge gets the question only."""
    from reward.schema import QUESTION_PREFIX
    from reward.slime_rm import question_from_prompt

    user = "Answer from the documents.\n\nDocuments:\n\n<section id=\"1\" title=\"A\">\nQuestion: decoy\n</section>" \
           + QUESTION_PREFIX + "Who produced Poker Face?"
    templated = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert question_from_prompt(templated) == "Who produced Poker Face?"
    assert question_from_prompt([{"role": "system", "content": "s"}, {"role": "user", "content": user}]) == \
        "Who produced Poker Face?"
    assert question_from_prompt("What is 2+2?") == "What is 2+2?"  # other prompts: as given
