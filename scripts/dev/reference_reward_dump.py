"""Dev-time (not CI): run LongTraceRL's ORIGINAL reward code on adversarial cases and write the fixture that
tests/test_reward_reference.py checks our ``--reward-mode reference`` against.

    .venv/bin/python scripts/dev/reference_reward_dump.py                  # writes tests/fixtures/reference_reward/cases.jsonl
    .venv/bin/python scripts/dev/reference_reward_dump.py --check          # + agreement of both our modes, per class
    .venv/bin/python scripts/dev/reference_reward_dump.py --fuzz 12000 --check --no-write   # a large random run

The original functions are read from the mirror of github.com/THU-KEG/LongTraceRL with ``git show`` at run time,
written to a temp dir and executed from there; none of their code is copied into this repository. What runs is the
training path of the paper's Qwen3 recipe (slime/configs/source_config_qwen3_rubric.json): slime's
``generate_and_rm_group`` -> ``generate_and_rm`` -> ``rollout_skip_illform.generate`` -> ``Qwen3MessageProcessor``
-> ``rm_hub.async_rm`` -> ``remote_rm`` -> the reward server's ``/evaluate`` (launch_server.py) -> the group
combination, plus the server alone (history mode) and ``generate_and_rm(evaluation=True)``.

Stubbed (imports the original reaches that are absent here or need a network or a GPU; none of its logic):
  openai.AsyncOpenAI   replies scripted per sample; it records the prompt, then encodes the body as httpx >= 0.28
                       does (UTF-8, so a lone surrogate fails there as it would in production)
  slime.utils.http_utils.post   sglang's /generate: the scripted text and finish reason
  aiohttp session of remote_rm  calls launch_server.evaluate in-process with the JSON round-tripped body
  tokenizer loading, slime's trace decorators, ray (slime.utils.misc's other imports), asyncio.sleep (no waiting)
  generate_and_rm, for the "combine" cases only: the group combination fed given (outcome, rubric) values, since the
                       original's own judge only gives 0 or 1 (fractional outcomes come from our f1 judge)
Only the functions named in ``_EXTRACT`` are taken from rm_hub/__init__.py, sglang_rollout.py and misc.py (their
modules import sglang_router, ray, math graders ...); the other files run whole. The fixture folder's README.md, with
the commit and the paths, is written alongside.

Each case runs twice: once with a strict UTF-8 stdout (as a log file under ray), where the original's prints of a
lone surrogate raise (recorded as ``print_crash``), and once with a lenient stdout, whose values are recorded.
"""
from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import copy
import importlib
import inspect
import io
import json
import logging
import random
import re
import subprocess
import sys
import tempfile
import types
import uuid
from argparse import Namespace
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIRROR = "/work/.mirror/THU-KEG+LongTraceRL/repo"
DEFAULT_OUT = ROOT / "tests/fixtures/reference_reward/cases.jsonl"

# Files run whole, and the functions taken out of the modules that cannot be imported here.
_WHOLE = {
    "launch_server.py": "launch_server.py",
    "slime/slime/utils/types.py": "slime/utils/types.py",
    "slime/slime/rollout/message_processor_hub/__init__.py": "slime/rollout/message_processor_hub/__init__.py",
    "slime/slime/rollout/message_processor_hub/base_message_processor.py": "slime/rollout/message_processor_hub/base_message_processor.py",
    "slime/slime/rollout/message_processor_hub/qwen3_message_processor.py": "slime/rollout/message_processor_hub/qwen3_message_processor.py",
    "slime/slime/rollout/rollout_skip_illform.py": "slime/rollout/rollout_skip_illform.py",
}
_EXTRACT = {
    "slime/slime/utils/misc.py": ("load_function", "SingletonMeta"),
    "slime/slime/rollout/rm_hub/__init__.py": ("remote_rm", "async_rm", "batched_async_rm"),
    "slime/slime/rollout/sglang_rollout.py": ("GenerateState", "generate_and_rm", "generate_and_rm_group"),
}

RUBRICS = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]
LABEL = "Moroccan-Swedish"
YES = f"extracted_final_answer: {LABEL}\nreasoning: the same nationality.\ncorrect: yes"
NO = "extracted_final_answer: Swedish\nreasoning: only part of it.\ncorrect: no"
GOOD = "I recall Lady Gaga and RedOne.\n</think>\n\nThe Fame and Poker Face. Answer: Moroccan-Swedish<|im_end|>"
PAPER = dict(eta=0.3, normalize=True, mode="positive_only", use_content=True, use_reasoning=False, punish_invalid=True)


# ------------------------------------------------------------------------------------------- the original's code


