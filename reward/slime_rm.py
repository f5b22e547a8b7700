"""slime interop: custom reward functions with slime's signatures.

Per sample (reward dict; pick the scalar with ``--reward-key reward``)::

    --custom-rm-path reward.slime_rm.longtrace_rm --reward-key reward

Per GRPO group (group-normalised rubric, positive-only combination, failed-judge groups dropped)::

    --custom-rm-path reward.slime_rm.longtrace_group_rm --group-rm

Configuration, in increasing priority: defaults; a JSON reward config named by ``LONGTRACE_REWARD_CONFIG``;
LongTraceRL's slime flags when present on ``args`` (``--rubric-reward-ratio``, ``--normalize-rubric-reward``,
``--rubric-only-positive`` / ``--rubric-only-negative``, ``--rubric-use-content``,
``--rubric-use-reasoning-content``, ``--no-punish-for-illform``). With ``LONGTRACE_REWARD_URL`` set, samples
are scored by that reward server instead of in-process.

slime keeps response text without special tokens, so the stop token is read from the last response token
id with the tokenizer of ``args.hf_checkpoint`` when it loads; otherwise a COMPLETED sample is taken to have
ended on an accepted stop token (an ``<|endoftext|>`` ending cannot then be told apart).
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from typing import Any

from .client import RewardClient
from .config import RewardConfig
from .schema import RewardRequest
from .scorer import RewardFn, RewardScorer

log = logging.getLogger(__name__)
_REWARD_FN: RewardFn | None = None


def config_from_slime_args(args: Any) -> RewardConfig:
    path = os.environ.get("LONGTRACE_REWARD_CONFIG")
    if path:
        with open(path, encoding="utf-8") as f:
            cfg = RewardConfig.from_dict(json.load(f))
    else:
        cfg = RewardConfig()
    if getattr(args, "rubric_reward_ratio", None) is not None:
        cfg.combine.eta = float(args.rubric_reward_ratio)
    if hasattr(args, "normalize_rubric_reward"):
        cfg.combine.group_normalize = bool(args.normalize_rubric_reward)
    if getattr(args, "rubric_only_positive", False):
        cfg.combine.mode = "positive_only"
    elif getattr(args, "rubric_only_negative", False):
        cfg.combine.mode = "negative_only"
    use_content = getattr(args, "rubric_use_content", None)
    use_reasoning = getattr(args, "rubric_use_reasoning_content", None)
    if use_content is not None or use_reasoning is not None:
        cfg.rubric.source = "both" if use_content and use_reasoning else ("reasoning" if use_reasoning else "content")
    if getattr(args, "no_punish_for_illform", False):
        cfg.combine.punish_invalid = False
    return cfg.validate()


def reward_fn_for(args: Any) -> RewardFn:
    """The process-wide reward function (one scorer or client per rollout process)."""
    global _REWARD_FN
    if _REWARD_FN is None:
        url = os.environ.get("LONGTRACE_REWARD_URL")
        _REWARD_FN = RewardClient(url) if url else RewardScorer(config_from_slime_args(args))
        log.info("longtrace reward: %s", f"server {url}" if url else "in-process scorer")
    return _REWARD_FN


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # no transformers, no local files: fall back to trusting the status
        log.warning("longtrace reward: cannot load tokenizer from %s (%s); stop tokens taken from sample status", path, e)
        return None


def _status(sample: Any) -> str:
    status = getattr(sample.status, "value", sample.status)
    return status if status in ("completed", "truncated", "aborted", "failed") else "aborted"


def _stop_token(args: Any, sample: Any, status: str, cfg_stop_tokens: tuple[str, ...]) -> str | None:
    if status != "completed":
        return None
    tokens = getattr(sample, "tokens", None)
    path = getattr(args, "hf_checkpoint", None)
    tok = _tokenizer(path) if path and tokens else None
    if tok is not None:
        return tok.decode([int(tokens[-1])], skip_special_tokens=False)
    return cfg_stop_tokens[0] if cfg_stop_tokens else None


def sample_to_request(args: Any, sample: Any, stop_tokens: tuple[str, ...] = ("<|im_end|>",)) -> RewardRequest:
    """A slime ``Sample`` (prompt, response, label, status, metadata, tokens) -> RewardRequest."""
    metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
    info = metadata.get("extra_reward_info", {})
    status = _status(sample)
    return RewardRequest(
        label=sample.label if sample.label is not None else "",
        extra_reward_info=info,
        response=sample.response,
        status=status,
        stop=_stop_token(args, sample, status, stop_tokens),
    )


def _stop_tokens(fn: RewardFn) -> tuple[str, ...]:
    return fn.cfg.validity.stop_tokens if isinstance(fn, RewardScorer) else ("<|im_end|>",)


async def longtrace_rm(args: Any, sample: Any, **kwargs: Any) -> dict:
    fn = reward_fn_for(args)
    evaluation = bool(kwargs.get("evaluation", False))
    result = await fn.score(sample_to_request(args, sample, _stop_tokens(fn)), evaluation=evaluation)
    sample.metadata = {**(sample.metadata or {}), "longtrace_reward": result.model_dump()}
    return result.model_dump()


async def longtrace_group_rm(args: Any, samples: list, **kwargs: Any) -> list[float]:
    fn = reward_fn_for(args)
    stops = _stop_tokens(fn)
    result = await fn.score_group([sample_to_request(args, s, stops) for s in samples])
    for sample, scored in zip(samples, result.samples):
        sample.metadata = {**(sample.metadata or {}), "longtrace_reward": scored.model_dump()}
        if result.dropped is not None:
            sample.remove_sample = True  # slime drops these from training
    if result.dropped is not None:
        log.warning("longtrace reward: group dropped (%s)", result.dropped)
    return list(result.rewards)


__all__ = ["longtrace_rm", "longtrace_group_rm", "config_from_slime_args", "sample_to_request"]
