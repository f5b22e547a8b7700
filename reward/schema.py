"""Wire formats of the reward package: requests (one sample), per-sample results and group results.

A request is LongTraceRL-compatible: ``{"label", "extra_reward_info": {"question", "rubrics", "dataset_name"},
"response" | "history"}`` plus what the reference server could not know: ``status`` (completed / truncated /
aborted / failed) and ``stop`` (the token that ended generation). Records in the slime dataset layout
(``metadata.extra_reward_info``) are accepted by ``request_from_record``.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator, model_validator

# How a LongTrace prompt ends: the question after the documents (data_gen/assembly.py writes it; the reward finds the
# question there when only the prompt text is given, e.g. slime's remote_rm)
QUESTION_PREFIX = "\n\nQuestion: "


class RubricEntityModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    aliases: list[StrictStr] = Field(default_factory=list)


RubricItem = Union[StrictStr, StrictInt, list[StrictStr], RubricEntityModel]


class ExtraRewardInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    question: str = ""
    rubrics: list[RubricItem] = Field(default_factory=list)
    dataset_name: str = ""
    # Sent per request by LongTraceRL's slime fork; when present they override the server's config.
    rubric_reward_ratio: Optional[float] = None
    rubric_use_reasoning_content: Optional[bool] = None
    rubric_use_content: Optional[bool] = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Optional[str] = None
    reasoning_content: Optional[str] = None


class RewardRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    label: str
    extra_reward_info: ExtraRewardInfo
    response: Optional[str] = None
    history: Optional[list[Message]] = None
    status: Literal["completed", "truncated", "aborted", "failed"] = "completed"
    stop: Optional[str] = None
    sample_id: Optional[Union[StrictStr, StrictInt]] = None
    group_id: Optional[Union[StrictStr, StrictInt]] = None

    @field_validator("label", mode="before")
    @classmethod
    def _label_to_str(cls, v: Any) -> Any:
        # Gold answers are often numbers in the data ("1973" vs 1973); both mean the same.
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _one_response(self) -> "RewardRequest":
        if (self.response is None) == (self.history is None):
            raise ValueError("give exactly one of 'response' (raw text) or 'history' (message list)")
        return self


class SampleReward(BaseModel):
    reward: float
    outcome_reward: float
    rubric_reward: float
    correct: bool
    valid: bool
    invalid_reason: Optional[str] = None
    judge_error: Optional[str] = None
    extracted_answer: Optional[str] = None
    matched_entities: list[str] = Field(default_factory=list)
    missing_entities: list[str] = Field(default_factory=list)
    judge_cached: bool = False


class GroupResult(BaseModel):
    rewards: list[float]
    samples: list[SampleReward]
    rubric_hat: list[float]
    rubric_max: float
    dropped: Optional[str] = None


class BatchRequest(BaseModel):
    samples: list[RewardRequest] = Field(min_length=1)
    evaluation: bool = False


def request_from_record(record: Any) -> RewardRequest:
    """Validate a dict as a request; lifts ``metadata.extra_reward_info`` from slime-layout records."""
    if isinstance(record, dict) and "extra_reward_info" not in record:
        meta = record.get("metadata")
        if isinstance(meta, dict) and "extra_reward_info" in meta:
            record = {**record, "extra_reward_info": meta["extra_reward_info"]}
    return RewardRequest.model_validate(record)


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, naming the field path: "extra_reward_info.rubrics.2: Input should be ..."."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(record)"
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)
