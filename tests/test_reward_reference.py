"""``--reward-mode reference`` against LongTraceRL's ORIGINAL reward code, case by case.

tests/fixtures/reference_reward/cases.jsonl holds adversarial inputs and what the original code (its reward server
and its slime fork's rollout, message processing and group combination, run by scripts/dev/reference_reward_dump.py
from the authors' repository; provenance in the fixture's README) gave for them. Here our scorer runs the same
inputs with the same scripted judge replies:

  * reference mode must agree on every compared field, except on the cases marked ``deviation`` (the original
    crashes or scores a silent 0 there), where it must give the documented ``reference_expect`` instead;
  * default mode must agree exactly where a hand-written case is not marked ``default_differs`` and differ where it
    is (random cases are not labelled);
  * every documented key a case names is in docs/reward.md.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from reward.combine import CombineConfig, ScoreParts, combine_group
from reward.config import JudgeConfig, LLMJudgeConfig, RewardConfig, RubricConfig
from reward.judge import judge_error
from reward.judge_cache import JudgeCache
from reward.llm_judge import LLMJudge
from reward.schema import RewardRequest
from reward.scorer import RewardScorer

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/reference_reward/cases.jsonl"
DOCS = ROOT / "docs/reward.md"
MODES = ("reference", "default")


def load_cases() -> list[dict]:
    with open(FIXTURE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CASES = load_cases() if FIXTURE.exists() else []


# ------------------------------------------------------------------------------------------------ our side


class ScriptedLLMJudge(LLMJudge):
    """Our LLM judge (its real reply parsing and retries) with the fixture's scripted replies as the endpoint."""

    def __init__(self, scripts: dict[str, list], reference: bool):
        super().__init__(LLMJudgeConfig(base_url="http://judge.invalid/v1", model="fixture"), JudgeCache(None), reference)
        self.scripts = scripts
        self.calls: Counter[str] = Counter()
        self.saw: dict[str, list[str]] = defaultdict(list)

    async def judge(self, question, answer, content):
        self.saw[question].append(content)
        return await super().judge(question, answer, content)

    async def _complete(self, messages):
        question = re.search(r"\[question\]: (\S*)", messages[0]["content"]).group(1)
        script = self.scripts.get(question, ["extracted_final_answer: x\ncorrect: yes"])
        item = script[min(self.calls[question], len(script) - 1)]
        self.calls[question] += 1
        if isinstance(item, dict):
            return judge_error(f"request failed: {item['raise']}")
        return item


def reward_config(case: dict, mode: str) -> RewardConfig:
    c = case["config"]
    source = "both" if c["use_content"] and c["use_reasoning"] else "reasoning" if c["use_reasoning"] else "content"
    combine = CombineConfig(mode=c["mode"], eta=c["eta"], group_normalize=c["normalize"], punish_invalid=c["punish_invalid"])
    if case["kind"] == "server":  # the server's own reward: (1 - eta) * outcome + eta * rubric, no group
        combine = CombineConfig(mode="both", eta=c["eta"], group_normalize=False, punish_invalid=c["punish_invalid"])
    return RewardConfig(
        mode=mode,
        judge=JudgeConfig(kind="llm", llm=LLMJudgeConfig(base_url="http://judge.invalid/v1", model="fixture")),
        rubric=RubricConfig(source=source),
        combine=combine,
    )


def request(sample: dict) -> RewardRequest:
    body = {k: sample[k] for k in ("label", "extra_reward_info", "response", "history", "status", "stop") if k in sample}
    return RewardRequest.model_validate(body)


def run_ours(case: dict, mode: str) -> dict:
    """Our result on a case, in the fixture's result layout."""
    samples = case["samples"]
    if case["kind"] == "combine":
        c = case["config"]
        parts = [ScoreParts(s["outcome"], s["correct"], s["rubric"]) for s in samples]
        g = combine_group(parts, CombineConfig(mode=c["mode"], eta=c["eta"], group_normalize=c["normalize"]),
                          longrlvr=samples[0]["dataset_name"] == "longrlvr", reference=mode == "reference")
        return {"samples": [{"reward": r} for r in g.rewards]}
    scripts = {s["extra_reward_info"].get("question", ""): s["judge"] for s in samples}
    judge = ScriptedLLMJudge(scripts, reference=mode == "reference")
    scorer = RewardScorer(reward_config(case, mode), judge=judge)
    requests = [request(s) for s in samples]

    async def go():
        if case["kind"] == "group":
            return (await scorer.score_group(requests)).samples
        evaluation = case["kind"] == "eval"
        return [await scorer.score(r, evaluation=evaluation) for r in requests]

    out = []
    for s, r in zip(samples, asyncio.run(go())):
        q = s["extra_reward_info"].get("question", "")
        out.append({
            "reward": r.reward, "outcome_reward": r.outcome_reward, "rubric_reward": r.rubric_reward,
            "invalid": not r.valid, "judge_calls": judge.calls[q], "judge_saw": judge.saw[q],
            "judge_error": r.judge_error is not None,
        })
    return {"samples": out}


