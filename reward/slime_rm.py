"""slime interop: LongTrace-RL's reward as slime custom reward functions, written against THUDM/slime 624b824.

Training, per sample (the value returned is a float, or the whole reward dict when ``--reward-key`` is set)::

    --custom-rm-path reward.slime_rm.longtrace_rm [--reward-key reward]

Training, per GRPO group (group-normalised rubric; a group with a failed judge is removed from training)::

    --custom-rm-path reward.slime_rm.longtrace_group_rm --group-rm \\
    --eval-function-path reward.slime_rm.longtrace_eval_rollout     # slime's eval asserts ``not args.group_rm``

Evaluation is outcome-only (eta = 0). slime never passes ``evaluation=`` to a reward function, so eval samples are
recognised by what slime's eval path gives them: ``sample.custom_rm_path``, which slime sets from the eval dataset
config on eval samples only (training samples keep None). ``longtrace_eval_rm`` is the explicit eval entry point
for ``custom_rm_path`` in ``--eval-config``.

Configuration. slime silently drops command-line flags it does not know, so our reward flags reach the reward
through one of (later wins):

  1. ``LONGTRACE_REWARD_CONFIG``: a JSON reward config (as ``--reward-config``), when ``reward_config`` is not set;
  2. our flags registered on slime's parser (``parse_args(add_custom_arguments=add_slime_reward_arguments)``, for
     users with their own launcher; stock ``train.py`` registers nothing);
  3. the ``longtrace_reward`` key of slime's ``--custom-config-path`` YAML (slime sets each top-level key on
     ``args``): a mapping of our flag names (``rubric_reward_ratio: 0.1``, ``judge: llm``, ...) or one string of
     flags. It is parsed by the same parser as ``longtrace reward score`` (``reward.config.add_reward_args``), so a
     flag means the same thing everywhere and a misspelt key is an error, not a silent default.

``longtrace_reward_url`` in that YAML (or ``LONGTRACE_REWARD_URL``) scores through a reward server instead of
in-process.

Stop tokens. A COMPLETED sample is valid when it ended on an accepted stop: one of the configured stop tokens
(default ``<|im_end|>``), the model's own EOS (``eos_token`` of the tokenizer at ``args.hf_checkpoint``, e.g.
DeepSeek-R1's ``<｜end▁of▁sentence｜>``) unless it is one of the rejected end tokens (``<|endoftext|>``), a
token of ``--rollout-stop-token-ids`` or a string of ``--rollout-stop``. The ending is read from the sample's last
token id. Without a tokenizer a COMPLETED sample is trusted to have ended properly.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
from collections import Counter
from functools import lru_cache
from typing import Any

from .client import RewardClient
from .config import RewardConfig, add_reward_args, reward_config_from_args
from .parsing import ValidityConfig
from .schema import QUESTION_PREFIX, RewardRequest, SampleReward
from .scorer import RewardFn, RewardInputError, RewardScorer

log = logging.getLogger(__name__)

SLIME_COMMIT = "624b824"  # the slime source these functions were written against
CONFIG_KEY = "longtrace_reward"  # top-level key of slime's --custom-config-path YAML holding our reward flags
URL_KEY = "longtrace_reward_url"  # top-level key of that YAML: score through a reward server
DEFAULT_ROLLOUT_FUNCTION = "slime.rollout.sglang_rollout.generate_rollout"  # slime's --rollout-function-path default
EVAL_RM_PATH = "reward.slime_rm.longtrace_eval_rm"

_STATE: dict[str, Any] = {}  # process-wide reward function and config (one per slime rollout process)
COUNTS: Counter[str] = Counter()  # judge_error_removed, judge_error_eval, judge_error_zeroed, groups_removed


# ------------------------------------------------------------------------------------------------ configuration


class _ConfigError(argparse.ArgumentParser):
    def error(self, message: str):  # never sys.exit inside a rollout process
        raise ValueError(f"{CONFIG_KEY}: {message}")


def _reward_parser() -> argparse.ArgumentParser:
    parser = _ConfigError(prog=CONFIG_KEY, add_help=False, allow_abbrev=False)
    add_reward_args(parser)
    return parser


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def reward_flag_dests() -> list[str]:
    """Attribute names our reward flags write (``--rubric-reward-ratio`` -> ``eta``)."""
    return [a.dest for a in _actions(_reward_parser())]


def add_slime_reward_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """For slime's ``parse_args(add_custom_arguments=...)``: registers our reward flags on slime's parser."""
    add_reward_args(parser)
    return parser


def reward_argv_from_mapping(mapping: Any) -> list[str]:
    """The ``longtrace_reward`` YAML value as command-line flags for ``add_reward_args``'s parser.

    A mapping (keys: a flag without dashes, with ``_`` or ``-``, or its attribute name; ``true`` for on/off flags,
    a list for ``stop_tokens``, a mapping for ``judge_extra_body``), a string of flags, or a list of them.
    """
    if mapping is None:
        return []
    if isinstance(mapping, str):
        return shlex.split(mapping)
    if isinstance(mapping, (list, tuple)):
        return [str(x) for x in mapping]
    if not isinstance(mapping, dict):
        raise ValueError(f"{CONFIG_KEY} must be a mapping of reward flags or a string of them, got {mapping!r}")
    actions = _actions(_reward_parser())
    by_flag = {opt: a for a in actions for opt in a.option_strings}
    by_dest = {a.dest: a for a in actions}
    argv: list[str] = []
    for key, value in mapping.items():
        key = str(key)
        flag = key if key.startswith("--") else "--" + key.replace("_", "-")
        action = by_flag.get(flag) or by_dest.get(key)
        if action is None:
            valid = sorted(o[2:].replace("-", "_") for o in by_flag)
            raise ValueError(f"{CONFIG_KEY}: unknown reward flag {key!r}; valid keys: {', '.join(valid)}")
        if flag not in action.option_strings:
            flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            if value is None:
                continue
            if not isinstance(value, bool):
                raise ValueError(f"{CONFIG_KEY}.{key} must be true or false, got {value!r}")
            on = value if flag == action.option_strings[0] else not value
            argv.append(action.option_strings[0] if on else action.option_strings[1])
        elif action.nargs == 0:  # store_true
            if not isinstance(value, bool):
                raise ValueError(f"{CONFIG_KEY}.{key} must be true or false, got {value!r}")
            if value:
                argv.append(flag)
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def reward_namespace_from_slime_args(args: Any) -> argparse.Namespace:
    """Our reward flags' values as slime's ``args`` carries them (see the module docstring for the order)."""
    parser = _reward_parser()
    defaults = parser.parse_args([])
    ns = argparse.Namespace(**vars(defaults))
    dests = list(vars(defaults))
    # Registered on slime's parser: every dest is then an attribute. Reading only complete sets keeps a slime or
    # Megatron attribute that happened to share one of our names from being taken for a reward flag.
    if all(hasattr(args, d) for d in dests):
        for d in dests:
            setattr(ns, d, getattr(args, d))
    else:
        names = {o[2:].replace("-", "_") for a in _actions(parser) for o in a.option_strings} | set(dests)
        stray = sorted(n for n in names if hasattr(args, n))
        if stray:
            log.warning("longtrace reward: ignoring top-level %s on slime's args; put reward flags under the "
                        "%r key of the --custom-config-path YAML", ", ".join(stray), CONFIG_KEY)
    given = parser.parse_args(reward_argv_from_mapping(getattr(args, CONFIG_KEY, None)))
    for d in dests:
        if getattr(given, d) != getattr(defaults, d):
            setattr(ns, d, getattr(given, d))
    if not ns.reward_config:
        ns.reward_config = os.environ.get("LONGTRACE_REWARD_CONFIG") or None
    return ns


def config_from_slime_args(args: Any) -> RewardConfig:
    return reward_config_from_args(reward_namespace_from_slime_args(args))


def reward_url(args: Any) -> str | None:
    return getattr(args, URL_KEY, None) or os.environ.get("LONGTRACE_REWARD_URL") or None


def reward_fn_for(args: Any) -> RewardFn:
    """The process-wide reward function (one scorer or client per rollout process)."""
    if "fn" not in _STATE:
        cfg = config_from_slime_args(args)
        url = reward_url(args)
        _STATE["cfg"] = cfg
        _STATE["fn"] = RewardClient(url) if url else RewardScorer(cfg)
        log.info("longtrace reward: %s", f"server {url}" if url else "in-process scorer")
    return _STATE["fn"]


def _validity(args: Any) -> ValidityConfig:
    reward_fn_for(args)
    fn = _STATE["fn"]
    return fn.cfg.validity if isinstance(fn, RewardScorer) else _STATE["cfg"].validity


def _on_judge_error(fn: RewardFn) -> str:
    return (fn.cfg if isinstance(fn, RewardScorer) else _STATE["cfg"]).combine.on_judge_error


# ------------------------------------------------------------------------------------------------ stop tokens


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    except Exception as e:  # no transformers, no local files: fall back to trusting the status
        log.warning("longtrace reward: cannot load tokenizer from %s (%s); a COMPLETED sample is taken to have "
                    "ended on an accepted stop token", path, e)
        return None


@lru_cache(maxsize=16)
def _decode_ids(path: str, ids: tuple[int, ...]) -> tuple[str, ...]:
    tok = _tokenizer(path)
    return tuple(tok.decode([i], skip_special_tokens=False) for i in ids) if tok is not None else ()


def model_stops(args: Any, validity: ValidityConfig) -> tuple[frozenset[str], frozenset[str]]:
    """(stop tokens the model run accepts beyond the configured ones, stop strings of ``--rollout-stop``)."""
    path = getattr(args, "hf_checkpoint", None)
    tokens: set[str] = set()
    tok = _tokenizer(path) if path else None
    if tok is not None and getattr(tok, "eos_token", None) and tok.eos_token not in validity.other_end_tokens:
        tokens.add(tok.eos_token)
    ids = getattr(args, "rollout_stop_token_ids", None) or ()
    if path and ids:
        tokens.update(_decode_ids(path, tuple(int(i) for i in ids)))
    strings = getattr(args, "rollout_stop", None) or ()
    if isinstance(strings, str):
        strings = (strings,)
    return frozenset(tokens), frozenset(s for s in strings if s)


def _last_response_token(args: Any, sample: Any) -> str | None:
    tokens = getattr(sample, "tokens", None)
    path = getattr(args, "hf_checkpoint", None)
    response_length = getattr(sample, "response_length", None)
    if not tokens or not path or (response_length is not None and response_length <= 0):
        return None
    tok = _tokenizer(path)
    return tok.decode([int(tokens[-1])], skip_special_tokens=False) if tok is not None else None


def _ending(args: Any, sample: Any, response: str, validity: ValidityConfig) -> tuple[str, str | None, bool]:
    """(response without a model-only end token, what ended a COMPLETED sample (None: unknown), accepted?)."""
    extra_tokens, stop_strings = model_stops(args, validity)
    body = response.rstrip()
    for s in stop_strings:  # SGLang keeps a matched stop string in the text (slime sends no_stop_trim=True)
        if body.endswith(s):
            return response, s, True
    last = _last_response_token(args, sample)
    if last is None:
        return response, None, True
    if last in extra_tokens and body.endswith(last):  # the scorer knows only the configured tokens: strip the rest
        response = body[: len(body) - len(last)]
    return response, last, last in extra_tokens or last in validity.stop_tokens


def _status(sample: Any) -> str:
    status = getattr(sample.status, "value", sample.status)
    return status if status in ("completed", "truncated", "aborted", "failed") else "aborted"


def sample_to_request(args: Any, sample: Any, validity: ValidityConfig | None = None) -> RewardRequest:
    """A slime ``Sample`` (response, label, status, metadata, tokens) -> RewardRequest.

    ``stop`` is what the scorer's validity rules understand: the configured stop token that ended the sample, the
    first configured stop token for any other accepted ending (model EOS, ``--rollout-stop(-token-ids)``), or the
    rejected token itself (e.g. ``<|endoftext|>``).
    """
    validity = validity or ValidityConfig()
    metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
    status = _status(sample)
    response, stop = sample.response or "", None
    if status == "completed":
        response, ended_on, accepted = _ending(args, sample, response, validity)
        if ended_on is not None and (ended_on in validity.stop_tokens or not accepted):
            stop = ended_on
        elif validity.stop_tokens:
            stop = validity.stop_tokens[0]
        else:
            stop = ended_on
    label, info = _label_and_info(sample.label, metadata.get("extra_reward_info", {}))
    try:
        return RewardRequest(label=label, extra_reward_info=info, response=response, status=status, stop=stop)
    except Exception as e:
        raise RewardInputError(f"slime sample {getattr(sample, 'index', None)}: {e}") from None


def _label_and_info(label: Any, info: Any) -> tuple[str, dict]:
    """A label is the gold answer, or an object {"label": answer, "extra_reward_info": {...}} (rubrics in the label,
    for ``remote_rm``, which sends no metadata)."""
    info = dict(info) if isinstance(info, dict) else {}
    if isinstance(label, dict):
        if "label" not in label:
            raise RewardInputError("an object label needs a 'label' key holding the gold answer")
        info = {**info, **(label.get("extra_reward_info") or {})}
        label = label["label"]
    if label is None:
        raise RewardInputError("the sample has no label (slime's --label-key)")
    return label if isinstance(label, str) else str(label), info


# ------------------------------------------------------------------------------------------------ reward functions


def is_evaluation(sample: Any, kwargs: dict) -> bool:
    """Whether slime is scoring an eval sample.

    slime (624b824) calls reward functions as ``rm(args, sample)`` for train and eval alike. Its eval rollout
    (``eval_rollout_single_dataset`` in slime/rollout/sglang_rollout.py) sets ``sample.custom_rm_path`` from the eval
    dataset config, which falls back to ``--custom-rm-path``; nothing sets it on training samples.
    """
    if "evaluation" in kwargs:
        return bool(kwargs["evaluation"])
    return bool(getattr(sample, "custom_rm_path", None))


def _reward_value(args: Any, result: SampleReward, evaluation: bool) -> float | dict:
    """What slime reads: ``sample.reward`` when no reward key is set, else ``sample.reward[key]`` (``--reward-key``;
    at eval ``--eval-reward-key`` or ``--reward-key``)."""
    key = getattr(args, "reward_key", None)
    if evaluation:
        key = getattr(args, "eval_reward_key", None) or key
    if not key:
        return float(result.reward)
    out = result.model_dump()
    if key not in out:
        raise ValueError(f"--reward-key {key!r} is not a key of the LongTrace-RL reward; use one of: reward, "
                         "outcome_reward, rubric_reward")
    return out


def _record(sample: Any, result: SampleReward) -> None:
    metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
    sample.metadata = {**metadata, "longtrace_reward": result.model_dump()}


async def _score_one(args: Any, sample: Any, evaluation: bool) -> float | dict:
    fn = reward_fn_for(args)
    result = await fn.score(sample_to_request(args, sample, _validity(args)), evaluation=evaluation)
    _record(sample, result)
    if result.judge_error is not None:
        if evaluation:
            COUNTS["judge_error_eval"] += 1
            log.warning("longtrace reward: judge failed on eval sample %s (%s); scored 0 (%d eval samples so far)",
                        getattr(sample, "index", None), result.judge_error, COUNTS["judge_error_eval"])
        elif _on_judge_error(fn) == "drop":
            # slime zeroes the loss mask of a removed sample (ray/rollout.py, _convert_samples_to_train_data).
            sample.remove_sample = True
            COUNTS["judge_error_removed"] += 1
            log.warning("longtrace reward: judge failed on sample %s (%s); removed from training (%d so far)",
                        getattr(sample, "index", None), result.judge_error, COUNTS["judge_error_removed"])
        else:
            COUNTS["judge_error_zeroed"] += 1
    return _reward_value(args, result, evaluation)


async def longtrace_rm(args: Any, sample: Any, **kwargs: Any) -> float | dict:
    """Per-sample reward (``--custom-rm-path reward.slime_rm.longtrace_rm``); outcome-only on eval samples."""
    return await _score_one(args, sample, is_evaluation(sample, kwargs))


async def longtrace_eval_rm(args: Any, sample: Any, **kwargs: Any) -> float | dict:
    """Eval reward, outcome-only (eta = 0): ``custom_rm_path`` of slime's ``--eval-config`` datasets."""
    return await _score_one(args, sample, True)


