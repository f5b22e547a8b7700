"""``longtrace reward bench``: rubric scoring throughput on one training step's worth of long responses.

Workload (issue 16): 1,024 responses of ~130 KB (~100 KB reasoning + ~30 KB final content) in groups of 8, 20 gold
entities per question, the rubric reading reasoning *and* content (every byte normalised and matched), in four
regimes:

  rare      each response mentions a random subset of its entities once
  frequent  each response mentions half to all of its entities, each about once per 2 KB (~1,000 mentions)
  ASCII     the text is pure ASCII
  non-ASCII 2% of the words carry a non-ASCII character: accents, dashes, curly quotes and CJK words (the entity
            pool then holds accented and CJK names too)

Everything runs in this one process, on one core, and is timed in CPU seconds of the process (``process_time``), so a
busy machine slows the figures less than wall time would. Per regime it reports:

  rubric       ``RewardScorer._rubric`` -- the scorer's own rubric step (normalise, cached matcher, score), on
               responses parsed beforehand
  regex pass   the baseline: one compiled alternation of the entity names (``re``, IGNORECASE) run over the same
               text, compiled per rubric; ratio = regex pass time / rubric time (> 1: the rubric is faster)
  LongTraceRL  the released server's rubric code (``normalize_string`` of the joined text, then ``in`` per entity),
               and whether its scores equal ours (reference normalisation, substring matching)
  scorer       the whole ``RewardScorer.score_group`` (parse, rule judge, rubric, group combination)

MB/s counts the UTF-8 bytes the rubric reads. Target: rubric >= 150 MB/s in every regime.
"""
from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, replace

from .config import RewardConfig
from .normalize import reference_normalize
from .rubric import matcher_for, rubric_parts
from .schema import RewardRequest
from .scorer import RewardScorer

REGIMES = ("rare/ASCII", "rare/non-ASCII", "frequent/ASCII", "frequent/non-ASCII")
FREQUENT_EVERY_BYTES = 2000  # frequent regime: one mention of each mentioned entity per this many bytes

_ASCII_WORDS = (
    "the of and to in a was is for on as by with that from his at he it an were which are this also be had first "
    "album single song studio producer record released label tour city river county school university band film "
    "series born died married award chart number year years during after before between known called later "
    "Stockholm Sweden London Paris Berlin Madrid Toronto Sydney Chicago Boston 1973 1988 2008 2011 2019 42 "
    "however therefore because although whereas thus hence moreover wait let me check again maybe perhaps "
    "Lady Max Face Records Dance Music Group Live Studios Pop "
    "(born) [1] {x} \"quoted\" it's U.S. e.g. -- 3.5% So, Then. Yes! No? x_y"
).split()
_NON_ASCII_WORDS = (
    "Beyoncé Zoë café São Malmö Kraków naïve — – “quoted” ‘single’ Björk … "
    "北京大学 中文 東京 周杰伦 的 研究 音乐 专辑 2019年 第3张"
).split()
_ASCII_ENTITIES = (
    "Lady Gaga|The Fame|Poker Face|Just Dance|RedOne|Interscope Records|Cheiron Studios|Max Martin|Denniz Pop|"
    "Britney Spears|Backstreet Boys|Kristian Lundin|Rami Yacoub|Akon|Kon Live|Vincent Herbert|Streamline Records|"
    "Darkchild|Rodney Jerkins|Jive Records|Zomba Group|Clive Calder|Polar Music|Benny Andersson|Bjorn Ulvaeus|"
    "Stig Anderson|Dance Music Group|Live Nation|Madonna|Ace of Base"
).split("|")
_NON_ASCII_ENTITIES = "Björn Ulvaeus|Beyoncé|Zoë Kravitz|周杰伦|北京大学|東京|Malmö FF|Café del Mar".split("|")