def _git_show(mirror: str, commit: str, path: str) -> str:
    return subprocess.run(["git", "-C", mirror, "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _extract(source: str, names: tuple[str, ...]) -> str:
    """The top-level definitions ``names`` (with their decorators), verbatim, in file order."""
    lines = source.splitlines(keepends=True)
    found, out = set(), []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            out.append("".join(lines[start - 1: node.end_lineno]) + "\n")
            found.add(node.name)
    missing = set(names) - found
    if missing:
        raise SystemExit(f"not found in the original: {', '.join(sorted(missing))}")
    return "\n".join(out)


class Harness:
    """The original reward code, loaded from the mirror, with the stubs described in the module docstring."""

    def __init__(self, mirror: str, commit: str):
        self.commit = subprocess.run(["git", "-C", mirror, "rev-parse", commit], check=True, capture_output=True,
                                     text=True).stdout.strip()
        self.tmp = tempfile.TemporaryDirectory(prefix="longtracerl_original_")
        root = Path(self.tmp.name)
        for pkg in ("slime", "slime/utils", "slime/rollout"):
            (root / pkg).mkdir(parents=True, exist_ok=True)
            (root / pkg / "__init__.py").write_text("")
        for src, dst in _WHOLE.items():
            (root / dst).parent.mkdir(parents=True, exist_ok=True)
            (root / dst).write_text(_git_show(mirror, self.commit, src))
        sources = {src: _extract(_git_show(mirror, self.commit, src), names) for src, names in _EXTRACT.items()}
        sys.path.insert(0, str(root))

        self.sglang: dict[int, tuple[str, str]] = {}  # prompt index -> (text, finish reason)
        self.scripts: dict[str, list] = {}  # question -> judge replies
        self.judge_log: dict[str, list[str]] = defaultdict(list)  # question -> the response text of each call
        self._stub_missing_imports()

        misc = self._module("slime.utils.misc", importlib=importlib)
        exec(sources["slime/slime/utils/misc.py"], misc.__dict__)
        http_utils = self._module("slime.utils.http_utils", post=self._sglang_post, get=None,
                                  is_port_available=lambda *a, **k: True)
        del http_utils
        from slime.utils.types import Sample  # the real class

        self.Sample = Sample
        rm_hub = self._module("slime.rollout.rm_hub", asyncio=asyncio, logging=logging, random=random,
                              logger=logging.getLogger("rm_hub"), load_function=misc.load_function, Sample=Sample,
                              _get_shared_session=lambda: _RewardSession(self))
        exec(sources["slime/slime/rollout/rm_hub/__init__.py"], rm_hub.__dict__)
        self.rm_hub = rm_hub
        namespace = dict(
            asyncio=asyncio, inspect=inspect, uuid=uuid, contextmanager=contextmanager, Namespace=Namespace, Any=Any,
            Sample=Sample, load_function=misc.load_function, SingletonMeta=misc.SingletonMeta,
            load_tokenizer=lambda *a, **k: _Tokenizer(), load_processor=lambda *a, **k: None,
            trace_function=_no_trace_function, trace_span=_no_trace_span, async_rm=rm_hub.async_rm,
            batched_async_rm=rm_hub.batched_async_rm, post=self._sglang_post, logger=logging.getLogger("rollout"),
        )
        try:
            import numpy as np

            namespace["np"] = np
        except ImportError:
            pass
        rollout = self._module("slime.rollout.sglang_rollout", **namespace)
        exec(sources["slime/slime/rollout/sglang_rollout.py"], rollout.__dict__)
        self.rollout = rollout
        # The group combination alone, fed (outcome, rubric) pairs: the same function text with generate_and_rm
        # resolved to a stub that fills in what the reward step would (kind "combine").
        self.combine_only = types.ModuleType("original_group_combination")
        self.combine_only.__dict__.update(namespace, generate_and_rm=_given_rewards, GenerateState=rollout.GenerateState)
        exec(_extract(sources["slime/slime/rollout/sglang_rollout.py"], ("generate_and_rm_group",)),
             self.combine_only.__dict__)
        from slime.rollout.message_processor_hub.qwen3_message_processor import Qwen3MessageProcessor

        self.Qwen3MessageProcessor = Qwen3MessageProcessor
        import launch_server

        self.server = launch_server
        self.server.reward_model = launch_server.GPTModel("http://judge.invalid/v1", "key", "judge", False)

    @staticmethod
    def _module(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    def _stub_missing_imports(self) -> None:
        harness = self

        class _Completions:
            async def create(self, messages, model=None, extra_body=None, **kwargs):
                prompt = messages[0]["content"]
                question = re.search(r"\[question\]: (Q\S+)", prompt).group(1)
                start = prompt.index("\n\n[response]: ") + len("\n\n[response]: ")
                end = prompt.rindex("\n\nYour judgement must be in the format")
                harness.judge_log[question].append(prompt[start:end])
                json.dumps({"messages": messages, "model": model}, ensure_ascii=False).encode("utf-8")  # as httpx
                script = harness.scripts[question]
                item = script[min(len(harness.judge_log[question]) - 1, len(script) - 1)]
                if isinstance(item, dict):
                    raise ConnectionError(item["raise"])
                return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=item))])

        class AsyncOpenAI:
            def __init__(self, *args, **kwargs):
                self.chat = SimpleNamespace(completions=_Completions())

        openai = types.ModuleType("openai")
        openai.AsyncOpenAI, openai.APIStatusError = AsyncOpenAI, type("APIStatusError", (Exception,), {})
        sys.modules["openai"] = openai  # always: the real client would try the network
        try:
            import torch  # noqa: F401  (slime/utils/types.py imports it for ParamInfo annotations)
        except ImportError:
            torch = types.ModuleType("torch")
            torch.dtype, torch.Size = type("dtype", (), {}), tuple
            sys.modules["torch"] = torch

    async def _sglang_post(self, url, payload, **kwargs):
        text, finish = self.sglang[payload["input_ids"][0]]
        return {"text": text, "meta_info": {"finish_reason": {"type": finish}, "output_token_logprobs": [[-0.5, 11]]}}

    # ------------------------------------------------------------------------------------------- one case

    def _args(self, c: dict) -> Namespace:
        return Namespace(
            rubric_reward_ratio=c["eta"], normalize_rubric_reward=c["normalize"],
            rubric_only_positive=c["mode"] == "positive_only", rubric_only_negative=c["mode"] == "negative_only",
            rubric_use_content=c["use_content"], rubric_use_reasoning_content=c["use_reasoning"],
            no_punish_for_illform=not c["punish_invalid"],
            partial_rollout=False, mask_offpolicy_in_partial_rollout=False, group_rm=False,
            custom_generate_function_path="slime.rollout.rollout_skip_illform.generate", custom_rm_path=None,
            rm_url=None, rm_type=None, rollout_max_context_len=1 << 20, rollout_max_response_len=1 << 16,
            eval_max_context_len=1 << 20, eval_max_response_len=1 << 16, sglang_speculative_algorithm=None,
            sglang_enable_deterministic_inference=False, ci_test=False, hf_checkpoint=None,
            sglang_server_concurrency=64, rollout_num_gpus=1, rollout_num_gpus_per_engine=1, rollout_temperature=1.0,
            rollout_top_p=1.0, rollout_top_k=-1, rollout_stop=None, rollout_stop_token_ids=None,
            rollout_skip_special_tokens=False, sglang_dp_size=1, n_samples_per_prompt=8,
            sglang_router_ip="127.0.0.1", sglang_router_port=1,
        )

    def _sample(self, case_id: str, i: int, s: dict, config: dict):
        index = len(self.sglang)
        text = s["response"]
        if s.get("stop") and not text.endswith(s["stop"]):
            text += s["stop"]  # SGLang with no_stop_trim and special tokens kept, as slime's GenerateState asks
        finish = {"completed": "stop", "truncated": "length", "aborted": "abort"}[s.get("status", "completed")]
        self.sglang[index] = (text, finish)
        self.scripts[question_key(case_id, i)] = s["judge"]
        info = copy.deepcopy(s["extra_reward_info"])
        return self.Sample(
            prompt=f"prompt:{index}", label=s["label"], status=self.Sample.Status.PENDING,
            message_processor=self.Qwen3MessageProcessor(_Tokenizer()),
            metadata={
                "input_messages": [{"role": "user", "content": "Documents: ... Question: ..."}],
                "extra_reward_info": info,
                "reward_model_info": {"function": "remote_rm", "kwargs": {
                    "remote_url": "http://reward.invalid/evaluate", "input_keys": ["label", "extra_reward_info", "history"]}},
            },
        )

    def _sample_result(self, sample, case_id: str, i: int) -> dict:
        meta = sample.metadata
        invalid = (sample.status != self.Sample.Status.COMPLETED or bool(meta.get("ill_formed"))
                   or bool(meta.get("task_unfinished")))
        return {
            "reward": sample.reward, "outcome_reward": meta.get("outcome_reward"),
            "rubric_reward": meta.get("rubric_reward"), "invalid": invalid,
            **self._judge_record(case_id, i),
        }

    def _judge_record(self, case_id: str, i: int) -> dict:
        seen = self.judge_log[question_key(case_id, i)]
        return {"judge_calls": len(seen), "judge_saw": sorted(set(seen))}

    async def _run(self, case: dict) -> dict:
        kind, cid, config = case["kind"], case["id"], case["config"]
        args = self._args(config)
        samples_spec = case["samples"]
        if kind in ("group", "eval"):
            samples = [self._sample(cid, i, s, config) for i, s in enumerate(samples_spec)]
            params = {"max_new_tokens": 1 << 16}
            if kind == "group":
                samples = await self.rollout.generate_and_rm_group(args, samples, params, evaluation=False)
            else:
                samples = [await self.rollout.generate_and_rm(args, s, dict(params), evaluation=True) for s in samples]
            return {"samples": [self._sample_result(s, cid, i) for i, s in enumerate(samples)]}
        if kind == "server":
            out = []
            for i, s in enumerate(samples_spec):
                self.scripts[question_key(cid, i)] = s["judge"]
                body = {"label": s["label"], "extra_reward_info": s["extra_reward_info"], "history": s["history"]}
                try:
                    result = await self.server.evaluate(_Request(body))
                except Exception as e:  # HTTPException(500) around the real error, which it names
                    return {"error": f"{type(e).__name__}: {getattr(e, 'detail', e)}"[:200]}
                out.append({**{k: result[k] for k in ("reward", "outcome_reward", "rubric_reward")},
                            **self._judge_record(cid, i)})
            return {"samples": out}
        if kind == "combine":
            samples = []
            for s in samples_spec:
                sample = self.Sample(label=LABEL, status=self.Sample.Status.COMPLETED, metadata={
                    "extra_reward_info": {"dataset_name": s["dataset_name"]},
                    "given": (s["outcome"], s["rubric"])})
                samples.append(sample)
            samples = await self.combine_only.generate_and_rm_group(args, samples, {}, evaluation=False)
            return {"samples": [{"reward": s.reward} for s in samples]}
        raise ValueError(f"unknown kind {kind!r}")

    def run(self, case: dict) -> dict:
        """The original's result on one case: values from a lenient stdout, crashes under a strict one."""
        result: dict = {}
        for strict in (True, False):
            self.judge_log.clear()
            stream = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict") if strict else io.StringIO())
            try:
                with contextlib.redirect_stdout(stream), _no_waiting():
                    out = asyncio.run(self._run(case))
            except Exception as e:
                out = {"error": f"{type(e).__name__}: {e}"[:200]}
            if strict:
                strict_error = out.get("error")
            else:
                result = out
        if strict_error and not result.get("error"):
            result["print_crash"] = strict_error
        return result