# ------------------------------------------------------------------------------------------------ comparison


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def differences(case: dict, ours: dict, mode: str) -> list[str]:
    """Fields where our result differs from the original's (judge inputs compared stripped in default mode, whose
    judge reads the stripped content; call counts only in reference mode)."""
    original = case["original"]
    if "error" in original:
        return [f"original raised {original['error']}"]
    diffs = []
    for i, (o, u) in enumerate(zip(original["samples"], ours["samples"])):
        if u.get("judge_error") and not o.get("judge_error"):
            diffs.append(f"[{i}] judge_error")
        for key in ("reward", "outcome_reward", "rubric_reward", "invalid"):
            if key in o and not _same(o[key], u[key]):
                diffs.append(f"[{i}] {key}: original {o[key]!r}, ours {u[key]!r}")
        if "judge_saw" in o:
            norm = (lambda xs: sorted(set(xs))) if mode == "reference" else (lambda xs: sorted({x.strip() for x in xs}))
            if norm(o["judge_saw"]) != norm(u["judge_saw"]):
                diffs.append(f"[{i}] judge input: original {norm(o['judge_saw'])!r}, ours {norm(u['judge_saw'])!r}")
            if mode == "reference" and o["judge_calls"] != u["judge_calls"]:
                diffs.append(f"[{i}] judge calls: original {o['judge_calls']}, ours {u['judge_calls']}")
    return diffs


def expectation_failures(case: dict, ours: dict) -> list[str]:
    """For a documented deviation: where the reference mode does not give ``reference_expect``."""
    failures = []
    for key, values in case["reference_expect"].items():
        got = [s[key] for s in ours["samples"]]
        if len(got) != len(values) or not all(_same(g, v) for g, v in zip(got, values)):
            failures.append(f"{key}: expected {values!r}, got {got!r}")
    return failures


def agreement_table(cases: list[dict]) -> str:
    """Agreement with the original per class (a deviation counts as a disagreement), for both modes."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for case in cases:
        row = rows[case["class"]]
        row[0] += 1
        for j, mode in enumerate(MODES, start=1):
            row[j] += not differences(case, run_ours(case, mode), mode)
    lines = [f"{'class':<16} {'cases':>6} {'reference':>10} {'default':>10}"]
    total = [0, 0, 0]
    for cls, (n, ref, dflt) in sorted(rows.items()):
        lines.append(f"{cls:<16} {n:>6} {ref:>10} {dflt:>10}")
        total = [total[0] + n, total[1] + ref, total[2] + dflt]
    lines.append(f"{'all':<16} {total[0]:>6} {total[1]:>10} {total[2]:>10}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- tests


def test_fixture_is_present_small_and_covers_every_class():
    assert CASES, f"{FIXTURE} is missing: run scripts/dev/reference_reward_dump.py"
    assert FIXTURE.stat().st_size < 300_000
    classes = Counter(c["class"] for c in CASES)
    for cls in ("validity", "rubric_source", "combine", "judge_parsing", "evaluation", "crash", "fuzz-group", "fuzz-eval",
                "fuzz-server", "fuzz-combine"):
        assert classes[cls] >= 3, cls
    assert any("print_crash" in c["original"] or "error" in c["original"] for c in CASES)  # crashes were recorded


@pytest.mark.parametrize("case", [c for c in CASES if "deviation" not in c], ids=lambda c: c["id"])
def test_reference_mode_agrees_with_the_original(case):
    assert "error" not in case["original"], "a case where the original raises must be a documented deviation"
    assert differences(case, run_ours(case, "reference"), "reference") == []


@pytest.mark.parametrize("case", [c for c in CASES if "deviation" in c], ids=lambda c: c["id"])
def test_reference_mode_deviates_only_as_documented(case):
    ours = run_ours(case, "reference")
    assert expectation_failures(case, ours) == []
    # and it does differ from the original there (an error or a silent 0 is what is not reproduced)
    assert differences(case, ours, "reference")


@pytest.mark.parametrize("case", [c for c in CASES if not c["class"].startswith("fuzz")], ids=lambda c: c["id"])
def test_default_mode_differs_exactly_where_documented(case):
    diffs = differences(case, run_ours(case, "default"), "default")
    if case["default_differs"]:
        assert diffs, "documented as a default-mode difference, but default mode agrees"
    else:
        assert diffs == []


def test_every_difference_names_its_row_in_the_docs():
    docs = DOCS.read_text(encoding="utf-8")
    for case in CASES:
        if case["default_differs"] or "deviation" in case:
            assert f"`{case['doc']}`" in docs, (case["id"], case["doc"])


def test_surrogates_never_crash_any_path():
    """Lone surrogates in every text field, through both modes and the rule judge; the results encode as UTF-8."""
    bad = "Paris \ud800 France \udfff"
    base = {"label": "Paris \ud800", "extra_reward_info": {"question": "Q\ud800?", "rubrics": [bad, ["Lady \udc00", "Gaga"]]}}
    requests = [
        RewardRequest(**base, response=f"think {bad}</think>{bad} Answer: Paris \ud800<|im_end|>"),
        RewardRequest(**base, response=f"{bad}<|im_end|>"),
        RewardRequest(**base, history=[{"role": "user", "content": bad},
                                       {"role": "assistant", "content": f"{bad} **1805**", "reasoning_content": bad}]),
    ]
    for mode in MODES:
        for kind in ("rule", "f1"):
            scorer = RewardScorer(RewardConfig(mode=mode, judge=JudgeConfig(kind=kind)))
            group = asyncio.run(scorer.score_group(requests))
            json.dumps(group.model_dump(), ensure_ascii=False).encode("utf-8")
            assert group.samples[0].valid and group.samples[0].rubric_reward == pytest.approx(0.5)
            assert all("\ufffd" in m or m == "Gaga" for m in group.samples[0].matched_entities)
        scripts = {"Q\ufffd?": ["extracted_final_answer: Paris \ud800\ncorrect: yes"]}
        scorer = RewardScorer(RewardConfig(mode=mode), judge=ScriptedLLMJudge(scripts, reference=mode == "reference"))
        sample = asyncio.run(scorer.score(requests[0]))
        assert sample.correct and sample.extracted_answer == "Paris \ufffd"
        sample.model_dump_json()