def _corpus(rng: random.Random, n_bytes: int, non_ascii: float) -> str:
    n_words = n_bytes // 6
    words = rng.choices(_ASCII_WORDS, k=n_words)
    for i in rng.sample(range(n_words), int(n_words * non_ascii)):
        words[i] = rng.choice(_NON_ASCII_WORDS)
    for i in rng.sample(range(n_words), n_words // 50):
        words[i] += ".\n\n"
    return " ".join(words)


def _text(rng: random.Random, corpus: str, n_chars: int, mentions: list[str]) -> str:
    """A random slice of the corpus with the mentions inserted at random word boundaries."""
    start = corpus.find(" ", rng.randrange(len(corpus) - n_chars - 1)) + 1
    base = corpus[start:start + n_chars]
    cuts = sorted(rng.randrange(len(base) + 1) for _ in mentions)
    pieces, prev = [], 0
    for cut, mention in zip(cuts, mentions):
        pieces += [base[prev:cut], " ", mention, " "]
        prev = cut
    pieces.append(base[prev:])
    return "".join(pieces)


def make_workload(
    n_responses: int, kb: float, n_entities: int, group_size: int, seed: int, frequent: bool, non_ascii: float
) -> list[list[RewardRequest]]:
    """Groups of synthetic responses sharing a rubric per group. ``non_ascii``: share of non-ASCII words (0 = ASCII)."""
    rng = random.Random(seed)
    pool = _ASCII_ENTITIES + (_NON_ASCII_ENTITIES if non_ascii else [])
    if n_entities > len(pool):
        raise ValueError(f"--entities at most {len(pool)}")
    reasoning_chars, content_chars = int(kb * 1000 * 0.77), int(kb * 1000 * 0.23)
    corpus = _corpus(rng, max(8 * int(kb * 1000), min(4_000_000, int(n_responses * kb * 1000))), non_ascii)
    groups = []
    for g in range((n_responses + group_size - 1) // group_size):
        entities = rng.sample(pool, n_entities)
        answer = rng.choice(["Stockholm, Sweden", "1973", "Moroccan-Swedish", "Cheiron Studios"])
        group = []
        for i in range(min(group_size, n_responses - g * group_size)):
            if frequent:
                named = rng.sample(entities, rng.randint((n_entities + 1) // 2, n_entities))
                every = FREQUENT_EVERY_BYTES
                in_reasoning = [e for e in named for _ in range(max(1, reasoning_chars // every))]
                in_content = [e for e in named for _ in range(max(1, content_chars // every))]
                rng.shuffle(in_reasoning)
                rng.shuffle(in_content)
            else:
                in_reasoning = rng.sample(entities, rng.randint(0, n_entities))
                in_content = in_reasoning[: len(in_reasoning) // 2]
            reasoning = _text(rng, corpus, reasoning_chars, in_reasoning)
            content = _text(rng, corpus, content_chars, in_content)
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


def longtracerl_rubric(parts: tuple[str, ...], rubrics: list[str]) -> float:
    """The released LongTraceRL server's rubric reward (get_rubric_reward), verbatim in behaviour."""
    if not rubrics:
        return 0
    full_text = ""
    for part in parts:
        full_text += "\n\n" + part.strip()
    full_text = reference_normalize(full_text)
    return sum(reference_normalize(r) in full_text for r in rubrics) / len(rubrics)


@dataclass
class RegimeResult:
    regime: str
    responses: int
    megabytes: float  # UTF-8 bytes the rubric reads
    rubric_seconds: float
    regex_seconds: float
    longtracerl_seconds: float | None
    scorer_seconds: float
    agree: int | None  # responses whose rubric score equals the LongTraceRL code's (None: not comparable)
    rubric_mean: float

    def mb_per_s(self, seconds: float | None) -> float | None:
        return None if seconds is None else self.megabytes / seconds

    @property
    def ratio_to_regex(self) -> float:
        """> 1: the rubric step is faster than one regex pass over the same text."""
        return self.regex_seconds / self.rubric_seconds


def _cpu(fn):
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def run_regime(
    cfg: RewardConfig, regime: str, n_responses: int, kb: float, n_entities: int, group_size: int, seed: int,
    non_ascii: float, longtracerl: bool = True,
) -> RegimeResult:
    frequency, script = regime.split("/")
    groups = make_workload(
        n_responses, kb, n_entities, group_size, seed, frequent=frequency == "frequent",
        non_ascii=non_ascii if script == "non-ASCII" else 0.0,
    )
    scorer = RewardScorer(cfg)
    matcher_for.cache_clear()  # each regime builds its own matchers, as a fresh rubric does
    requests = [r for group in groups for r in group]
    parsed = [scorer._parse(r) for r in requests]
    source = cfg.rubric.source
    parts = [rubric_parts(p.reasoning, p.content, source, *[t for t in [getattr(p, "turns", None)] if t is not None])
             for p in parsed]
    megabytes = sum(len(t.encode("utf-8", "surrogatepass")) for ps in parts for t in ps) / 1e6

    rubric_seconds, scores = _cpu(lambda: [scorer._rubric(r, p)[0] for r, p in zip(requests, parsed)])

    # index the parts by group once, outside the timed regions
    offsets, at = [], 0
    for group in groups:
        offsets.append(at)
        at += len(group)

    def regex_pass():
        for group, first in zip(groups, offsets):
            names = sorted(group[0].extra_reward_info.rubrics, key=len, reverse=True)
            pattern = re.compile("|".join(map(re.escape, names)))
            for i in range(first, first + len(group)):
                for text in parts[i]:
                    pattern.findall(text)

    regex_seconds, _ = _cpu(regex_pass)
    comparable = cfg.rubric.normalization == "reference" and not cfg.rubric.whole_word
    longtracerl_seconds, agree = None, None
    if longtracerl:
        longtracerl_seconds, reference_scores = _cpu(
            lambda: [longtracerl_rubric(ps, r.extra_reward_info.rubrics) for ps, r in zip(parts, requests)]
        )
        if comparable:
            agree = sum(a == b for a, b in zip(scores, reference_scores))

    async def score_all():
        return [await scorer.score_group(group) for group in groups]

    scorer_seconds, _ = _cpu(lambda: asyncio.run(score_all()))
    return RegimeResult(
        regime=regime, responses=len(requests), megabytes=megabytes, rubric_seconds=rubric_seconds,
        regex_seconds=regex_seconds, longtracerl_seconds=longtracerl_seconds, scorer_seconds=scorer_seconds,
        agree=agree, rubric_mean=sum(scores) / len(scores),
    )


def bench_config(cfg: RewardConfig, source: str | None) -> RewardConfig:
    """The bench's rubric reads reasoning + content (every byte) unless a source is given."""
    return replace(cfg, rubric=replace(cfg.rubric, source=source or "both"))