_REAL_SLEEP = asyncio.sleep


@contextmanager
def _no_waiting():
    """The original's retry back-offs (the judge client's 1 s, remote_rm's up to 30 s) without the wait."""

    async def sleep(delay, result=None):
        return await _REAL_SLEEP(0, result)

    asyncio.sleep = sleep
    try:
        yield
    finally:
        asyncio.sleep = _REAL_SLEEP


class _Tokenizer:
    def encode(self, text, add_special_tokens=False):
        return [int(text.split(":")[1])]


def _no_trace_function(*args, **kwargs):
    return lambda fn: fn


@contextmanager
def _no_trace_span(*args, **kwargs):
    yield SimpleNamespace(update=lambda *a, **k: None)


async def _given_rewards(args, sample, sampling_params, evaluation=False):
    """Stands in for generate_and_rm when only the group combination runs: what its reward step stores."""
    outcome, rubric = sample.metadata.pop("given")
    sample.reward = (1 - args.rubric_reward_ratio) * outcome + args.rubric_reward_ratio * rubric
    sample.metadata.update(outcome_reward=outcome, rubric_reward=rubric, ill_formed=False, task_unfinished=False)
    return sample


class _Request:
    def __init__(self, body):
        self._body = json.loads(json.dumps(body))  # what FastAPI decodes from the wire

    async def json(self):
        return self._body


class _RewardSession:
    """remote_rm's aiohttp session: posts to the original server in-process."""

    def __init__(self, harness: Harness):
        self.harness = harness

    def post(self, url, json=None):
        return _RewardResponse(self.harness, json)


class _RewardResponse:
    def __init__(self, harness, payload):
        self.harness, self.payload, self.error, self.result = harness, payload, None, None

    async def __aenter__(self):
        try:
            self.result = await self.harness.server.evaluate(_Request(self.payload))
        except Exception as e:
            self.error = e
        return self

    async def __aexit__(self, *exc):
        return False

    def raise_for_status(self):
        if self.error is not None:
            raise RuntimeError(f"HTTP 500 from the reward server: {getattr(self.error, 'detail', self.error)}")

    async def json(self):
        return json.loads(json.dumps(self.result))


# --------------------------------------------------------------------------------------------------- inputs


def question_key(case_id: str, i: int) -> str:
    return f"Q{case_id}.{i}"


DROP = "__drop__"  # an info value that removes the key


def resolve(c: dict) -> dict:
    """Fill in the defaults, so the fixture holds every input as sent: the full config and, per sample, the label,
    the judge's scripted replies and the extra_reward_info (with the rubric flags slime fills in from its args; the
    ratio only where the data or, in history mode, the request carries one)."""
    cfg = c["config"] = {**PAPER, **c["config"]}
    for i, s in enumerate(c["samples"]):
        if c["kind"] == "combine":
            s.setdefault("dataset_name", "longqa")
            continue
        s.setdefault("label", LABEL)
        s.setdefault("judge", [YES])
        info = {"question": question_key(c["id"], i), "rubrics": s.pop("rubrics", RUBRICS),
                "dataset_name": s.pop("dataset_name", "longqa"), "rubric_use_content": cfg["use_content"],
                "rubric_use_reasoning_content": cfg["use_reasoning"]}
        if c["kind"] == "server":
            info["rubric_reward_ratio"] = cfg["eta"]
        info.update(s.pop("info", {}))
        s["extra_reward_info"] = {k: v for k, v in info.items() if v != DROP}
    return c


