"""One rollout step: GRPO groups generated concurrently, scored as they finish, over-sampled, filtered, aborted.

    result = await generate_rollout(cfg, client, source, reward_fn, tokenizer)
    result.groups       # rollout_batch_size groups of n_samples_per_prompt Samples, rewards set, in draw order
    result.counts       # requested = completed + truncated + aborted + failed (logged)

The loop (slime's ``generate_rollout_async``): while fewer than ``--rollout-batch-size`` groups are accepted,
top up in-flight work with ``--over-sampling-batch-size`` more groups; each group's samples are generated together
and the group is scored (``reward.RewardFn.score_group``) as soon as its last sample finishes, so scoring overlaps
generation. ``--dynamic-sampling-filter`` drops groups whose rewards are all equal (zero GRPO advantage). Once
enough groups are in, the surplus still running is aborted through ``/abort_request`` (the engines end them with
finish_reason abort and the tokens so far). With ``--partial-rollout`` aborted groups go back to the buffer and
resume next step from their partial tokens; otherwise they are discarded (counted as aborted).

    longtrace rollout --prompt-data data.jsonl --output samples.jsonl --model-path DIR [--backend torch] ...
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import importlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

from .rollout_client import ClientConfig, RolloutClient, SamplingConfig
from .sample import ABORTED, COMPLETED, FAILED, PENDING, TRUNCATED, Sample

log = logging.getLogger("longtrace.rollout")

GenerateFn = Callable[[RolloutClient, Sample, SamplingConfig], Awaitable[Sample]]
FilterFn = Callable[[list[Sample]], "bool | tuple[bool, str]"]


@dataclass
class RolloutConfig:
    rollout_batch_size: int = 16  # --rollout-batch-size: groups per step
    n_samples_per_prompt: int = 8  # --n-samples-per-prompt
    over_sampling_batch_size: int | None = None  # --over-sampling-batch-size (default: rollout_batch_size)
    dynamic_sampling_filter: bool = False  # --dynamic-sampling-filter: drop groups with all-equal rewards
    dynamic_sampling_filter_path: str | None = None  # --dynamic-sampling-filter-path module.fn(group) -> bool
    partial_rollout: bool = False  # --partial-rollout
    abort_timeout_s: float = 60.0  # how long aborted requests may take to come back
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def validate(self) -> "RolloutConfig":
        if self.rollout_batch_size < 1:
            raise ValueError(f"--rollout-batch-size must be >= 1, got {self.rollout_batch_size}")
        if self.n_samples_per_prompt < 1:
            raise ValueError(f"--n-samples-per-prompt must be >= 1, got {self.n_samples_per_prompt}")
        if self.over_sampling_batch_size is None:
            self.over_sampling_batch_size = self.rollout_batch_size
        if self.over_sampling_batch_size < self.rollout_batch_size:
            raise ValueError(f"--over-sampling-batch-size ({self.over_sampling_batch_size}) must be >= "
                             f"--rollout-batch-size ({self.rollout_batch_size})")
        self.sampling.validate()
        return self


# ---- data -------------------------------------------------------------------------------------------------------

def prompt_tokens(record: dict, tokenizer: Any, apply_chat_template: bool = True,
                  chat_template_kwargs: dict | None = None) -> list[int]:
    """The prompt's token ids, tokenised once: ``input_messages`` through the chat template (generation prompt
    added; ``chat_template_kwargs`` such as ``enable_thinking`` passed on) or ``prompt`` text (through the template as
    one user message unless ``apply_chat_template`` is off)."""
    messages = record.get("input_messages")
    if messages is None:
        prompt = record.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError("record has neither input_messages nor a string prompt")
        if not apply_chat_template:
            return tokenizer.encode(prompt, add_special_tokens=False)
        messages = [{"role": "user", "content": prompt}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **(chat_template_kwargs or {}))
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc  # transformers 5 returns a BatchEncoding
    return list(ids)


class PromptSource:
    """Dataset records -> groups of Samples; a FIFO buffer of partial groups is served first (partial rollout)."""

    def __init__(self, records: Sequence[dict], tokenizer: Any, n_samples_per_prompt: int, apply_chat_template: bool = True,
                 chat_template_kwargs: dict | None = None):
        # A Sequence is indexed lazily (a datasets-backed view is never materialised); anything else is listed.
        self.records = records if isinstance(records, Sequence) else list(records)
        self.tokenizer, self.n = tokenizer, n_samples_per_prompt
        self.apply_chat_template, self.chat_template_kwargs = apply_chat_template, chat_template_kwargs
        self.cursor = 0
        self.buffer: list[list[Sample]] = []
        self.rejects: list[tuple[int, str]] = []  # (record index, reason)
        self._next_group = 0

    def __len__(self) -> int:
        return len(self.records) - self.cursor + len(self.buffer)

    def get_groups(self, n: int) -> list[list[Sample]]:
        out = []
        while self.buffer and len(out) < n:
            out.append(self.buffer.pop(0))
        while len(out) < n and self.cursor < len(self.records):
            i = self.cursor
            self.cursor += 1
            record = self.records[i]
            try:
                tokens = prompt_tokens(record, self.tokenizer, self.apply_chat_template, self.chat_template_kwargs)
            except Exception as e:  # a bad record is named and skipped, never silently dropped
                self.rejects.append((i, f"{type(e).__name__}: {e}"))
                log.warning("record %d rejected: %s", i, e)
                continue
            gid = self._next_group
            self._next_group += 1
            pid = str(record.get("id", record.get("metadata", {}).get("id", i)))
            out.append([Sample(prompt_tokens=list(tokens), group_id=gid, index=j, prompt_id=pid,
                               label=str(record.get("label", "")), metadata=copy.deepcopy(record.get("metadata") or {}))
                        for j in range(self.n)])
        return out

    def add_back(self, groups: Iterable[list[Sample]]) -> None:
        self.buffer.extend(groups)


# ---- accounting -------------------------------------------------------------------------------------------------

@dataclass
class RolloutCounts:
    """Per step. Samples: requested = completed + truncated + aborted + failed. Groups likewise."""

    requested: int = 0
    completed: int = 0
    truncated: int = 0
    aborted: int = 0
    failed: int = 0
    groups_requested: int = 0
    groups_accepted: int = 0
    groups_filtered: int = 0
    groups_aborted: int = 0
    groups_failed: int = 0
    groups_surplus: int = 0  # finished after the target was reached; discarded (or buffered with partial rollout)
    resumed: int = 0  # samples taken from the partial-rollout buffer
    buffered: int = 0  # samples put back into the buffer for the next step
    reasons: Counter = field(default_factory=Counter)  # failed samples by reason
    filter_reasons: Counter = field(default_factory=Counter)  # filtered groups by reason

    def add_sample(self, s: Sample) -> None:
        key = {COMPLETED: "completed", TRUNCATED: "truncated", ABORTED: "aborted"}.get(s.status, "failed")
        setattr(self, key, getattr(self, key) + 1)
        if key == "failed":
            self.reasons[(s.error or f"status {s.status}").split(":")[0]] += 1

    def check(self) -> None:
        if self.requested != self.completed + self.truncated + self.aborted + self.failed:
            raise AssertionError(f"sample counts do not add up: {self.summary()}")
        groups = self.groups_accepted + self.groups_filtered + self.groups_aborted + self.groups_failed + self.groups_surplus
        if self.groups_requested != groups:
            raise AssertionError(f"group counts do not add up: {self.summary()}")

    def summary(self) -> str:
        line = (f"samples requested {self.requested} = completed {self.completed} + truncated {self.truncated} + "
                f"aborted {self.aborted} + failed {self.failed}; groups requested {self.groups_requested} = accepted "
                f"{self.groups_accepted} + filtered {self.groups_filtered} + aborted {self.groups_aborted} + failed "
                f"{self.groups_failed} + surplus {self.groups_surplus}; resumed {self.resumed}, buffered {self.buffered}")
        if self.reasons:
            line += "; failures: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.reasons.items()))
        if self.filter_reasons:
            line += "; filtered: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.filter_reasons.items()))
        return line

    def to_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if not isinstance(v, Counter)}
        d["failure_reasons"], d["filter_reasons"] = dict(self.reasons), dict(self.filter_reasons)
        return d


@dataclass
class RolloutResult:
    groups: list[list[Sample]]
    counts: RolloutCounts
    metrics: dict = field(default_factory=dict)

    @property
    def samples(self) -> list[Sample]:
        return [s for g in self.groups for s in g]


# ---- filters ----------------------------------------------------------------------------------------------------

def rewards_not_all_equal(group: list[Sample]) -> tuple[bool, str]:
    """Keep a group iff its rewards differ (std > 1e-6): equal rewards give zero GRPO advantage."""
    rewards = [s.reward for s in group]
    if any(r is None for r in rewards):
        return False, "no_reward"
    mean = sum(rewards) / len(rewards)
    std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
    return (True, "") if std > 1e-6 else (False, "zero_std")


def load_function(path: str) -> Callable:
    """``package.module.fn`` or ``package.module:fn``."""
    module, _, name = path.replace(":", ".").rpartition(".")
    if not module:
        raise ValueError(f"function path {path!r} must be module.function")
    return getattr(importlib.import_module(module), name)


# ---- rewards ----------------------------------------------------------------------------------------------------

def reward_request(sample: Sample, tokenizer: Any = None):
    """A ``reward.RewardRequest`` for a sample: status from the finish reason, stop = the matched stop token."""
    from reward.schema import RewardRequest

    info = dict((sample.metadata or {}).get("extra_reward_info") or {})
    matched = (sample.finish_reason or {}).get("matched")
    stop = None
    if isinstance(matched, int) and tokenizer is not None:
        stop = tokenizer.convert_ids_to_tokens(matched)
    elif isinstance(matched, str):
        stop = matched
    status = sample.status if sample.status in (COMPLETED, TRUNCATED, ABORTED) else FAILED
    return RewardRequest(label=sample.label, extra_reward_info=info, response=sample.response_text, status=status,
                         stop=stop, sample_id=f"{sample.prompt_id}/{sample.index}", group_id=str(sample.group_id))


async def score_group(group: list[Sample], reward_fn: Any, tokenizer: Any, evaluation: bool = False) -> None:
    result = await reward_fn.score_group([reward_request(s, tokenizer) for s in group], evaluation=evaluation)
    for s, r, part in zip(group, result.rewards, result.samples):
        s.reward = float(r)
        s.reward_parts = part.model_dump()
    if result.dropped:
        for s in group:
            s.reward_parts["group_dropped"] = result.dropped


# ---- the step ---------------------------------------------------------------------------------------------------

async def default_generate(client: RolloutClient, sample: Sample, sampling: SamplingConfig) -> Sample:
    return await client.generate(sample, sampling)


async def generate_rollout(cfg: RolloutConfig, client: RolloutClient, source: PromptSource, reward_fn: Any = None,
                           tokenizer: Any = None, generate_fn: GenerateFn | None = None,
                           filter_fn: FilterFn | None = None) -> RolloutResult:
    cfg.validate()
    generate_fn = generate_fn or default_generate
    if filter_fn is None and cfg.dynamic_sampling_filter_path:
        filter_fn = load_function(cfg.dynamic_sampling_filter_path)
    if filter_fn is None and cfg.dynamic_sampling_filter:
        filter_fn = rewards_not_all_equal
    counts = RolloutCounts()
    start = time.perf_counter()
    reward_seconds = 0.0
    accepted: list[list[Sample]] = []
    pending: dict[asyncio.Task, list[Sample]] = {}
    aborting = False

    async def run_group(group: list[Sample]) -> list[Sample]:
        nonlocal reward_seconds
        todo = [s for s in group if s.status in (PENDING, ABORTED)]
        for s in todo:
            s.status = PENDING
        await asyncio.gather(*(generate_fn(client, s, cfg.sampling) for s in todo))
        if reward_fn is not None and not aborting and all(s.status != ABORTED for s in group):
            t = time.perf_counter()
            try:
                await score_group(group, reward_fn, tokenizer)
            except Exception as e:  # named, counted, the group is not trained on
                log.exception("reward scoring failed for group %s", group[0].group_id)
                for s in group:
                    s.reward_parts["reward_error"] = f"{type(e).__name__}: {e}"
            reward_seconds += time.perf_counter() - t
        return group

    drawn: dict[int, int] = {}  # id(group) -> the order it was drawn from the source

    def submit(groups: list[list[Sample]]) -> None:
        for g in groups:
            drawn[id(g)] = len(drawn)
            counts.groups_requested += 1
            counts.requested += len(g)
            counts.resumed += sum(1 for s in g if s.response_tokens)
            pending[asyncio.create_task(run_group(g))] = g

    exhausted = False
    while len(accepted) < cfg.rollout_batch_size:
        if len(accepted) + len(pending) < cfg.rollout_batch_size and not exhausted:
            groups = source.get_groups(cfg.over_sampling_batch_size)
            exhausted = not groups
            submit(groups)
        if not pending:
            if exhausted:
                log.warning("prompt data exhausted: %d of %d groups", len(accepted), cfg.rollout_batch_size)
                break
            continue
        done, _ = await asyncio.wait(list(pending), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            group = pending.pop(task)
            task.result()
            _classify(group, counts, accepted, filter_fn, cfg, source, full=len(accepted) >= cfg.rollout_batch_size)

    if pending:  # surplus: abort what is still running, collect what comes back
        aborting = True
        rids = [s.metadata["rid"] for g in pending.values() for s in g if "rid" in s.metadata]
        log.info("target reached: aborting %d in-flight request(s) of %d surplus group(s)", len(rids), len(pending))
        await client.abort(rids)
        done, still = await asyncio.wait(list(pending), timeout=cfg.abort_timeout_s)
        if still:  # engines that ignore aborts: stop waiting, count them aborted
            await client.abort(None)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        for task in list(pending):
            group = pending.pop(task)
            for s in group:
                if s.status == PENDING:
                    s.status = ABORTED
            _classify(group, counts, accepted, filter_fn, cfg, source, full=True)
    # Groups complete in an order set by timing; the batch lists them in the order they were drawn, so that the
    # same accepted groups always make the same batch.
    accepted.sort(key=lambda g: drawn[id(g)])
    for group in accepted:
        for s in group:
            s.check()
    counts.check()
    elapsed = time.perf_counter() - start
    metrics = {"rollout/seconds": elapsed, "rollout/reward_seconds": reward_seconds, **{f"rollout/{k}": v for k, v in counts.to_dict().items() if not isinstance(v, dict)}}
    lengths = [s.response_length for g in accepted for s in g]
    if lengths:
        metrics["rollout/response_len/mean"] = sum(lengths) / len(lengths)
        metrics["rollout/response_len/max"] = max(lengths)
        metrics["rollout/truncated_ratio"] = sum(s.status == TRUNCATED for g in accepted for s in g) / len(lengths)
    log.info("rollout: %s (%.1f s, rewards %.1f s)", counts.summary(), elapsed, reward_seconds)
    return RolloutResult(accepted[: cfg.rollout_batch_size], counts, metrics)


def _classify(group: list[Sample], counts: RolloutCounts, accepted: list, filter_fn: FilterFn | None,
              cfg: RolloutConfig, source: PromptSource, full: bool) -> None:
    for s in group:
        counts.add_sample(s)
    if any(s.status == ABORTED for s in group):
        counts.groups_aborted += 1
        if cfg.partial_rollout:
            for s in group:
                s.metadata["partial_rollout"] = s.metadata.get("partial_rollout", 0) + 1
            source.add_back([group])
            counts.buffered += len(group)
        return
    if any(s.status == FAILED for s in group) or any("reward_error" in s.reward_parts for s in group):
        counts.groups_failed += 1
        return
    if full:
        counts.groups_surplus += 1
        return
    if filter_fn is not None:
        verdict = filter_fn(group)
        keep, reason = verdict if isinstance(verdict, tuple) else (bool(verdict), "filtered")
        if not keep:
            counts.groups_filtered += 1
            counts.filter_reasons[reason] += 1
            log.debug("group %s dropped by the dynamic filter (%s)", group[0].group_id, reason)
            return
    counts.groups_accepted += 1
    accepted.append(group)


# ---- CLI: longtrace rollout ---------------------------------------------------------------------------------------

def add_rollout_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rollout (slime flag names)")
    g.add_argument("--rollout-batch-size", type=int, default=16, help="groups (prompts) per rollout step")
    g.add_argument("--n-samples-per-prompt", type=int, default=8)
    g.add_argument("--over-sampling-batch-size", type=int, default=None)
    g.add_argument("--dynamic-sampling-filter", action="store_true", help="drop groups whose rewards are all equal")
    g.add_argument("--dynamic-sampling-filter-path", default=None, help="module.fn(group) -> bool (keep)")
    g.add_argument("--partial-rollout", action="store_true")
    g.add_argument("--rollout-max-response-len", type=int, default=32000)
    g.add_argument("--rollout-max-context-len", type=int, default=160000)
    g.add_argument("--rollout-temperature", type=float, default=1.0)
    g.add_argument("--rollout-top-p", type=float, default=1.0)
    g.add_argument("--rollout-top-k", type=int, default=-1)
    g.add_argument("--rollout-stop-token-ids", type=int, nargs="*", default=None,
                   help="default: the tokenizer's <|im_end|> and <|endoftext|> when present")
    g.add_argument("--rollout-num-steps", type=int, default=1, help="rollout steps to run (offline generation)")
    c = p.add_argument_group("client")
    c.add_argument("--sglang-server-concurrency", type=int, default=512, help="in-flight requests per engine")
    c.add_argument("--sglang-router-request-timeout-secs", "--rollout-request-timeout", dest="rollout_request_timeout",
                   type=float, default=36000.0, help="seconds one generate request may take (slime's name)")
    c.add_argument("--rollout-retries", type=int, default=5)


def rollout_config_from_args(a: argparse.Namespace, stop_ids: list[int]) -> RolloutConfig:
    return RolloutConfig(
        rollout_batch_size=a.rollout_batch_size, n_samples_per_prompt=a.n_samples_per_prompt,
        over_sampling_batch_size=a.over_sampling_batch_size, dynamic_sampling_filter=a.dynamic_sampling_filter,
        dynamic_sampling_filter_path=a.dynamic_sampling_filter_path, partial_rollout=a.partial_rollout,
        sampling=SamplingConfig(max_response_len=a.rollout_max_response_len, max_context_len=a.rollout_max_context_len,
                                temperature=a.rollout_temperature, top_p=a.rollout_top_p, top_k=a.rollout_top_k,
                                stop_token_ids=stop_ids),
    ).validate()


def default_stop_ids(tokenizer: Any) -> list[int]:
    ids = []
    for tok in ("<|im_end|>", "<|endoftext|>"):
        i = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(i, int) and i != tokenizer.unk_token_id and i is not None:
            ids.append(i)
    return ids


def build_parser() -> argparse.ArgumentParser:
    from reward.config import add_reward_args

    from .sglang_engine import BACKENDS

    p = argparse.ArgumentParser(prog="longtrace rollout",
                                description="Generate (and score) GRPO groups for a dataset offline, through engines behind sglang-router.")
    p.add_argument("--prompt-data", required=True, type=Path, help="JSONL records: input_messages|prompt, label, metadata")
    p.add_argument("--output", required=True, type=Path, help="JSONL of samples (one line per sample)")
    p.add_argument("--model-path", required=True, help="HF checkpoint: tokenizer, and the engines' model when launched here")
    p.add_argument("--router-url", default=None, help="use running engines behind this router instead of launching")
    p.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto",
                   help="engines launched here; auto: SGLang where it can run, else the torch fallback engine")
    p.add_argument("--num-engines", type=int, default=1)
    p.add_argument("--rollout-num-gpus-per-engine", type=int, default=1)
    p.add_argument("--sglang-mem-fraction-static", type=float, default=None)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--no-reward", action="store_true", help="generate only")
    p.add_argument("--reward-url", default=None, help="score with a running `longtrace reward serve`")
    add_rollout_args(p)
    add_reward_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer

    from reward.config import reward_config_from_args

    from .router import RouterConfig
    from .sglang_engine import EngineConfig, EngineManager
    from .sglang_env import default_device, resolve_backend

    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        a.device = a.device or default_device()
        if a.router_url is None:
            a.backend, note = resolve_backend(a.backend, a.device)
            if note:
                print(f"longtrace rollout: {note}", file=sys.stderr)
        tokenizer = AutoTokenizer.from_pretrained(a.model_path)
        stop_ids = a.rollout_stop_token_ids if a.rollout_stop_token_ids is not None else default_stop_ids(tokenizer)
        cfg = rollout_config_from_args(a, stop_ids)
        records = [json.loads(line) for line in a.prompt_data.read_text().splitlines() if line.strip()]
        reward_cfg = None if a.no_reward or a.reward_url else reward_config_from_args(a)
    except (ValueError, OSError) as e:
        print(f"longtrace rollout: {e}", file=sys.stderr)
        return 2
    print(f"rollout config: {json.dumps({k: v for k, v in vars(a).items() if k.startswith(('rollout', 'n_samples', 'over', 'dynamic', 'partial', 'sglang'))}, default=str)}")
    manager = None
    if a.router_url is None:
        manager = EngineManager(EngineConfig(
            model_path=a.model_path, backend=a.backend, num_engines=a.num_engines, gpus_per_engine=a.rollout_num_gpus_per_engine,
            mem_fraction_static=a.sglang_mem_fraction_static, device=a.device, torch_threads=a.torch_threads,
            log_dir=a.log_dir, router=RouterConfig()))
    try:
        if manager:
            manager.__enter__()
            manager.start_watchdog(5.0)
        url = a.router_url or manager.url
        n_engines = a.num_engines if manager else max(1, len(_router_workers(url)))
        client = RolloutClient(ClientConfig(url=url, concurrency=a.sglang_server_concurrency * n_engines,
                                            request_timeout_s=a.rollout_request_timeout, retries=a.rollout_retries),
                               on_fault=manager.recover if manager else None)
        return asyncio.run(_run_offline(a, cfg, client, records, tokenizer, reward_cfg))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if manager:
            manager.stop()


def _router_workers(url: str) -> list:
    import httpx

    try:
        return httpx.get(f"{url}/workers", timeout=10, trust_env=False).json().get("workers", [])
    except (httpx.HTTPError, ValueError):
        return []


async def _run_offline(a, cfg: RolloutConfig, client: RolloutClient, records: list[dict], tokenizer, reward_cfg) -> int:
    from reward import RewardScorer
    from reward.client import RewardClient

    reward_fn = None if a.no_reward else (RewardClient(a.reward_url) if a.reward_url else RewardScorer(reward_cfg))
    source = PromptSource(records, tokenizer, cfg.n_samples_per_prompt)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    total = RolloutCounts()
    with open(a.output, "w", encoding="utf-8") as out:
        for step in range(a.rollout_num_steps):
            if not len(source):
                break
            result = await generate_rollout(cfg, client, source, reward_fn, tokenizer)
            for s in result.samples:
                out.write(json.dumps({"rollout_step": step, **s.to_dict()}) + "\n")
            for k in ("requested", "completed", "truncated", "aborted", "failed", "groups_requested", "groups_accepted",
                      "groups_filtered", "groups_aborted", "groups_failed", "groups_surplus"):
                setattr(total, k, getattr(total, k) + getattr(result.counts, k))
            total.reasons.update(result.counts.reasons)
            rewards = [s.reward for s in result.samples if s.reward is not None]
            print(f"step {step}: {len(result.groups)} groups, mean reward "
                  f"{(sum(rewards) / len(rewards)) if rewards else float('nan'):.3f}, {result.metrics['rollout/seconds']:.1f} s")
    for i, reason in source.rejects:
        print(f"record {i} rejected: {reason}", file=sys.stderr)
    print(f"totals: {total.summary()}")
    print(f"client: {client.stats.to_dict()}")
    print(f"samples written to {a.output}")
    await client.aclose()
    if reward_fn is not None:
        await reward_fn.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
