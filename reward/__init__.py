"""LongTrace-RL rewards: outcome judges + entity-level rubric reward, combined per GRPO group.

    from reward import RewardConfig, RewardScorer, RewardRequest
    scorer = RewardScorer(RewardConfig())
    group = await scorer.score_group([RewardRequest(...), ...])   # group.rewards, group.samples

See docs/reward.md for formats, flags, the server API and slime interop.
"""
from .combine import CombineConfig, combine_group, combine_sample
from .config import JudgeConfig, LLMJudgeConfig, RewardConfig, RubricConfig
from .normalize import normalize
from .parsing import ValidityConfig, parse_response
from .rubric import rubric_reward
from .schema import GroupResult, RewardRequest, SampleReward
from .scorer import RewardFn, RewardInputError, RewardScorer

__all__ = [
    "CombineConfig", "GroupResult", "JudgeConfig", "LLMJudgeConfig", "RewardConfig", "RewardFn", "RewardInputError",
    "RewardRequest", "RewardScorer", "RubricConfig", "SampleReward", "ValidityConfig", "combine_group",
    "combine_sample", "normalize", "parse_response", "rubric_reward",
]