# ------------------------------------------------------------------------------------------------ the cases


def case(cid, cls, kind, samples, note, default_differs=False, config=None, deviation=None, reference_expect=None):
    """``deviation``: the docs/reward.md key of a documented difference of the reference mode (the original crashes
    or zeroes silently there); ``reference_expect`` then holds what the reference mode gives instead."""
    c = {"id": cid, "class": cls, "kind": kind, "note": note, "config": config or {}, "samples": samples,
         "default_differs": default_differs}
    if deviation:
        c["deviation"], c["reference_expect"] = deviation, reference_expect
    return c


def S(response, **kw):  # a raw-response sample
    return {"response": response, **kw}


def H(history, **kw):  # a history-mode sample; "stop" is for our default mode (the original reads no such field)
    return {"history": history, "stop": "<|im_end|>", **kw}


def A(content, reasoning=None):
    m = {"role": "assistant", "content": content}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    return m


USER = {"role": "user", "content": "Documents: ... Question: ..."}


# The docs/reward.md row ("Reference mode") each default-mode difference is listed under; deviations use their own key.
DOC_KEYS = {
    "v-ws-reasoning": "validity.blank_sides", "v-ws-content": "validity.blank_sides",
    "v-think-open-reasoning": "validity.leading_think", "v-think-in-content": "validity.think_in_content",
    "v-two-think-ends-unpunished": "validity.last_think_end",
    "v-no-think-end-unpunished": "validity.unfinished_unpunished", "v-no-stop-unpunished": "validity.unfinished_unpunished",
    "v-truncated-unpunished": "validity.unfinished_unpunished", "v-trailing-ws-after-stop": "validity.trailing_whitespace",
    "r-both-off": "rubric.both_off", "r-both-off-empty-entity": "rubric.both_off",
    "r-history-think-blank": "history.think_split", "r-history-think-split": "history.think_split",
    "r-ratio-zero": "rubric.eta_zero", "e-good": "rubric.eta_zero", "r-ratio-one": "rubric.eta_one",
    "c-fractional-positive": "combine.fractional", "c-fractional-negative": "combine.fractional",
    "j-first-decision": "judge.first_decision", "j-think-decision": "judge.think_block",
    "j-no-boundary-suffix": "judge.word_boundary", "j-nope": "judge.word_boundary",
    "j-upper-without-extracted": "judge.case_after_retries",
    "e-ill-formed": "eval.invalid_scored", "e-data-ratio": "eval.data_ratio",
}


def hand_cases() -> list[dict]:
    cases = _hand_cases()
    for c in cases:
        key = c.get("deviation") or DOC_KEYS.get(c["id"])
        if key:
            c["doc"] = key
        assert bool(key) == (c["default_differs"] or "deviation" in c), c["id"]
    return cases


