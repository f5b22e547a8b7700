"""The one record that travels from rollout to trainer.

A ``Sample`` is one response to one prompt: the prompt and response token ids exactly as the engine saw and
produced them (never re-tokenised), a per-response-token loss mask (0 for tool outputs in multi-turn samples),
the engine's per-token log-probs, how generation ended, and the reward parts. Samples of the same prompt share
a ``group_id`` (one GRPO group).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Generation outcomes. An invalid sample (see reward/parsing.py) is "invalid:<reason>".
PENDING, COMPLETED, TRUNCATED, ABORTED, FAILED = "pending", "completed", "truncated", "aborted", "failed"
STATUSES = (PENDING, COMPLETED, TRUNCATED, ABORTED, FAILED)


def status_from_finish_reason(finish_reason: dict | None) -> str:
    """SGLang ``meta_info.finish_reason`` ({"type": "stop"|"length"|"abort", ...}) -> sample status."""
    kind = (finish_reason or {}).get("type")
    if kind == "stop":
        return COMPLETED
    if kind == "length":
        return TRUNCATED
    if kind == "abort":
        return ABORTED
    return FAILED


@dataclass
class Sample:
    prompt_tokens: list[int]
    group_id: int | str = 0
    index: int = 0  # position within the group
    prompt_id: str = ""  # id of the dataset record
    response_tokens: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)  # one per response token
    rollout_logprobs: list[float] = field(default_factory=list)  # one per response token
    response_text: str = ""
    status: str = PENDING
    error: str | None = None  # why a FAILED sample failed: a named reason ("retries_exhausted: ...", "http_400: ...")
    finish_reason: dict | None = None  # as SGLang returned it (type, matched stop token / length)
    label: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # extra_reward_info, source, tiers ...
    reward: float | None = None
    reward_parts: dict[str, Any] = field(default_factory=dict)  # reward.SampleReward fields
    weight_version: int = 0  # policy version that generated the response

    @property
    def response_length(self) -> int:
        return len(self.response_tokens)

    @property
    def total_length(self) -> int:
        return len(self.prompt_tokens) + len(self.response_tokens)

    def check(self) -> None:
        """Raise ValueError when per-token fields disagree in length (a bookkeeping bug, never silently fixed)."""
        n = len(self.response_tokens)
        if len(self.loss_mask) != n:
            raise ValueError(f"sample {self.prompt_id}/{self.index}: loss_mask has {len(self.loss_mask)} entries for {n} response tokens")
        if self.rollout_logprobs and len(self.rollout_logprobs) != n:
            raise ValueError(
                f"sample {self.prompt_id}/{self.index}: {len(self.rollout_logprobs)} rollout log-probs for {n} response tokens"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sample":
        return cls(**data)