async def longtrace_group_rm(args: Any, samples: Any, **kwargs: Any) -> list:
    """Group reward (``--custom-rm-path reward.slime_rm.longtrace_group_rm --group-rm``).

    A single sample reaches it through slime's per-sample path (``async_rm``): eval samples, when eval runs with
    ``longtrace_eval_rollout``, are scored alone and outcome-only.
    """
    if not isinstance(samples, (list, tuple)):
        if is_evaluation(samples, kwargs):
            return await _score_one(args, samples, True)
        raise TypeError("reward.slime_rm.longtrace_group_rm scores whole groups: pass --group-rm to slime, or use "
                        "reward.slime_rm.longtrace_rm per sample")
    if any(isinstance(s, list) for s in samples):
        raise TypeError("reward.slime_rm.longtrace_group_rm: groups of sample lists (fan-out rollouts) are not "
                        "supported")
    evaluation = bool(kwargs.get("evaluation", False))
    fn = reward_fn_for(args)
    validity = _validity(args)
    result = await fn.score_group([sample_to_request(args, s, validity) for s in samples], evaluation=evaluation)
    for sample, scored in zip(samples, result.samples):
        _record(sample, scored)
        if result.dropped is not None:
            sample.remove_sample = True  # slime zeroes the loss mask of removed samples
    if result.dropped is not None:
        COUNTS["groups_removed"] += 1
        log.warning("longtrace reward: group removed from training (%s); %d groups so far", result.dropped,
                    COUNTS["groups_removed"])
    return [_reward_value(args, s, evaluation) for s in result.samples]