def _hand_cases() -> list[dict]:
    cs = []
    # --- validity: slime's Qwen3MessageProcessor -----------------------------------------------------------------
    V = "validity"
    cs += [
        case("v-good", V, "group", [S(GOOD), S("Nothing.\n</think>\n\nAnswer: Swedish<|im_end|>", judge=[NO])],
             "well-formed group: one right answer naming entities, one wrong"),
        case("v-ws-reasoning", V, "group", [S(GOOD), S(" \n </think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "whitespace-only reasoning is valid there (only an empty one is missing)", default_differs=True),
        case("v-newline-reasoning", V, "group", [S(GOOD), S("\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "reasoning of a single newline: its trailing newline is removed, then it is empty: invalid in both"),
        case("v-ws-content", V, "group", [S(GOOD), S("Lady Gaga, RedOne.\n</think>\n\n  \t <|im_end|>")],
             "whitespace-only content is valid there and sent to the judge (scripted yes)", default_differs=True),
        case("v-empty-content", V, "group", [S(GOOD), S("Lady Gaga.\n</think>\n\n<|im_end|>")],
             "content of exactly the blank line after </think>: empty, invalid in both"),
        case("v-think-open-reasoning", V, "group",
             [S("<think>\nThe Fame is by Lady Gaga.\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>",
                rubrics=["Think", "Lady Gaga"]),
              S("Lady Gaga?\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>", rubrics=["Think", "Lady Gaga"])],
             "a leading <think> stays in the original's reasoning, so an entity 'Think' is found there",
             default_differs=True, config={"use_content": False, "use_reasoning": True}),
        case("v-think-in-content", V, "group", [S(GOOD), S("r\n</think>\n\nI <think> it is Lady Gaga's. Answer: Moroccan-Swedish<|im_end|>")],
             "<think> inside the final content passes the Qwen3 check (only chat tokens are looked for)",
             default_differs=True),
        case("v-special-in-content", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga<|im_start|>Answer: Moroccan-Swedish<|im_end|>")],
             "a chat token inside the content: invalid in both"),
        case("v-two-think-ends", V, "group", [S(GOOD), S("a\n</think>RedOne\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>")],
             "two </think>: invalid in both"),
        case("v-two-think-ends-unpunished", V, "group",
             [S(GOOD), S("a\n</think>RedOne\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>")],
             "two </think>, invalid responses scored: the original splits at the last one (RedOne is reasoning), "
             "ours at the first", default_differs=True, config={"punish_invalid": False}),
        case("v-no-think-end-unpunished", V, "group",
             [S(GOOD), S("Lady Gaga, RedOne. Answer: Moroccan-Swedish<|im_end|>")],
             "no </think>, invalid responses scored: the original keeps no content (score 0); ours judges the text",
             default_differs=True, config={"punish_invalid": False}),
        case("v-trailing-ws-after-stop", V, "group", [S(GOOD), S("Lady Gaga.\n</think>\n\nThe Fame. Answer: Moroccan-Swedish<|im_end|>\n")],
             "a newline after <|im_end|>: the original finds no stop token (score 0); ours strips it",
             default_differs=True),
        case("v-endoftext", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|endoftext|>")],
             "<|endoftext|> as the stop: invalid in both"),
        case("v-endoftext-unpunished", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|endoftext|>")],
             "<|endoftext|> with invalid responses scored: scored in both", config={"punish_invalid": False}),
        case("v-stop-field", V, "group", [S("Lady Gaga.\n</think>\n\nRedOne. Answer: Moroccan-Swedish", stop="<|im_end|>"), S(GOOD)],
             "the stop token given apart (the engine stripped it)"),
        case("v-stop-other", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish", stop="</s>")],
             "a stop token that is not Qwen3's: invalid in both"),
        case("v-no-stop", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish")],
             "no stop token: invalid in both"),
        case("v-no-stop-unpunished", V, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish")],
             "no stop token, invalid responses scored: the original keeps no content (0); ours judges the content",
             default_differs=True, config={"punish_invalid": False}),
        case("v-truncated", V, "group", [S(GOOD), S("Lady Gaga and RedOne and", status="truncated")],
             "truncated: 0 in both"),
        case("v-truncated-unpunished", V, "group", [S(GOOD), S("Lady Gaga.\n</think>\n\nAnswer: Moroccan-Swedish", status="truncated")],
             "truncated, invalid responses scored: the original keeps no content (0); ours judges it",
             default_differs=True, config={"punish_invalid": False}),
        case("v-extra-newlines", V, "group", [S(GOOD), S("Lady Gaga\n\n\n</think>\n\n\n\nAnswer: Moroccan-Swedish  \n<|im_end|>")],
             "extra blank lines: the original removes one newline before and two after </think> only; the judge "
             "sees '\\n\\nAnswer: ...  \\n' there, ours the stripped text"),
        case("v-empty-response", V, "group", [S(GOOD), S("<|im_end|>")], "an empty response: invalid in both"),
        case("v-unicode", V, "group", [S("Beyoncé — Lady Gaga’s “The Fame”\n</think>\n\nAnswer: Moroccan‑Swedish ✓<|im_end|>"), S(GOOD)],
             "non-ASCII text"),
    ]
    # --- rubric text source ----------------------------------------------------------------------------------------
    R = "rubric_source"
    cs += [
        case("r-both-off", R, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "rubric_use_content and rubric_use_reasoning_content both off: the original reads nothing (rubric 0); "
             "ours reads the configured source (content)", default_differs=True,
             config={"use_content": False, "use_reasoning": False}),
        case("r-both-off-empty-entity", R, "group", [S(GOOD, rubrics=["—", "The Fame"])],
             "both off with an entity that normalises to nothing: '' in '' is True, so it counts as found",
             default_differs=True, config={"use_content": False, "use_reasoning": False},
             ),
        case("r-reasoning", R, "group", [S(GOOD), S("Poker Face\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "reasoning only", config={"use_content": False, "use_reasoning": True}),
        case("r-both", R, "group", [S(GOOD), S("Poker Face\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "reasoning and content", config={"use_reasoning": True}),
        case("r-boundary", R, "group", [S("I recall Lady\n</think>\n\nGaga. Answer: Moroccan-Swedish<|im_end|>")],
             "an entity across the reasoning/content boundary counts in both (parts joined by a blank line)",
             config={"use_reasoning": True}),
        case("r-multiturn-order", R, "server",
             [H([USER, A("Gaga", "I recall Lady"), {"role": "tool", "content": "results"}, A("Fame. Answer: Moroccan-Swedish", "The")])],
             "multi-turn history is read R1 C1 R2 C2 (ours read R1 R2 C1 C2 before this change)",
             config={"use_reasoning": True}),
        case("r-multiturn-content", R, "server",
             [H([USER, A("calling a tool about Poker Face", "x"), A("Lady Gaga. Answer: Moroccan-Swedish", "y")])],
             "every assistant turn's content is read"),
        case("r-multiturn-missing-sides", R, "server",
             [H([USER, A("RedOne"), A("Lady Gaga. Answer: Moroccan-Swedish", "The Fame")])],
             "turns without reasoning_content", config={"use_reasoning": True}),
        case("r-history-last-not-assistant", R, "server", [H([USER, A("Lady Gaga"), {"role": "tool", "content": "x"}])],
             "last message not the assistant's: 0 in both"),
        case("r-history-no-content", R, "server", [H([USER, {"role": "assistant", "reasoning_content": "Lady Gaga"}])],
             "last assistant message without content: 0 in both"),
        case("r-history-think-blank", R, "server", [H([USER, A("Lady Gaga\n</think>\n  ")])],
             "history content ending in '</think>' and blanks: no answer, outcome 0 without a judge call; the rubric "
             "reads the whole content there, ours splits a final message without reasoning_content (empty: invalid)",
             default_differs=True),
        case("r-history-think-split", R, "server", [H([USER, A("Poker Face</think>\n\nAnswer: Moroccan-Swedish")])],
             "history content with </think>: the judge reads the text after it, the rubric the whole content there; "
             "ours reads the part before as reasoning", default_differs=True),
        case("r-empty-rubric", R, "group", [S(GOOD, rubrics=[])], "no rubric items: rubric 0"),
        case("r-normalisation", R, "group",
             [S("x\n</think>\n\nLADY-GAGA's the_fame Beyoncé POKER FACE. Answer: Moroccan-Swedish<|im_end|>",
                rubrics=["Lady Gaga", "The Fame", "Beyoncé", "poker   face", "the_fame"])],
             "the reference normalisation (underscores kept, accents are separators)"),
        case("r-ratio-zero", R, "group", [S(GOOD), S("r\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>")],
             "eta = 0: the original does not compute the rubric (reported 0); ours reports it", default_differs=True,
             config={"eta": 0.0}),
        case("r-ratio-one", R, "group", [S(GOOD), S("r\n</think>\n\nLady Gaga. Answer: Moroccan-Swedish<|im_end|>")],
             "eta = 1: the original does not ask the judge (outcome 0, so positive-only rewards are all 0)",
             default_differs=True, config={"eta": 1.0}),
    ]
    # --- group combination ---------------------------------------------------------------------------------------
    C = "combine"

    def P(outcome, rubric, correct=None, **kw):
        return {"outcome": outcome, "rubric": rubric, "correct": outcome >= 0.5 if correct is None else correct, **kw}

    cs += [
        case("c-binary", C, "combine", [P(1, 0.8), P(1, 0.4), P(0, 1.0), P(0, 0.0)], "binary outcomes, paper recipe"),
        case("c-fractional-positive", C, "combine", [P(0.4, 0.6), P(0.8, 0.3), P(0.0, 0.9)],
             "fractional outcomes (f1 judge): the original pays the rubric to any outcome != 0; ours only to correct ones",
             default_differs=True),
        case("c-fractional-negative", C, "combine", [P(0.3, 0.6), P(1.0, 0.3), P(0.0, 0.9)],
             "negative-only with a fractional wrong outcome: the original keeps the outcome (> 0); ours pays eta*r_hat",
             default_differs=True, config={"mode": "negative_only"}),
        case("c-fractional-both", C, "combine", [P(0.3, 0.6), P(0.7, 0.3)], "fractional outcomes, both: no branch",
             config={"mode": "both"}),
        case("c-negative-binary", C, "combine", [P(1, 0.6), P(0, 0.3), P(0, 0.0)], "negative-only, binary",
             config={"mode": "negative_only"}),
        case("c-no-normalise", C, "combine", [P(1, 0.6), P(1, 0.3), P(0, 0.9)], "normalisation off",
             config={"normalize": False}),
        case("c-max-zero", C, "combine", [P(1, 0.0), P(0, 0.0)], "group rubric maximum 0"),
        case("c-eta", C, "combine", [P(1, 0.5), P(1, 1.0)], "another eta", config={"eta": 0.6}),
        case("c-longrlvr", C, "combine", [P(1, 0.5, dataset_name="longrlvr"), P(0, 0.8, dataset_name="longrlvr")],
             "the LongRLVR formula"),
        case("c-longrlvr-fractional", C, "combine", [P(0.5, 0.5, dataset_name="longrlvr"), P(0.2, 1.0, dataset_name="longrlvr")],
             "the LongRLVR formula with fractional outcomes"),
        case("c-group-pipeline", C, "group",
             [S(GOOD), S("Lady Gaga\n</think>\n\nPoker Face. Answer: Moroccan-Swedish<|im_end|>"),
              S("Nothing\n</think>\n\nRedOne, Just Dance. Answer: Swedish<|im_end|>", judge=[NO]),
              S("Lady Gaga", status="truncated")],
             "the whole pipeline on a mixed group"),
        case("c-group-negative", C, "group",
             [S(GOOD), S("Nothing\n</think>\n\nRedOne, Just Dance. Answer: Swedish<|im_end|>", judge=[NO])],
             "negative-only through the pipeline", config={"mode": "negative_only"}),
    ]
    # --- judge reply parsing (outcome only: eta 0) ---------------------------------------------------------------
    J = "judge_parsing"
    one = [USER, A("Answer: Moroccan-Swedish", "thinking")]  # no rubric entity: eta 0 leaves the rubric 0 in both
    jc = {"eta": 0.0}

    def judge_case(cid, replies, note, default_differs=False, **kw):
        return case(cid, J, "server", [H(one, judge=replies)], note, default_differs, config=jc, **kw)

    cs += [
        judge_case("j-plain-yes", [YES], "the requested format"),
        judge_case("j-plain-no", [NO], "the requested format, no"),
        judge_case("j-bold", [f"**extracted_final_answer:** {LABEL}\n**reasoning:** ok\n**correct:** yes"],
                   "markdown bold around the keys: 'correct:** yes' has stars after the colon, no decision there "
                   "(silent 0); a judge error in reference mode, yes in default mode", default_differs=True,
                   deviation="judge.no_decision", reference_expect={"judge_error": [True]}),
        judge_case("j-bold-value", [f"extracted_final_answer: {LABEL}\n**Correct**: **yes**"],
                   "bold around the value: no decision there after 3 attempts (silent 0); a judge error in reference mode",
                   default_differs=True, deviation="judge.no_decision", reference_expect={"judge_error": [True]}),
        judge_case("j-first-decision", [f"extracted_final_answer: {LABEL}\ncorrect: yes\n...on reflection\ncorrect: no"],
                   "two decisions: the original takes the first, ours the last", default_differs=True),
        judge_case("j-think-decision", [f"<think>correct: no?</think>\nextracted_final_answer: {LABEL}\ncorrect: yes"],
                   "a decision inside <think>: the original reads it (first), ours skips the block", default_differs=True),
        judge_case("j-no-boundary-incorrect", [f"extracted_final_answer: {LABEL}\nincorrect: yes"],
                   "'incorrect: yes' contains 'correct: yes' (no word boundary): yes in both"),
        judge_case("j-no-boundary-suffix", [f"extracted_final_answer: {LABEL}\ncorrect: yesterday's answer matches"],
                   "'correct: yesterday' reads as yes there; ours needs a whole word (no decision -> error)",
                   default_differs=True),
        judge_case("j-nope", ["extracted_final_answer: Oslo\ncorrect: nope"],
                   "'correct: nope' reads as no there; ours needs a whole word (no decision -> error)", default_differs=True),
        judge_case("j-upper-with-extracted", [f"extracted_final_answer: {LABEL}\nCORRECT: YES"],
                   "upper case with an extracted answer: lower-cased, yes"),
        judge_case("j-upper-without-extracted", ["CORRECT: YES"],
                   "upper case without an extracted answer: asked 3 times, then 'YES' != 'yes': 0 there",
                   default_differs=True),
        judge_case("j-lower-without-extracted", ["correct: yes"],
                   "no extracted answer: asked 3 times, then the lower-case yes counts"),
        judge_case("j-retry-then-good", ["I cannot tell.", YES], "an unparseable first reply, then a good one"),
        judge_case("j-no-decision", ["extracted_final_answer: Oslo\nreasoning: unsure."],
                   "no decision in any of the 3 replies: the original scores 0; a judge error in both our modes",
                   default_differs=True, deviation="judge.no_decision", reference_expect={"judge_error": [True]}),
        judge_case("j-transport-failure", [{"raise": "connection refused"}],
                   "every request fails: the original scores 0 after 9 calls; a judge error in both our modes",
                   default_differs=True, deviation="judge.request_failed", reference_expect={"judge_error": [True]}),
        judge_case("j-fullwidth-colon", [f"extracted_final_answer: {LABEL}\ncorrect：yes"],
                   "a full-width colon: no decision there (silent 0), yes in default mode", default_differs=True,
                   deviation="judge.no_decision", reference_expect={"judge_error": [True]}),
        judge_case("j-spaces", [f"extracted_final_answer : {LABEL}\ncorrect : yes"], "spaces before the colons"),
        judge_case("j-extracted-next-line", ["extracted_final_answer:\ncorrect: yes"],
                   "the extracted answer's pattern runs over the line break: it reads 'correct: yes' as the answer"),
        judge_case("j-three-stars", [f"extracted_final_answer: {LABEL}\ncorrect***: yes\ncorrect: no"],
                   "three stars after the key break the original's pattern there; the next line decides (no); ours "
                   "reads the last decision (no)"),
    ]
    # --- evaluation (generate_and_rm(evaluation=True)) ----------------------------------------------------------
    E = "evaluation"
    cs += [
        case("e-good", E, "eval", [S(GOOD), S("x\n</think>\n\nAnswer: Swedish<|im_end|>", judge=[NO])],
             "evaluation: the same rewards; the original does not compute the rubric (eta 0), ours reports it",
             default_differs=True),
        case("e-ill-formed", E, "eval", [S("a\n</think>b\n</think>\n\nAnswer: Moroccan-Swedish<|im_end|>")],
             "an invalid response at evaluation: the original scores it (punishes only in training)",
             default_differs=True),
        case("e-truncated", E, "eval", [S("Lady Gaga", status="truncated")], "truncated at evaluation: 0 in both"),
        case("e-data-ratio", E, "eval", [S(GOOD, info={"rubric_reward_ratio": 0.5})],
             "a rubric ratio in the data is kept at evaluation there (eta is 0 only when absent)", default_differs=True),
    ]
    # --- crashes and silent zeros of the original ------------------------------------------------------------------
    X = "crash"
    cs += [
        case("x-surrogate-content", X, "group",
             [S("Lady Gaga\n</think>\n\nParis \ud800 France. The Fame. Answer: Moroccan-Swedish<|im_end|>"), S(GOOD)],
             "a lone surrogate in the content: the judge request cannot be encoded, 0 after 9 calls there; ours "
             "cleans it (U+FFFD, a separator for the rubric as the surrogate was) and judges",
             deviation="crash.surrogate_judge", reference_expect={"outcome_reward": [1.0, 1.0], "rubric_reward": [0.2, 0.4], "reward": [0.85, 1.0]},
             default_differs=True),
        case("x-surrogate-reasoning", X, "group",
             [S("Lady \ud800 Gaga RedOne\n</think>\n\nThe Fame. Answer: Moroccan-Swedish<|im_end|>"), S(GOOD)],
             "a lone surrogate in the reasoning only (read by the rubric)", config={"use_reasoning": True}),
        case("x-surrogate-rubric", X, "group",
             [S("x\n</think>\n\nParis \ud800 France, Lady Gaga. Answer: Moroccan-Swedish<|im_end|>",
                rubrics=["Paris \ud800 France", "Lady Gaga"])],
             "a lone surrogate in a rubric item and the content: the judge request fails there (silent 0) and "
             "printing the hit raises under a UTF-8 log; the rubric agrees", deviation="crash.surrogate_judge",
             reference_expect={"outcome_reward": [1.0], "rubric_reward": [1.0]}, default_differs=True),
        case("x-surrogate-label", X, "server", [H([USER, A("Answer: Moroccan-Swedish")], label="Moroccan\ud800Swedish")],
             "a lone surrogate in the gold answer: the judge request fails there (silent 0), and printing it raises",
             deviation="crash.surrogate_judge", reference_expect={"outcome_reward": [1.0]}, default_differs=True),
        case("x-aborted-second", X, "group", [S(GOOD), S("Lady Gaga", status="aborted")],
             "an aborted sample that is not first in its group: KeyError in the group combination there; ours "
             "scores it 0 and combines the group", deviation="crash.aborted", reference_expect={"reward": [1.0, 0.0]},
             default_differs=True),
        case("x-aborted-first", X, "group", [S("Lady Gaga", status="aborted"), S(GOOD)],
             "an aborted sample first in its group: no combination there (reward None, the others keep the server's "
             "per-sample reward); ours scores it 0 and combines", deviation="crash.aborted",
             reference_expect={"reward": [0.0, 1.0]}, default_differs=True),
        case("x-empty-history", X, "server", [H([])], "an empty history: IndexError (HTTP 500) there; 0 here",
             deviation="crash.server_input", reference_expect={"reward": [0.0]}, default_differs=True),
        case("x-none-content-turn", X, "server",
             [H([USER, {"role": "assistant", "content": None, "reasoning_content": "search Lady Gaga"},
                 A("Answer: Moroccan-Swedish", "found it")])],
             "an assistant turn with content null (a tool call): AttributeError (HTTP 500) there; skipped here",
             deviation="crash.server_input", reference_expect={"outcome_reward": [1.0], "rubric_reward": [0.0]},
             default_differs=True, config={"eta": 0.3}),
        case("x-missing-question", X, "server", [H([USER, A("Answer: Moroccan-Swedish")], info={"question": "__drop__"})],
             "no question in extra_reward_info: KeyError (HTTP 500) there; an empty question here",
             deviation="crash.server_input", reference_expect={"outcome_reward": [1.0]}, default_differs=True),
        case("x-missing-flags", X, "server",
             [H([USER, A("Lady Gaga. Answer: Moroccan-Swedish")],
                info={"rubric_use_content": "__drop__", "rubric_use_reasoning_content": "__drop__"})],
             "no rubric_use_* flags: KeyError (HTTP 500) there; the configured source (content) here",
             deviation="crash.server_input", reference_expect={"rubric_reward": [0.2]}, default_differs=True),
        case("x-alias-item", X, "server", [H([USER, A("Queen Bey. Answer: Moroccan-Swedish")], rubrics=[["Beyoncé", "Queen Bey"]])],
             "a rubric item with aliases (our extension): AttributeError (HTTP 500) there; matched here",
             deviation="crash.server_input", reference_expect={"rubric_reward": [1.0]}, default_differs=True),
        case("x-eval-aborted", X, "eval", [S("Lady Gaga", status="aborted")],
             "aborted at evaluation: no reward at all there (None); 0 here", deviation="crash.aborted",
             reference_expect={"reward": [0.0]}, default_differs=True),
    ]
    return cs


# ----------------------------------------------------------------------------------------------------- fuzzing

_PIECES = ["Lady Gaga", "The Fame", "Poker Face", "RedOne", "Just Dance", "lady-gaga's", "THE  FAME", "Redone",
           "Beyoncé", "Answer: Moroccan-Swedish", "Answer: Swedish", "<think>", "</think>", "<|im_start|>",
           "<|im_end|>", "<|endoftext|>", "\n", "\n\n", " ", "\t", "  \n ", "**", "_", "é", "—", "中文", "Think",
           "correct: yes", ""]


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_PIECES) + rng.choice(["", " ", "\n"]) for _ in range(n))


_REPLY_PIECES = ["correct: yes", "correct: no", "Correct: YES", "CORRECT: no", "**correct:** yes", "correct***: no",
                 "incorrect: no", "correct: nope", "correct：yes", "extracted_final_answer: Moroccan-Swedish",
                 "**extracted_final_answer:** Swedish", "extracted_final_answer:", "reasoning: same", "<think>",
                 "</think>", "\n", " ", "correct : yes", "maybe"]


def _reply(rng: random.Random) -> str:
    reply = "".join(rng.choice(_REPLY_PIECES) + rng.choice(["\n", " ", ""]) for _ in range(rng.randint(1, 5)))
    # every reply gets a decision the original can read (a reply without one is a documented deviation)
    return reply if re.search(r"correct\*{0,2}\s*:\s*(no|yes)", reply, re.I) else reply + "\ncorrect: no"


def _config(rng: random.Random) -> dict:
    return dict(
        eta=rng.choice([0.3, 0.3, 0.0, 0.5, 1.0]), normalize=rng.random() < 0.7,
        mode=rng.choice(["positive_only", "positive_only", "negative_only", "both"]),
        use_content=rng.random() < 0.8, use_reasoning=rng.random() < 0.4, punish_invalid=rng.random() < 0.7,
    )


def _raw_sample(rng: random.Random) -> dict:
    reasoning = rng.choice(["", "<think>", "<think>\n", " "]) + _text(rng, rng.randint(0, 4))
    sep = rng.choice(["\n</think>\n\n", "</think>", "</think>\n\n\n", "\n</think>", "", "</think>x</think>"])
    content = _text(rng, rng.randint(0, 4))
    end = rng.choice(["<|im_end|>"] * 6 + ["<|endoftext|>", "", "<|im_end|>\n", "</s>"])
    s = {"response": reasoning + sep + content + end, "rubrics": _rubrics(rng), "judge": [_reply(rng)]}
    if rng.random() < 0.1:
        s["status"] = "truncated"
    if end == "" and rng.random() < 0.5:
        s["stop"] = rng.choice(["<|im_end|>", "<|endoftext|>"])
    return s


def _rubrics(rng: random.Random) -> list[str]:
    return rng.sample(RUBRICS + ["Think", "Beyoncé", "—", "Moroccan"], rng.randint(0, 4))


def _history_sample(rng: random.Random) -> dict:
    history = [USER]
    for _ in range(rng.randint(1, 3)):
        message = {"role": "assistant", "content": _text(rng, rng.randint(0, 3))}
        if rng.random() < 0.7:
            message["reasoning_content"] = _text(rng, rng.randint(0, 3))
        history.append(message)
        if rng.random() < 0.3:
            history.append({"role": "tool", "content": _text(rng, 2)})
    return H(history, rubrics=_rubrics(rng), judge=[_reply(rng) for _ in range(rng.randint(1, 3))])


def fuzz_cases(n: int, seed: int = 1234) -> list[dict]:
    """Random cases of every kind (no lone surrogates, no aborted samples, judge replies with a decision: the crash
    and judge classes cover those)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        kind = rng.choice(["group", "group", "group", "eval", "server", "combine"])
        config = _config(rng)
        if kind == "server":
            samples = [_history_sample(rng)]
        elif kind == "combine":
            samples = [{"outcome": rng.choice([0.0, 1.0, round(rng.random(), 3)]), "rubric": rng.choice([0.0, 1.0, round(rng.random(), 3)])}
                       for _ in range(rng.randint(1, 5))]
            for s in samples:
                s["correct"] = s["outcome"] >= 0.5
            if rng.random() < 0.15:
                for s in samples:
                    s["dataset_name"] = "longrlvr"
        else:
            samples = [_raw_sample(rng) for _ in range(rng.randint(1, 4))]
        out.append(case(f"f{k}", f"fuzz-{kind}", kind, samples, "random", config=config))
    return out


# -------------------------------------------------------------------------------------------------------- main


def _readme(commit: str, cases: list[dict], fuzz: int) -> str:
    whole = "\n".join(f"- `{p}`" for p in sorted(_WHOLE))
    parts = "\n".join(f"- `{p}`: {', '.join(f'`{n}`' for n in names)}" for p, names in _EXTRACT.items())
    return f"""# Reference reward fixture

`cases.jsonl`: {len(cases)} adversarial cases ({len(cases) - fuzz} written by hand, {fuzz} random) with the results of
LongTraceRL's ORIGINAL reward code on them. `tests/test_reward_reference.py` checks `--reward-mode reference` against
them case by case (docs/reward.md, "Reference mode"). Generated by `scripts/dev/reference_reward_dump.py`; do not edit
by hand, rerun the script.

Provenance: https://github.com/THU-KEG/LongTraceRL at commit `{commit}`, read with `git show` at run time and
executed from a temp dir (no code of theirs is stored in this repository). Files run whole:

{whole}

Functions taken out of modules that cannot be imported without sglang, ray or the math graders:

{parts}

Stubbed, none of their logic: the `openai` client (scripted judge replies; the body is UTF-8 encoded as httpx does),
SGLang's `/generate` (scripted text and finish reason), remote_rm's aiohttp session (calls the server's `evaluate`
in-process with the JSON round-tripped body), tokenizer loading, slime's trace decorators, `asyncio.sleep` (no back-off
waits). Each case runs once with a strict UTF-8 stdout (recorded as `print_crash` when the original's prints raise)
and once with a lenient one (the recorded values).

A case: `id`, `class`, `kind` (`group`: slime's generate_and_rm_group over raw responses; `eval`:
generate_and_rm(evaluation=True); `server`: the server's history mode; `combine`: the group combination fed outcome and
rubric values), `config` (eta, normalize, mode, use_content, use_reasoning, punish_invalid), `samples` (our request
fields plus the scripted `judge` replies), `original` (its per-sample reward, outcome_reward, rubric_reward, invalid,
judge_calls, judge_saw, or `error`), `default_differs`, and for the documented deviations `deviation` +
`reference_expect`; `doc` names the docs/reward.md row of every difference.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", default=DEFAULT_MIRROR, help="bare git dir of github.com/THU-KEG/LongTraceRL")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--fuzz", type=int, default=100, help="random cases added to the hand-written ones")
    ap.add_argument("--check", action="store_true", help="also score with our reward and print agreement per class")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    logging.disable(logging.CRITICAL)  # the original's and slime's loggers
    harness = Harness(args.mirror, args.commit)
    cases = [resolve(c) for c in hand_cases() + fuzz_cases(args.fuzz)]
    for c in cases:
        c["original"] = harness.run(c)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps(c, ensure_ascii=True) + "\n")
        (args.out.parent / "README.md").write_text(_readme(harness.commit, cases, args.fuzz))
        print(f"wrote {len(cases)} cases to {args.out} ({args.out.stat().st_size // 1024} KB) from commit {harness.commit}")
    if args.check:
        sys.path.insert(0, str(ROOT))
        from tests.test_reward_reference import agreement_table

        print(agreement_table(cases))


if __name__ == "__main__":
    main()
