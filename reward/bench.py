"""``longtrace reward bench``: scoring throughput of one training step's worth of long responses.

Default workload: 1,024 responses of ~130 KB (~32K tokens; ~100 KB reasoning + ~30 KB final content) in groups
of 8, 8 gold entities per question, the rule-based judge, rubric over reasoning *and* content (so every byte is
normalised and matched). It prints MB/s and responses/s on one core, and the ratio to the floor measured in the
same run: one pass of the reference regex normaliser (LongTraceRL's ``normalize_string``) over the same text.
Target: >= 100 MB/s, i.e. a 1,024-response step in under 2 s.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from .config import RewardConfig
from .normalize import reference_normalize
from .schema import RewardRequest
from .scorer import RewardScorer

_ASCII_WORDS = (
    "the of and to in a was is for on as by with that from his at he it an were which are this also be had first "
    "album single song studio producer record released label tour city river county school university band film "
    "series born died married award chart number year years during after before between known called later "
    "Stockholm Sweden London Paris Berlin Madrid Toronto Sydney Chicago Boston 1973 1988 2008 2011 2019 42 "
    "however therefore because although whereas thus hence moreover wait let me check again maybe perhaps "
    "(born) [1] {x} \"quoted\" it's U.S. e.g. -- 3.5%"
).split()
_NON_ASCII_WORDS = "Beyoncé Zoë café São Malmö Kraków naïve — – “quoted” ‘single’ Björk".split()
_ENTITY_POOL = (
    "Lady Gaga|The Fame|Poker Face|Just Dance|RedOne|Interscope Records|Cheiron Studios|Max Martin|Denniz Pop|"
    "Britney Spears|Backstreet Boys|Kristian Lundin|Rami Yacoub|Akon|Kon Live|Vincent Herbert|Streamline Records|"
    "Darkchild|Rodney Jerkins|Jive Records|Zomba Group|Clive Calder|Polar Music|Benny Andersson|Björn Ulvaeus"
).split("|")


@dataclass
class BenchResult:
    responses: int
    megabytes: float
    seconds: float
    floor_seconds: float
    accuracy: float
    rubric_mean: float

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds

    @property
    def responses_per_s(self) -> float:
        return self.responses / self.seconds

    @property
    def ratio_to_floor(self) -> float:
        """> 1 means the whole scoring is faster than one reference regex normalisation pass."""
        return self.floor_seconds / self.seconds


def _text(rng: random.Random, n_bytes: int, mentions: list[str], non_ascii: float) -> str:
    words, size = [], 0
    while size < n_bytes:
        w = rng.choice(_NON_ASCII_WORDS if rng.random() < non_ascii else _ASCII_WORDS)
        words.append(w)
        size += len(w) + 1
        if rng.random() < 0.02:
            words.append(".\n\n")
    for m in mentions:
        words.insert(rng.randrange(len(words)), m)
    return " ".join(words)


def make_workload(
    n_responses: int, kb: float, n_entities: int, group_size: int, seed: int, non_ascii: float = 0.02
) -> list[list[RewardRequest]]:
    """Groups of synthetic responses; ``non_ascii`` is the share of words with a non-ASCII character."""
    rng = random.Random(seed)
    groups = []
    for g in range((n_responses + group_size - 1) // group_size):
        entities = rng.sample(_ENTITY_POOL, n_entities)
        answer = rng.choice(["Stockholm, Sweden", "1973", "Moroccan-Swedish", "Cheiron Studios"])
        group = []
        for i in range(min(group_size, n_responses - g * group_size)):
            hit = rng.sample(entities, rng.randint(0, n_entities))
            reasoning = _text(rng, int(kb * 1000 * 0.77), hit, non_ascii)
            content = _text(rng, int(kb * 1000 * 0.23), hit[: len(hit) // 2], non_ascii)
            if rng.random() < 0.6:
                content += f"\n\n**Answer:** {answer if rng.random() < 0.5 else 'Oslo, Norway'}"
            group.append(RewardRequest(
                label=answer,
                extra_reward_info={"question": "q", "rubrics": entities, "dataset_name": "bench"},
                response=f"{reasoning}</think>\n\n{content}<|im_end|>",
                group_id=g, sample_id=f"{g}-{i}",
            ))
        groups.append(group)
    return groups


def time_floor(groups: list[list[RewardRequest]]) -> float:
    """Seconds for one pass of the reference regex normaliser over every response (the floor)."""
    t0 = time.perf_counter()
    for group in groups:
        for r in group:
            reference_normalize(r.response)
    return time.perf_counter() - t0


def run_bench(cfg: RewardConfig, groups: list[list[RewardRequest]], floor_seconds: float) -> BenchResult:
    scorer = RewardScorer(cfg)
    texts = [r.response for group in groups for r in group]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6

    async def score_all():
        return [await scorer.score_group(group) for group in groups]

    t0 = time.perf_counter()
    results = asyncio.run(score_all())
    seconds = time.perf_counter() - t0
    samples = [s for r in results for s in r.samples]
    return BenchResult(
        responses=len(texts), megabytes=megabytes, seconds=seconds, floor_seconds=floor_seconds,
        accuracy=sum(s.correct for s in samples) / len(samples),
        rubric_mean=sum(s.rubric_reward for s in samples) / len(samples),
    )