def _load_function(path: str):
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def longtrace_eval_rollout(args: Any, rollout_id: int, data_source: Any = None, evaluation: bool = True):
    """``--eval-function-path`` for runs trained with ``--group-rm``: slime's eval rollout asserts
    ``not args.group_rm``; this runs the rollout function (``--rollout-function-path``, slime's default
    ``generate_rollout``) for eval with ``group_rm`` off, so each eval sample is scored alone and outcome-only.

    ``args`` is changed in place for the eval only: slime's RolloutManager is a Ray actor running one method at a
    time, and a copy would end up in slime's GenerateState singleton when eval runs first.
    """
    if not evaluation:
        raise ValueError("reward.slime_rm.longtrace_eval_rollout is an --eval-function-path, not a training rollout")
    path = getattr(args, "rollout_function_path", None) or DEFAULT_ROLLOUT_FUNCTION
    fn = _load_function(path)
    if fn is longtrace_eval_rollout:
        fn = _load_function(DEFAULT_ROLLOUT_FUNCTION)
    group_rm = getattr(args, "group_rm", False)
    args.group_rm = False
    try:
        return fn(args, rollout_id, data_source, evaluation=True)
    finally:
        args.group_rm = group_rm


# ------------------------------------------------------------------------------------------------ remote_rm payload


