"""Combining the outcome and rubric rewards over one GRPO group.

With r_hat = rubric / max(rubric over the whole group, wrong samples included) when group normalisation is on
(raw rubric otherwise, or when the group maximum is 0):

  positive_only (default, LongTraceRL)  wrong -> 0;               correct -> (1 - eta) * outcome + eta * r_hat
  negative_only                         wrong -> eta * r_hat;     correct -> outcome
  both                                  (1 - eta) * outcome + eta * r_hat for every sample
  outcome_only                          outcome
  longrlvr (dataset_name == "longrlvr")  outcome + eta * F + (1 - eta) * outcome * F, F = chunk F-beta (normalised
                                        like the rubric)

For binary judges "correct" means outcome == 1, so positive_only gives (1 - eta) + eta * r_hat as in the paper.
``reference=True`` branches as LongTraceRL's slime fork does, on the outcome value instead of the correct flag:
positive_only treats a sample as wrong only when outcome == 0, negative_only as right when outcome > 0 (they differ
for fractional outcomes such as the f1 judge's).
Evaluation forces eta = 0 (reward = outcome). A sample whose judge failed is never silently scored 0: by default
the whole group is dropped (its samples must not be trained on); ``on_judge_error="zero"`` counts it as wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

COMBINE_MODES = ("positive_only", "negative_only", "both", "outcome_only")
JUDGE_ERROR_POLICIES = ("drop", "zero")


@dataclass
class CombineConfig:
    mode: str = "positive_only"
    eta: float = 0.3
    group_normalize: bool = True
    on_judge_error: str = "drop"
    punish_invalid: bool = True


@dataclass(frozen=True)
class ScoreParts:
    outcome: float
    correct: bool
    rubric: float  # raw rubric score (0 for invalid samples when they are punished)
    judge_error: str | None = None


@dataclass(frozen=True)
class GroupRewards:
    rewards: list[float]
    rubric_hat: list[float]
    rubric_max: float
    dropped: str | None = None  # why the group must not be trained on, or None


def combine_sample(
    outcome: float, correct: bool, r_hat: float, mode: str, eta: float, longrlvr: bool = False, reference: bool = False
) -> float:
    if longrlvr:
        return outcome + eta * r_hat + (1 - eta) * outcome * r_hat
    if reference:
        correct = outcome != 0 if mode == "positive_only" else outcome > 0
    if mode == "positive_only":
        return (1 - eta) * outcome + eta * r_hat if correct else 0.0
    if mode == "negative_only":
        return outcome if correct else eta * r_hat
    if mode == "both":
        return (1 - eta) * outcome + eta * r_hat
    if mode == "outcome_only":
        return outcome
    raise ValueError(f"unknown combination mode {mode!r}; choose one of {', '.join(COMBINE_MODES)}")


def combine_group(
    parts: Sequence[ScoreParts],
    cfg: CombineConfig,
    evaluation: bool = False,
    longrlvr: bool = False,
    eta: float | None = None,
    reference: bool = False,
) -> GroupRewards:
    """Final rewards of one group. ``eta`` overrides cfg.eta (per-request ratio, as LongTraceRL's slime sends);
    ``reference`` branches on the outcome value (see the module docstring)."""
    eta = 0.0 if evaluation else (cfg.eta if eta is None else eta)
    errors = [p.judge_error for p in parts if p.judge_error is not None]
    if errors and cfg.on_judge_error == "drop":
        return GroupRewards([0.0] * len(parts), [0.0] * len(parts), 0.0, dropped=f"judge_error: {errors[0]}")

    rubric_max = max((p.rubric for p in parts), default=0.0)
    scale = rubric_max if cfg.group_normalize and rubric_max > 0 else 1.0
    rubric_hat = [p.rubric / scale for p in parts]
    rewards = [
        0.0 if p.judge_error is not None else combine_sample(p.outcome, p.correct, r_hat, cfg.mode, eta, longrlvr, reference)
        for p, r_hat in zip(parts, rubric_hat)
    ]
    return GroupRewards(rewards, rubric_hat, rubric_max)
