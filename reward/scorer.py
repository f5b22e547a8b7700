"""The reward function: validity -> outcome judge -> rubric -> group combination.

``RewardScorer`` is the in-process implementation of the one interface the trainer uses (``RewardFn``);
``reward.client.RewardClient`` implements the same interface against the reward server.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, Sequence

from .combine import GroupRewards, ScoreParts, combine_group, combine_sample
from .config import RewardConfig
from .judge import Judge, Verdict, build_judge, judge_error
from .longrlvr import DATASET_NAME as LONGRLVR, chunk_reward
from .metrics import RewardMetrics
from .parsing import ParsedResponse, parse_history, parse_response
from .rubric import matcher_for, normalized_rubric_text, parse_entities, rubric_parts
from .schema import GroupResult, RewardRequest, SampleReward

log = logging.getLogger(__name__)


class RewardInputError(ValueError):
    """A request that validates as JSON but cannot be scored (e.g. an unusable rubric item)."""


class RewardFn(Protocol):
    async def score(self, request: RewardRequest, evaluation: bool = False) -> SampleReward: ...

    async def score_group(self, requests: Sequence[RewardRequest], evaluation: bool = False) -> GroupResult: ...

    async def aclose(self) -> None: ...


def _rubric_source(req: RewardRequest, default: str) -> str:
    """LongTraceRL's slime sends rubric_use_content / rubric_use_reasoning_content per request."""
    info = req.extra_reward_info
    if info.rubric_use_content is None and info.rubric_use_reasoning_content is None:
        return default
    use_content, use_reasoning = bool(info.rubric_use_content), bool(info.rubric_use_reasoning_content)
    if use_content and use_reasoning:
        return "both"
    return "reasoning" if use_reasoning else "content"


class RewardScorer:
    def __init__(self, cfg: RewardConfig | None = None, judge: Judge | None = None, metrics: RewardMetrics | None = None):
        self.cfg = (cfg or RewardConfig()).validate()
        self.judge = judge if judge is not None else build_judge(self.cfg.judge)
        self.metrics = metrics if metrics is not None else RewardMetrics()

    def _parse(self, req: RewardRequest) -> ParsedResponse:
        if req.history is not None:
            history = [m.model_dump() for m in req.history]
            return parse_history(history, req.status, req.stop, self.cfg.validity)
        return parse_response(req.response, req.status, req.stop, self.cfg.validity)

    def _rubric(self, req: RewardRequest, parsed: ParsedResponse) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
        info = req.extra_reward_info
        source = _rubric_source(req, self.cfg.rubric.source)
        try:
            if info.dataset_name == LONGRLVR:
                text = "\n\n".join(rubric_parts(parsed.reasoning, parsed.content, source))
                return chunk_reward(text, info.rubrics), (), ()
            entities = parse_entities(r.model_dump() if hasattr(r, "model_dump") else r for r in info.rubrics)
        except ValueError as e:
            raise RewardInputError(f"extra_reward_info.{e}") from None
        mode = self.cfg.rubric.normalization
        normalised = normalized_rubric_text(parsed.reasoning, parsed.content, source, mode)
        result = matcher_for(entities, mode, self.cfg.rubric.whole_word).score_normalized(normalised)
        return result.score, result.matched, result.missing

    async def _judge(self, req: RewardRequest, parsed: ParsedResponse) -> Verdict:
        try:
            return await self.judge.judge(req.extra_reward_info.question, req.label, parsed.final_content)
        except Exception as e:  # a judge bug must not take the trainer down; it is counted as a judge error
            log.exception("outcome judge raised")
            return judge_error(f"judge raised {type(e).__name__}: {e}")

    async def _parts(self, req: RewardRequest) -> tuple[SampleReward, ScoreParts]:
        """Everything but the final reward, which depends on the group."""
        parsed = self._parse(req)
        if not parsed.valid and self.cfg.combine.punish_invalid:
            sample = SampleReward(
                reward=0.0, outcome_reward=0.0, rubric_reward=0.0, correct=False, valid=False,
                invalid_reason=parsed.invalid_reason,
            )
            return sample, ScoreParts(0.0, False, 0.0)
        rubric, matched, missing = self._rubric(req, parsed)
        verdict = await self._judge(req, parsed)
        sample = SampleReward(
            reward=0.0,
            outcome_reward=verdict.score,
            rubric_reward=rubric,
            correct=verdict.correct,
            valid=parsed.valid,
            invalid_reason=parsed.invalid_reason,
            judge_error=verdict.error,
            extracted_answer=verdict.extracted,
            matched_entities=list(matched),
            missing_entities=list(missing),
            judge_cached=verdict.cached,
        )
        return sample, ScoreParts(verdict.score, verdict.correct, rubric, verdict.error)

    def _eta(self, req: RewardRequest) -> float:
        ratio = req.extra_reward_info.rubric_reward_ratio
        return self.cfg.combine.eta if ratio is None else ratio

    async def score(self, request: RewardRequest, evaluation: bool = False) -> SampleReward:
        """One sample on its own: no group normalisation (r_hat = raw rubric)."""
        start = time.perf_counter()
        sample, parts = await self._parts(request)
        if parts.judge_error is None:
            eta = 0.0 if evaluation else self._eta(request)
            longrlvr = request.extra_reward_info.dataset_name == LONGRLVR
            sample.reward = combine_sample(parts.outcome, parts.correct, parts.rubric, self.cfg.combine.mode, eta, longrlvr)
        self.metrics.observe_sample(sample)
        self.metrics.observe_latency(time.perf_counter() - start)
        return sample

    async def score_group(self, requests: Sequence[RewardRequest], evaluation: bool = False) -> GroupResult:
        if not requests:
            raise RewardInputError("a group needs at least one sample")
        start = time.perf_counter()
        scored = await asyncio.gather(*(self._parts(r) for r in requests))
        samples = [s for s, _ in scored]
        first = requests[0]
        combined: GroupRewards = combine_group(
            [p for _, p in scored],
            self.cfg.combine,
            evaluation=evaluation,
            longrlvr=first.extra_reward_info.dataset_name == LONGRLVR,
            eta=self._eta(first),
        )
        for sample, reward in zip(samples, combined.rewards):
            sample.reward = reward
            self.metrics.observe_sample(sample)
        result = GroupResult(
            rewards=combined.rewards, samples=samples, rubric_hat=combined.rubric_hat,
            rubric_max=combined.rubric_max, dropped=combined.dropped,
        )
        self.metrics.observe_group(result)
        self.metrics.observe_latency(time.perf_counter() - start)
        return result

    async def aclose(self) -> None:
        await self.judge.aclose()