_TEMPLATE_TAILS = ("<|im_end|>", "<｜end▁of▁sentence｜>", "<｜Assistant｜>", "<|eot_id|>")


def question_from_prompt(prompt: Any) -> str:
    """The judge's question from slime's ``sample.prompt``: a string (chat-templated) or a message list. A LongTrace
    prompt ends with ``Question: ...`` after ~128K tokens of documents: only that question goes to the judge."""
    text = ""
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):  # multimodal parts
                    parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
                    content = "\n".join(p.get("text", "") for p in parts)
                text = content if isinstance(content, str) else ""
                break
    if QUESTION_PREFIX in text:
        text = text.rsplit(QUESTION_PREFIX, 1)[1]
        for tail in _TEMPLATE_TAILS:  # the chat template's end of the user turn
            text = text.split(tail, 1)[0]
        text = text.strip()
    return text


def request_from_remote_rm(prompt: Any, response: str, label: Any) -> RewardRequest:
    """slime's ``remote_rm`` body {prompt, response, label} -> RewardRequest. slime sends no status, stop token or
    metadata: the stop token is read from the end of the text (slime keeps special tokens unless
    ``--rollout-skip-special-tokens``), rubrics come from an object label, the question from the prompt."""
    label, info = _label_and_info(label, {})
    info.setdefault("question", question_from_prompt(prompt))
    try:
        return RewardRequest(label=label, extra_reward_info=info, response=response)
    except Exception as e:
        raise RewardInputError(str(e)) from None


__all__ = [
    "add_slime_reward_arguments", "config_from_slime_args", "longtrace_eval_rm", "longtrace_eval_rollout",
    "longtrace_group_rm", "longtrace_rm", "request_from_remote_rm", "reward_argv_from_mapping", "sample_to_request",
]
