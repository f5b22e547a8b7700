"""The outcome-judge interface and the factory that builds one from the reward config.

A judge sees only the bare question, the gold answer and the response's final content, and returns a
``Verdict``. A judge that cannot decide (HTTP failures, timeouts, unparseable replies after retries)
returns a verdict with ``error`` set: callers never turn that into a silent 0 (see ``combine.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import JudgeConfig


@dataclass(frozen=True)
class Verdict:
    score: float  # outcome reward in [0, 1] (0/1 for binary judges, token F1 for the f1 judge)
    correct: bool
    extracted: str | None = None  # the answer the judge found in the content
    reasoning: str | None = None
    error: str | None = None  # set when no verdict could be reached; score is then 0 and must not be trusted
    cached: bool = False


def judge_error(message: str) -> Verdict:
    return Verdict(score=0.0, correct=False, error=message)


class Judge(Protocol):
    name: str

    async def judge(self, question: str, answer: str, content: str) -> Verdict: ...

    async def aclose(self) -> None: ...


def build_judge(cfg: "JudgeConfig") -> Judge:
    if cfg.kind == "llm":
        from .llm_judge import LLMJudge

        return LLMJudge(cfg.llm)
    from .rule_judge import RuleJudge

    return RuleJudge(cfg.kind, f1_threshold=cfg.f1_threshold, rel_tol=cfg.numeric_rel_tol)
