"""The reward function: validity -> outcome judge -> rubric -> group combination.

``RewardScorer`` is the in-process implementation of the one interface the trainer uses (``RewardFn``);
``reward.client.RewardClient`` implements the same interface against the reward server.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Protocol, Sequence

from .combine import GroupRewards, ScoreParts, combine_group, combine_sample
from .config import RewardConfig
from .judge import Judge, Verdict, build_judge, judge_error
from .longrlvr import DATASET_NAME as LONGRLVR, chunk_reward
from .metrics import RewardMetrics
from .parsing import ParsedResponse, clean_text, parse_history, parse_response
from .rubric import matcher_for, normalized_rubric_text, parse_entities, rubric_parts
from .schema import GroupResult, RewardRequest, SampleReward

log = logging.getLogger(__name__)


class RewardInputError(ValueError):
    """A request that validates as JSON but cannot be scored (e.g. an unusable rubric item)."""


class RewardFn(Protocol):
    async def score(self, request: RewardRequest, evaluation: bool = False) -> SampleReward: ...

    async def score_group(self, requests: Sequence[RewardRequest], evaluation: bool = False) -> GroupResult: ...

    async def aclose(self) -> None: ...


def _rubric_source(req: RewardRequest, default: str, reference: bool = False) -> str:
    """LongTraceRL's slime sends rubric_use_content / rubric_use_reasoning_content per request. When both are off the
    reference server reads nothing (rubric 0); the default mode reads the configured source instead, since the fork's
    two flags are off unless set, which would silently switch the rubric off."""
    info = req.extra_reward_info
    if info.rubric_use_content is None and info.rubric_use_reasoning_content is None:
        return default
    use_content, use_reasoning = bool(info.rubric_use_content), bool(info.rubric_use_reasoning_content)
    if use_content and use_reasoning:
        return "both"
    if not use_content and not use_reasoning:
        return "none" if reference else default
    return "reasoning" if use_reasoning else "content"


def _clean_item(item):
    """A rubric item with its strings cleaned of lone surrogates (they could not be encoded in the output)."""
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if isinstance(item, str):
        return clean_text(item)
    if isinstance(item, list):
        return [clean_text(x) if isinstance(x, str) else x for x in item]
    if isinstance(item, dict):
        return {k: _clean_item(v) if k in ("name", "aliases") else v for k, v in item.items()}
    return item


def _cleaned(parsed: ParsedResponse) -> ParsedResponse:
    """``parsed`` with lone surrogates replaced (U+FFFD, a separator for the rubric as the surrogate is)."""

    def c(text):
        return clean_text(text) if isinstance(text, str) else text

    return replace(parsed, reasoning=c(parsed.reasoning), content=c(parsed.content),
                   final_content=c(parsed.final_content), turns=tuple((c(r), c(t)) for r, t in parsed.turns))


class RewardScorer:
    def __init__(self, cfg: RewardConfig | None = None, judge: Judge | None = None, metrics: RewardMetrics | None = None):
        self.cfg = (cfg or RewardConfig()).validate()
        self.reference = self.cfg.mode == "reference"
        self.judge = judge if judge is not None else self._build_judge()
        self.metrics = metrics if metrics is not None else RewardMetrics()

    def _build_judge(self) -> Judge:
        if self.cfg.judge.kind == "llm" and self.reference:
            from .llm_judge import LLMJudge

            return LLMJudge(self.cfg.judge.llm, reference=True)
        return build_judge(self.cfg.judge)

    def _parse(self, req: RewardRequest) -> ParsedResponse:
        mode = self.cfg.mode
        if req.history is not None:
            history = [m.model_dump() for m in req.history]
            return parse_history(history, req.status, req.stop, self.cfg.validity, mode)
        return parse_response(req.response, req.status, req.stop, self.cfg.validity, mode)

    def _rubric(self, req: RewardRequest, parsed: ParsedResponse) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
        info = req.extra_reward_info
        source = _rubric_source(req, self.cfg.rubric.source, self.reference)
        try:
            if info.dataset_name == LONGRLVR:
                text = "\n\n".join(t.strip() for t in rubric_parts(parsed.reasoning, parsed.content, source, parsed.turns))
                return chunk_reward(text, info.rubrics), (), ()
            entities = parse_entities(_clean_item(r) for r in info.rubrics)
        except ValueError as e:
            raise RewardInputError(f"extra_reward_info.{e}") from None
        mode = self.cfg.rubric.normalization
        try:
            normalised = normalized_rubric_text(parsed.reasoning, parsed.content, source, mode, parsed.turns)
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"); cleaned only then, as it costs an encode
            parsed = _cleaned(parsed)
            normalised = normalized_rubric_text(parsed.reasoning, parsed.content, source, mode, parsed.turns)
        result = matcher_for(entities, mode, self.cfg.rubric.whole_word).score_normalized(normalised)
        return result.score, result.matched, result.missing

    async def _judge(self, req: RewardRequest, parsed: ParsedResponse) -> Verdict:
        try:
            verdict = await self.judge.judge(
                clean_text(req.extra_reward_info.question), clean_text(req.label), clean_text(parsed.final_content)
            )
        except Exception as e:  # a judge bug must not take the trainer down; it is counted as a judge error
            log.exception("outcome judge raised")
            return judge_error(clean_text(f"judge raised {type(e).__name__}: {e}"))
        if verdict.extracted is not None:
            verdict = replace(verdict, extracted=clean_text(verdict.extracted))
        if verdict.error is not None:
            verdict = replace(verdict, error=clean_text(verdict.error))
        return verdict

    def _eta(self, req: RewardRequest, evaluation: bool = False) -> float:
        """The rubric ratio of a request. Evaluation: 0 (reference mode: the request's own ratio when it sends one,
        as LongTraceRL's slime only fills in 0 when the data carries none)."""
        ratio = req.extra_reward_info.rubric_reward_ratio
        if evaluation:
            return ratio if self.reference and ratio is not None else 0.0
        return self.cfg.combine.eta if ratio is None else ratio

    async def _parts(self, req: RewardRequest, evaluation: bool = False) -> tuple[SampleReward, ScoreParts]:
        """Everything but the final reward, which depends on the group.

        Reference mode: invalid responses are scored at evaluation (the original punishes only in training), and
        never when nothing was kept to score; the rubric is computed only when eta > 0 and the judge asked only
        when eta < 1 (0 otherwise), and a blank answer after "</think>" is wrong without a judge call."""
        parsed = self._parse(req)
        if not parsed.valid:
            punish = self.cfg.combine.punish_invalid and not (self.reference and evaluation)
            if punish or (self.reference and not parsed.scorable):
                sample = SampleReward(
                    reward=0.0, outcome_reward=0.0, rubric_reward=0.0, correct=False, valid=False,
                    invalid_reason=parsed.invalid_reason,
                )
                return sample, ScoreParts(0.0, False, 0.0)
        eta = self._eta(req, evaluation)
        if self.reference and eta <= 0:
            rubric, matched, missing = 0.0, (), ()
        else:
            rubric, matched, missing = self._rubric(req, parsed)
        if self.reference and (eta >= 1 or parsed.answer_blank):
            verdict = Verdict(score=0.0, correct=False)
        else:
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

    async def score(self, request: RewardRequest, evaluation: bool = False) -> SampleReward:
        """One sample on its own: no group normalisation (r_hat = raw rubric).

        Reference mode at evaluation: the reference server's own reward, (1 - eta) * outcome + eta * rubric (the
        LongRLVR formula for that dataset), which is the outcome when eta = 0."""
        start = time.perf_counter()
        sample, parts = await self._parts(request, evaluation)
        if parts.judge_error is None:
            eta = self._eta(request, evaluation)
            longrlvr = request.extra_reward_info.dataset_name == LONGRLVR
            mode = "both" if self.reference and evaluation else self.cfg.combine.mode
            sample.reward = combine_sample(
                parts.outcome, parts.correct, parts.rubric, mode, eta, longrlvr, reference=self.reference
            )
        self.metrics.observe_sample(sample)
        self.metrics.observe_latency(time.perf_counter() - start)
        return sample

    async def score_group(self, requests: Sequence[RewardRequest], evaluation: bool = False) -> GroupResult:
        """One GRPO group. Reference mode at evaluation: every sample gets the reference server's own reward (see
        ``score``), as LongTraceRL evaluates sample by sample."""
        if not requests:
            raise RewardInputError("a group needs at least one sample")
        start = time.perf_counter()
        scored = await asyncio.gather(*(self._parts(r, evaluation) for r in requests))
        samples = [s for s, _ in scored]
        first = requests[0]
        combine_cfg = self.cfg.combine
        if self.reference and evaluation:
            combine_cfg = replace(combine_cfg, mode="both", group_normalize=False)
        combined: GroupRewards = combine_group(
            [p for _, p in scored],
            combine_cfg,
            evaluation=evaluation and not self.reference,
            longrlvr=first.extra_reward_info.dataset_name == LONGRLVR,
            eta=self._eta(first, evaluation),
            reference=self.reference,
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
