"""Async client of SGLang's native ``/generate`` (through sglang-router), token ids in and out.

One request per sample (per turn in multi-turn samples): ``input_ids`` = prompt + response so far, SGLang's
``sampling_params``, ``return_logprob: true``, a ``rid`` (so the request can be aborted). The response tokens and
log-probs are taken from ``meta_info.output_token_logprobs`` ([logprob, token_id, text] triples); nothing is
re-tokenised. ``finish_reason.type`` -> status: stop -> completed, length -> truncated, abort -> aborted.

``max_new_tokens = min(max_response_len - generated so far, max_context_len - current length)`` (LongTraceRL:
32,000 and 160,000). Connection errors, 5xx and timeouts are retried with exponential backoff (the engine manager's
recovery hook runs first); 4xx and exhausted retries fail the sample with a named reason.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import aiohttp

try:  # 5-10x faster than json on the ~1 MB log-prob arrays of 32K-token responses
    import orjson as _json_fast

    def _loads(data: bytes):
        return _json_fast.loads(data)
except ImportError:  # pragma: no cover
    import json as _json_std

    def _loads(data: bytes):
        return _json_std.loads(data)

from reward.http_retry import backoff_delay

from .sample import ABORTED, COMPLETED, FAILED, Sample, status_from_finish_reason

log = logging.getLogger("longtrace.rollout")


@dataclass
class SamplingConfig:
    """Per-request generation settings (slime flags in comments)."""

    max_response_len: int = 32000  # --rollout-max-response-len
    max_context_len: int = 160000  # --rollout-max-context-len (prompt + response)
    temperature: float = 1.0  # --rollout-temperature
    top_p: float = 1.0  # --rollout-top-p
    top_k: int = -1  # --rollout-top-k
    stop_token_ids: list[int] = field(default_factory=list)  # --rollout-stop-token-ids
    stop: list[str] = field(default_factory=list)  # --rollout-stop
    min_new_tokens: int = 0
    skip_special_tokens: bool = True
    sampling_seed: int | None = None

    def validate(self) -> "SamplingConfig":
        if self.max_response_len < 1:
            raise ValueError(f"--rollout-max-response-len must be >= 1, got {self.max_response_len}")
        if self.max_context_len < 2:
            raise ValueError(f"--rollout-max-context-len must be >= 2, got {self.max_context_len}")
        if self.temperature < 0:
            raise ValueError(f"--rollout-temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--rollout-top-p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"--rollout-top-k must be -1 (off) or >= 1, got {self.top_k}")
        return self

    def max_new_tokens(self, prompt_len: int, generated: int = 0) -> int:
        """Tokens this request may add: response budget left, and what still fits the context."""
        return min(self.max_response_len - generated, self.max_context_len - prompt_len - generated)

    def params(self, max_new_tokens: int) -> dict:
        """SGLang sampling_params (only keys SGLang's JSON contract knows: it rejects unknown ones)."""
        p = {"max_new_tokens": max_new_tokens, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
             "skip_special_tokens": self.skip_special_tokens, "no_stop_trim": True, "spaces_between_special_tokens": False}
        if self.stop_token_ids:
            p["stop_token_ids"] = list(self.stop_token_ids)
        if self.stop:
            p["stop"] = list(self.stop)
        if self.min_new_tokens:
            p["min_new_tokens"] = self.min_new_tokens
        if self.sampling_seed is not None:
            p["sampling_seed"] = self.sampling_seed
        return p


@dataclass
class ClientConfig:
    url: str  # the router (or a single engine)
    concurrency: int = 512  # in-flight requests: --sglang-server-concurrency x number of engines
    request_timeout_s: float = 36000.0  # one /generate (LongTraceRL: 36,000 s)
    connect_timeout_s: float = 10.0
    retries: int = 5  # retries of a request after a connection error, 5xx or timeout
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def validate(self) -> "ClientConfig":
        if self.concurrency < 1:
            raise ValueError(f"--sglang-server-concurrency x engines must be >= 1, got {self.concurrency}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"--rollout-request-timeout must be > 0, got {self.request_timeout_s}")
        if self.retries < 0:
            raise ValueError(f"--rollout-retries must be >= 0, got {self.retries}")
        return self


class GenerateFailed(Exception):
    """A request that cannot succeed (4xx, bad response, retries exhausted); ``reason`` names it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    faults_handled: int = 0
    aborts_sent: int = 0
    seconds_in_requests: float = 0.0

    def to_dict(self) -> dict:
        return dict(vars(self))


class RolloutClient:
    def __init__(self, cfg: ClientConfig, worker_urls: Callable[[], Sequence[str]] | Sequence[str] | None = None,
                 on_fault: Callable[[], Any] | None = None):
        """``worker_urls``: engines behind the router (aborts go to each: the router does not forward them);
        default: asked from the router's ``GET /workers``. ``on_fault``: called (sync or async) after a connection
        error or 5xx, before retrying, e.g. ``EngineManager.recover`` to restart dead engines."""
        self.cfg = cfg.validate()
        self._worker_urls = worker_urls
        self.on_fault = on_fault
        self.stats = ClientStats()
        self._http: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self._fault_lock: asyncio.Lock | None = None
        self._last_fault = 0.0

    def http(self) -> aiohttp.ClientSession:
        """aiohttp, not httpx: at 512 requests in flight httpx's pool managed ~70 req/s on the benchmark machine,
        aiohttp ~1,100 (benchmarks/rollout_client.py, docs/performance.md)."""
        if self._http is None:
            connector = aiohttp.TCPConnector(limit=self.cfg.concurrency + 16, force_close=False)
            timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout_s, connect=self.cfg.connect_timeout_s)
            self._http = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
            self._sem = asyncio.Semaphore(self.cfg.concurrency)
            self._fault_lock = asyncio.Lock()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _url(self, route: str) -> str:
        return f"{self.cfg.url.rstrip('/')}{route}"

    # ---- one request --------------------------------------------------------------------------------------------
    async def post_generate(self, payload: dict) -> dict:
        """POST /generate with retries; each retry gets a fresh rid (the old one is aborted first)."""
        http = self.http()
        base_rid = payload.get("rid") or uuid.uuid4().hex
        problem = "no attempt"
        for attempt in range(1 + self.cfg.retries):
            if attempt:
                self.stats.retries += 1
                await self._handle_fault(problem)
                await asyncio.sleep(backoff_delay(attempt, self.cfg.backoff_s, self.cfg.backoff_max_s))
            rid = base_rid if attempt == 0 else f"{base_rid}.retry{attempt}"
            body = {**payload, "rid": rid}
            start = time.perf_counter()
            status, data = 0, b""
            try:
                async with self._sem:
                    self.stats.requests += 1
                    async with http.post(self._url("/generate"), json=body) as resp:
                        status, data = resp.status, await resp.read()
            except asyncio.TimeoutError:
                problem = f"timeout after {self.cfg.request_timeout_s:g} s"
                await self.abort([rid])  # the engine may still be working on it
            except aiohttp.ClientError as e:
                problem = f"connection error: {type(e).__name__}: {e}".rstrip(": ")
            else:
                if status < 300:
                    try:
                        return _loads(data)
                    except ValueError:
                        raise GenerateFailed(f"bad_response: not JSON: {data[:200]!r}") from None
                if status < 500 and status != 429:
                    raise GenerateFailed(f"http_{status}: {data[:300].decode(errors='replace')}")
                problem = f"HTTP {status}: {data[:200].decode(errors='replace')}"
            finally:
                self.stats.seconds_in_requests += time.perf_counter() - start
            log.warning("/generate rid=%s failed (%s), attempt %d/%d", rid, problem, attempt + 1, 1 + self.cfg.retries)
        self.stats.failures += 1
        raise GenerateFailed(f"retries_exhausted: {problem}")

    async def _handle_fault(self, problem: str) -> None:
        if self.on_fault is None:
            return
        async with self._fault_lock:  # one recovery at a time; requests failing together share it
            if time.monotonic() - self._last_fault < 1.0:
                return
            self.stats.faults_handled += 1
            try:
                result = self.on_fault() if inspect.iscoroutinefunction(self.on_fault) else await asyncio.to_thread(self.on_fault)
                if inspect.isawaitable(result):
                    result = await result
                for line in result or []:
                    log.warning("fault handling after '%s': %s", problem, line)
            except Exception:
                log.exception("fault handler failed")
            self._last_fault = time.monotonic()

    # ---- samples ----------------------------------------------------------------------------------------------
    async def generate(self, sample: Sample, sampling: SamplingConfig, trainable: bool = True) -> Sample:
        """Continue ``sample`` by one /generate (resumes from its response tokens, e.g. a partial rollout)."""
        current = len(sample.prompt_tokens) + len(sample.response_tokens)
        budget = sampling.max_new_tokens(len(sample.prompt_tokens), len(sample.response_tokens))
        if budget <= 0:
            if not sample.response_tokens:
                sample.status, sample.error = FAILED, (
                    f"prompt_too_long: {len(sample.prompt_tokens)} prompt tokens leave no room under "
                    f"--rollout-max-context-len {sampling.max_context_len}")
            else:
                sample.status = "truncated"
            return sample
        rid = sample.metadata.get("rid") or f"{sample.prompt_id or 'p'}-{sample.group_id}-{sample.index}-{uuid.uuid4().hex[:8]}"
        sample.metadata["rid"] = rid
        payload = {"input_ids": sample.prompt_tokens + sample.response_tokens, "sampling_params": sampling.params(budget),
                   "return_logprob": True, "rid": rid}
        try:
            out = await self.post_generate(payload)
            apply_output(sample, out, trainable=trainable, expected_len=current)
        except GenerateFailed as e:
            sample.status, sample.error = FAILED, e.reason
        finally:
            sample.metadata.pop("rid", None)
        return sample

    # ---- aborts -------------------------------------------------------------------------------------------------
    async def workers(self) -> list[str]:
        if self._worker_urls is not None:
            urls = self._worker_urls() if callable(self._worker_urls) else self._worker_urls
            return list(urls)
        try:
            async with self.http().get(self._url("/workers"), timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    return [self.cfg.url]  # a single engine without a router
                return [w["url"] for w in (await resp.json()).get("workers", [])]
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
            return [self.cfg.url]

    async def abort(self, rids: Sequence[str] | None = None) -> None:
        """Abort requests by rid (or all with ``rids=None``) on every engine; they end with finish_reason abort."""
        urls = await self.workers()
        bodies = [{"abort_all": True}] if rids is None else [{"rid": r} for r in rids]
        http = self.http()

        async def send(url: str, body: dict) -> None:
            try:
                async with http.post(f"{url.rstrip('/')}/abort_request", json=body, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    await r.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("abort on %s failed: %s", url, e)
        await asyncio.gather(*(send(u, b) for u in urls for b in bodies))
        self.stats.aborts_sent += len(urls) * len(bodies)


def apply_output(sample: Sample, out: dict, trainable: bool = True, expected_len: int | None = None) -> None:
    """Append one /generate response (its output tokens and log-probs) to ``sample``; set status and version."""
    meta = out.get("meta_info") or {}
    triples = meta.get("output_token_logprobs")
    if triples is None:
        raise GenerateFailed("bad_response: meta_info.output_token_logprobs missing (was return_logprob sent?)")
    tokens = [int(t[1]) for t in triples]
    logprobs = [float(t[0]) if t[0] is not None else 0.0 for t in triples]
    if "output_ids" in out and list(out["output_ids"]) != tokens:
        raise GenerateFailed("bad_response: output_ids and output_token_logprobs disagree")
    sample.response_tokens += tokens
    sample.rollout_logprobs += logprobs
    sample.loss_mask += [1 if trainable else 0] * len(tokens)
    sample.response_text += out.get("text", "")
    sample.finish_reason = meta.get("finish_reason")
    sample.status = status_from_finish_reason(sample.finish_reason)
    if sample.status == FAILED:
        sample.error = f"bad_response: finish_reason {sample.finish_reason!r}"
    version = meta.get("weight_version")
    if version is not None:
        sample.metadata.setdefault("weight_versions", []).append(str(version))
        try:
            sample.weight_version = int(version)
        except ValueError:
            pass  # SGLang's initial version is the string "default"


async def call_maybe_async(fn: Callable, *args) -> Any:
    result = fn(*args)
    if isinstance(result, Awaitable) or inspect.isawaitable(result):
        return await result
    return result


__all__ = ["ABORTED", "COMPLETED", "ClientConfig", "GenerateFailed", "RolloutClient", "SamplingConfig", "apply_output"]
