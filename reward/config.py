"""Reward configuration: dataclasses, validation, and the command-line flags that set them.

Flag names follow LongTraceRL's slime fork where the concept exists there (``--rubric-reward-ratio``,
``--normalize-rubric-reward``, ``--no-punish-for-illform``) so users of that code feel at home.
``longtrace reward score|serve|bench`` and ``longtrace train`` all register the same flags.

``--reward-mode reference`` (``RewardConfig.mode``) switches parsing, rubric text, judge-reply parsing and the
group combination to LongTraceRL's own behaviour (docs/reward.md, "Reference mode"); ``default`` is ours.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .combine import COMBINE_MODES, JUDGE_ERROR_POLICIES, CombineConfig
from .normalize import MODES as NORMALIZATION_MODES
from .parsing import ValidityConfig
from .rubric import TEXT_SOURCES
from .rule_judge import RULE_KINDS

JUDGE_KINDS = (*RULE_KINDS, "llm")
REWARD_MODES = ("default", "reference")


@dataclass
class LLMJudgeConfig:
    base_url: str = ""  # e.g. http://127.0.0.1:30000/v1 (SGLang/vLLM) or a hosted API
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key, never the key itself
    max_concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 3
    parse_retries: int = 2
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int | None = 1024
    extra_body: dict = field(default_factory=dict)  # e.g. {"chat_template_kwargs": {"enable_thinking": false}}
    cache_path: str | None = None  # SQLite file; in-memory cache only when unset


@dataclass
class JudgeConfig:
    kind: str = "rule"
    f1_threshold: float = 0.5
    numeric_rel_tol: float = 1e-4
    llm: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)


@dataclass
class RubricConfig:
    normalization: str = "reference"
    whole_word: bool = False
    source: str = "content"


@dataclass
class RewardConfig:
    mode: str = "default"  # "reference": reproduce LongTraceRL's reward code (docs/reward.md)
    validity: ValidityConfig = field(default_factory=ValidityConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rubric: RubricConfig = field(default_factory=RubricConfig)
    combine: CombineConfig = field(default_factory=CombineConfig)

    def validate(self) -> "RewardConfig":
        problems = []

        def one_of(name: str, value: Any, allowed: tuple) -> None:
            if value not in allowed:
                problems.append(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")

        one_of("mode", self.mode, REWARD_MODES)
        one_of("judge.kind", self.judge.kind, JUDGE_KINDS)
        one_of("rubric.normalization", self.rubric.normalization, NORMALIZATION_MODES)
        one_of("rubric.source", self.rubric.source, TEXT_SOURCES)
        one_of("combine.mode", self.combine.mode, COMBINE_MODES)
        one_of("combine.on_judge_error", self.combine.on_judge_error, JUDGE_ERROR_POLICIES)
        if not 0.0 <= self.combine.eta <= 1.0:
            problems.append(f"combine.eta={self.combine.eta} must be in [0, 1]")
        if not 0.0 <= self.judge.f1_threshold <= 1.0:
            problems.append(f"judge.f1_threshold={self.judge.f1_threshold} must be in [0, 1]")
        if self.judge.kind == "llm":
            if not self.judge.llm.base_url or not self.judge.llm.model:
                problems.append("judge.kind='llm' needs judge.llm.base_url and judge.llm.model (--judge-base-url, --judge-model)")
            if self.judge.llm.max_concurrency < 1:
                problems.append("judge.llm.max_concurrency must be >= 1")
        if not self.validity.stop_tokens and self.validity.require_stop:
            problems.append("validity.require_stop needs at least one stop token")
        if problems:
            raise ValueError("invalid reward config:\n  " + "\n  ".join(problems))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RewardConfig":
        """Build from a (possibly partial) nested dict such as a JSON config file; unknown keys are errors."""

        def section(dc_type, values: Any, where: str) -> dict:
            if not isinstance(values, dict):
                raise ValueError(f"{where} must be an object, got {values!r}")
            unknown = sorted(set(values) - {f.name for f in fields(dc_type)})
            if unknown:
                raise ValueError(f"unknown key(s) in {where}: {', '.join(unknown)}")
            return dict(values)

        top = section(cls, data, "reward config")
        validity = section(ValidityConfig, top.get("validity", {}), "validity")
        judge = section(JudgeConfig, top.get("judge", {}), "judge")
        llm = LLMJudgeConfig(**section(LLMJudgeConfig, judge.pop("llm", {}), "judge.llm"))
        return cls(
            mode=top.get("mode", "default"),
            validity=ValidityConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in validity.items()}),
            judge=JudgeConfig(**judge, llm=llm),
            rubric=RubricConfig(**section(RubricConfig, top.get("rubric", {}), "rubric")),
            combine=CombineConfig(**section(CombineConfig, top.get("combine", {}), "combine")),
        ).validate()


def add_reward_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("reward")
    g.add_argument("--reward-config", help="JSON file with a (partial) reward config; flags given explicitly win")
    g.add_argument("--reward-mode", choices=REWARD_MODES,
                   help="default (ours) or reference: reproduce LongTraceRL's released reward code (docs/reward.md)")
    g.add_argument("--non-thinking", action="store_true", help="non-thinking model: no </think> split, the whole response is the content")
    g.add_argument("--no-require-stop", action="store_true", help="do not require an accepted stop token at the end of a response")
    g.add_argument("--stop-tokens", nargs="+", help="accepted stop tokens (default: <|im_end|>)")
    g.add_argument("--no-punish-for-illform", "--no-punish-invalid", dest="no_punish_invalid", action="store_true",
                   help="score invalid responses anyway (their invalid reason is still recorded and counted)")
    g.add_argument("--judge", choices=JUDGE_KINDS, help="outcome judge (default: rule)")
    g.add_argument("--judge-base-url", help="OpenAI-compatible base URL for --judge llm, e.g. http://127.0.0.1:30000/v1")
    g.add_argument("--judge-model", help="model name sent to the judge endpoint")
    g.add_argument("--judge-api-key-env", help="environment variable that holds the judge API key (default OPENAI_API_KEY)")
    g.add_argument("--judge-concurrency", type=int, help="max concurrent judge requests (default 32)")
    g.add_argument("--judge-timeout", type=float, help="per-request timeout in seconds (default 120)")
    g.add_argument("--judge-retries", type=int, help="transport retries per judge call (default 3)")
    g.add_argument("--judge-parse-retries", type=int, help="re-asks when a reply has no 'correct: yes|no' (default 2)")
    g.add_argument("--judge-max-tokens", type=int, help="max_tokens for judge replies (default 1024)")
    g.add_argument("--judge-extra-body", type=json.loads, help='JSON merged into each request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')
    g.add_argument("--judge-cache", help="SQLite file caching judge verdicts across runs")
    g.add_argument("--f1-threshold", type=float, help="token-F1 threshold for --judge f1 to count as correct (default 0.5)")
    g.add_argument("--numeric-rel-tol", type=float, help="relative tolerance of the numeric judge (default 1e-4)")
    g.add_argument("--rubric-normalization", choices=NORMALIZATION_MODES, help="reference (LongTraceRL exact) or unicode")
    g.add_argument("--rubric-whole-word", action="store_true", help="entities must match whole words")
    g.add_argument("--rubric-source", choices=TEXT_SOURCES, help="text the rubric reads: content (default), reasoning or both")
    g.add_argument("--rubric-combine", choices=COMBINE_MODES, help="group combination mode (default positive_only)")
    g.add_argument("--rubric-reward-ratio", "--eta", dest="eta", type=float, help="rubric weight eta (default 0.3)")
    g.add_argument("--normalize-rubric-reward", action=argparse.BooleanOptionalAction, default=None,
                   help="divide rubric scores by the group maximum (default on)")
    g.add_argument("--on-judge-error", choices=JUDGE_ERROR_POLICIES,
                   help="drop the whole group (default) or count the failed sample as wrong")


def reward_config_from_args(args: argparse.Namespace) -> RewardConfig:
    if getattr(args, "reward_config", None):
        with open(args.reward_config, encoding="utf-8") as f:
            try:
                cfg = RewardConfig.from_dict(json.load(f))
            except (json.JSONDecodeError, ValueError, TypeError) as e:
                raise ValueError(f"{args.reward_config}: {e}") from None
    else:
        cfg = RewardConfig()

    def given(name: str):
        return getattr(args, name, None)

    if given("reward_mode"):
        cfg.mode = given("reward_mode")
    v = cfg.validity
    cfg.validity = replace(
        v,
        thinking=False if given("non_thinking") else v.thinking,
        require_stop=False if given("no_require_stop") else v.require_stop,
        stop_tokens=tuple(given("stop_tokens")) if given("stop_tokens") else v.stop_tokens,
    )
    for attr, flag in (("kind", "judge"), ("f1_threshold", "f1_threshold"), ("numeric_rel_tol", "numeric_rel_tol")):
        if given(flag) is not None:
            setattr(cfg.judge, attr, given(flag))
    for attr, flag in (
        ("base_url", "judge_base_url"), ("model", "judge_model"), ("api_key_env", "judge_api_key_env"),
        ("max_concurrency", "judge_concurrency"), ("timeout_s", "judge_timeout"), ("max_retries", "judge_retries"),
        ("parse_retries", "judge_parse_retries"), ("max_tokens", "judge_max_tokens"),
        ("extra_body", "judge_extra_body"), ("cache_path", "judge_cache"),
    ):
        if given(flag) is not None:
            setattr(cfg.judge.llm, attr, given(flag))
    if given("rubric_normalization"):
        cfg.rubric.normalization = given("rubric_normalization")
    if given("rubric_whole_word"):
        cfg.rubric.whole_word = True
    if given("rubric_source"):
        cfg.rubric.source = given("rubric_source")
    if given("rubric_combine"):
        cfg.combine.mode = given("rubric_combine")
    if given("eta") is not None:
        cfg.combine.eta = given("eta")
    if given("normalize_rubric_reward") is not None:
        cfg.combine.group_normalize = given("normalize_rubric_reward")
    if given("on_judge_error"):
        cfg.combine.on_judge_error = given("on_judge_error")
    if given("no_punish_invalid"):
        cfg.combine.punish_invalid = False
    return cfg.validate()
