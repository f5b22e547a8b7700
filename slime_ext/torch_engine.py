"""A transformers-backed generation engine that speaks SGLang's HTTP API (CPU or one GPU).

    longtrace engine serve --model-path DIR [--host 127.0.0.1 --port 30000 --device cpu --max-running-requests 64]

The fallback engine: where SGLang cannot run (a CPU without AVX-512, or no sgl_kernel CPU build: see
``sglang_env.py``), ``--rollout-backend auto`` uses it so that the quickstart and the loop still run. Everything
else, CI included, runs real SGLang; the tests hold this engine to the behaviour measured on SGLang 0.5.23
(weight-update sessions, the weight-update group's rendezvous, pause modes and flushes). Routes and JSON shapes
follow SGLang (see ``slime_ext/versions.py`` for the pinned release and docs/rollout.md for the full list):

  GET  /health /health_generate /get_model_info /model_info /get_server_info /server_info /v1/models /v1/loads
  POST /generate                   input_ids (one or a batch) or text, sampling_params, return_logprob, rid
  POST /abort_request              {"rid": ...} or {"abort_all": true}: the request ends with finish_reason abort
  POST /flush_cache                400 while requests run (SGLang's rule; requests held by a retract/abort pause
                                   do not count), else 200
  POST /pause_generation /continue_generation   modes abort | retract | in_place
  POST /update_weights_from_disk   {"model_path", "weight_version"}: HF safetensors, loaded between decode steps
  POST /begin_weight_update /end_weight_update   the session the two routes below must run in (else 400)
  POST /init_weights_update_group /update_weights_from_distributed /destroy_weights_update_group  (gloo on CPU)
  POST /update_weights_from_tensor {"serialized_named_tensors": [base64], "load_format": "flattened_bucket"}
  POST /release_memory_occupation /resume_memory_occupation  {"tags": ["weights", "kv_cache"]}
  POST /update_weight_version

Batching: one scheduler thread runs a step loop. New requests are prefilled one at a time (exact, no padding);
then every running request advances one token in a single batched forward pass over a left-padded KV cache.

Log-probs follow SGLang's default sampler (``python/sglang/srt/layers/sampler.py`` of the pinned release): the
returned log-prob of a sampled token is ``log_softmax(logits / T)[token]`` over the full vocabulary, taken before
top-k / top-p / min-p filtering; greedy requests (``temperature < 1e-6``, which SGLang turns into ``top_k = 1``,
``T = 1``) return ``log_softmax(logits)[token]``. ``min_new_tokens`` masks stop tokens to -inf first (SGLang's
penalizer), so those steps' log-probs are over the masked distribution.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import queue
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from .weight_sync import deserialize_tensors, init_weight_update_group, unflatten_bucket

log = logging.getLogger("longtrace.engine")

SAMPLING_EPS = 1e-6  # SGLang: temperature below this is greedy
TOP_K_ALL = 1 << 30

# sampling_params keys SGLang's JSON contract knows; unknown keys are rejected like SGLang does.
KNOWN_SAMPLING_KEYS = {
    "max_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p", "top_k", "min_p",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens", "n", "json_schema", "regex",
    "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim",
    "stream_interval", "logit_bias", "sampling_seed", "custom_params", "beam_width", "watermark", "choice",
}
# Known to SGLang, accepted here only at their neutral value.
NEUTRAL_SAMPLING = {
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0, "n": 1, "json_schema": None,
    "regex": None, "ebnf": None, "structural_tag": None, "stop_regex": None, "logit_bias": None, "beam_width": None,
    "watermark": None, "choice": None,
}


class BadRequest(ValueError):
    """A request the engine refuses (HTTP 400), with the reason."""


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = TOP_K_ALL
    min_p: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    sampling_seed: int | None = None

    @classmethod
    def parse(cls, raw: dict | None, vocab_size: int) -> "SamplingParams":
        raw = dict(raw or {})
        unknown = sorted(set(raw) - KNOWN_SAMPLING_KEYS)
        if unknown:
            raise BadRequest(f"unknown sampling_params: {', '.join(unknown)}")
        for key, neutral in NEUTRAL_SAMPLING.items():
            value = raw.pop(key, None)
            if value is not None and value != neutral and value not in ({}, []):
                raise BadRequest(f"sampling_params.{key}={value!r} is not supported by the torch engine")
        raw.pop("stream_interval", None)
        raw.pop("custom_params", None)
        p = cls()
        for key, value in raw.items():
            if value is not None:
                setattr(p, key, value)
        if isinstance(p.stop, str):
            p.stop = [p.stop]
        p.stop, p.stop_token_ids = list(p.stop or []), [int(t) for t in (p.stop_token_ids or [])]
        if p.top_k in (-1, None):
            p.top_k = TOP_K_ALL
        if not math.isfinite(p.temperature) or p.temperature < 0:
            raise BadRequest(f"temperature must be >= 0, got {p.temperature}")
        if 0 <= p.temperature < SAMPLING_EPS:  # SGLang's normalisation of greedy
            p.temperature, p.top_k = 1.0, 1
        if not 0 < p.top_p <= 1:
            raise BadRequest(f"top_p must be in (0, 1], got {p.top_p}")
        if p.top_k < 1:
            raise BadRequest(f"top_k must be -1 (disable) or at least 1, got {p.top_k}")
        if not 0 <= p.min_p <= 1:
            raise BadRequest(f"min_p must be in [0, 1], got {p.min_p}")
        if p.max_new_tokens is None or p.max_new_tokens < 0:
            raise BadRequest(f"max_new_tokens must be >= 0, got {p.max_new_tokens}")
        if p.min_new_tokens < 0 or p.min_new_tokens > p.max_new_tokens:
            raise BadRequest(f"min_new_tokens must be in [0, max_new_tokens], got {p.min_new_tokens}")
        bad = [t for t in p.stop_token_ids if not 0 <= t < vocab_size]
        if bad:
            raise BadRequest(f"stop_token_ids out of the vocabulary: {bad}")
        return p

    @property
    def greedy(self) -> bool:
        return self.top_k == 1


@dataclass
class Request:
    rid: str
    input_ids: list[int]
    params: SamplingParams
    return_logprob: bool
    done: Any  # callable(result dict), called once from the engine thread
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    kv: list | None = None  # per layer (k, v), each [1, heads, len, dim]
    next_logits: Any = None  # logits for the next token, [vocab]
    aborted: str | None = None  # abort message
    finish: dict | None = None
    generator: Any = None
    start: float = field(default_factory=time.perf_counter)
    versions: list[dict] = field(default_factory=list)  # weight-version spans over output tokens


class EngineState:
    """The model, the queues and the step loop. HTTP handlers talk to it only through thread-safe methods."""

    def __init__(self, model_path: str, device: str = "cpu", dtype: str = "float32", max_running_requests: int = 64,
                 context_length: int | None = None, weight_version: str = "default", seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.model_path = str(model_path)
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype).to(self.device).eval()
        cfg = self.model.config
        self.vocab_size = int(cfg.vocab_size)
        self.context_length = int(context_length or getattr(cfg, "max_position_embeddings", 32768))
        eos = getattr(self.model.generation_config, "eos_token_id", None) or cfg.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_token_ids = sorted(set(eos))
        self.max_running = max_running_requests
        self.weight_version = str(weight_version)
        self.seed = seed
        self.waiting: queue.Queue[Request] = queue.Queue()
        self.running: list[Request] = []
        self.by_rid: dict[str, Request] = {}
        self.lock = threading.RLock()  # held for each step and for every weight/memory change
        self.wakeup = threading.Event()
        self.paused = False
        self.pause_mode = "abort"
        self.update_session = False  # between /begin_weight_update and /end_weight_update
        self.released: set[str] = set()
        self.groups: dict[str, Any] = {}  # weight-update process groups by name
        self.stopping = False
        self.steps = self.tokens_generated = self.requests_finished = 0
        self.thread = threading.Thread(target=self._loop, name="engine-step-loop", daemon=True)

    # ---- requests -------------------------------------------------------------------------------------------------
    def submit(self, req: Request) -> None:
        if len(req.input_ids) == 0:
            raise BadRequest("input_ids is empty")
        if len(req.input_ids) >= self.context_length:
            raise BadRequest(f"prompt of {len(req.input_ids)} tokens does not fit the context length {self.context_length}")
        bad = [t for t in req.input_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise BadRequest(f"input_ids out of the vocabulary (size {self.vocab_size}): {bad[:5]}")
        gen = self.torch.Generator(device="cpu")
        seed = req.params.sampling_seed
        gen.manual_seed(seed if seed is not None else self.seed * 1_000_003 + zlib.crc32(req.rid.encode()))
        req.generator = gen
        with self.lock:
            if req.rid in self.by_rid:
                raise BadRequest(f"duplicate rid {req.rid!r}")
            self.by_rid[req.rid] = req
        self.waiting.put(req)
        self.wakeup.set()

    def abort(self, rid: str | None = None, abort_all: bool = False, message: str = "Aborted by /abort_request") -> int:
        with self.lock:
            if abort_all:
                targets = list(self.by_rid.values())
            elif rid:  # a batch sent with one rid prefix has rids "<rid>-<i>"
                targets = [r for k, r in self.by_rid.items() if k == rid or k.startswith(f"{rid}-")]
            else:
                targets = []
            for req in targets:
                req.aborted = message
        self.wakeup.set()
        return len(targets)

    def num_requests(self) -> int:
        with self.lock:
            return len(self.by_rid)

    # ---- step loop ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.abort(abort_all=True, message="engine shutting down")
        self.wakeup.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        torch = self.torch
        with torch.inference_mode():
            while not self.stopping:
                self.wakeup.wait(timeout=0.5)
                self.wakeup.clear()
                while not self.stopping:
                    with self.lock:
                        self._finish_aborted()
                        if self.paused or "weights" in self.released:
                            break
                        self._admit()
                        if not self.running:
                            break
                        try:
                            self._step()
                        except Exception as e:  # never leave a request hanging: fail them all with the reason
                            log.exception("engine step failed")
                            for req in list(self.running):
                                self._finish(req, {"type": "abort", "message": f"engine error: {type(e).__name__}: {e}",
                                                   "status_code": 500, "err_type": "InternalServerError"})
                        self.steps += 1
                # drain aborts of waiting requests while paused/released
                with self.lock:
                    self._finish_aborted()

    def _admit(self) -> None:
        while len(self.running) < self.max_running:
            try:
                req = self.waiting.get_nowait()
            except queue.Empty:
                return
            if req.aborted:
                self._finish(req, _abort_reason(req.aborted))
                continue
            if req.params.max_new_tokens == 0:
                self._finish(req, {"type": "length", "length": 0})
                continue
            self._prefill(req)
            self.running.append(req)

    def _finish_aborted(self) -> None:
        for req in [r for r in self.running if r.aborted]:
            self._finish(req, _abort_reason(req.aborted))
        pending = []
        while True:
            try:
                req = self.waiting.get_nowait()
            except queue.Empty:
                break
            if req.aborted:
                self._finish(req, _abort_reason(req.aborted))
            else:
                pending.append(req)
        for req in pending:
            self.waiting.put(req)

    def _prefill(self, req: Request) -> None:
        """KV cache over the prompt and the tokens generated so far (after a weight update: recomputed, as SGLang
        recomputes a retracted request's KV)."""
        from transformers import DynamicCache

        ids = self.torch.tensor([req.input_ids + req.output_ids], device=self.device)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
        req.kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        req.next_logits = out.logits[0, -1].float()

    def _step(self) -> None:
        """Sample one token for every running request, then one batched forward for those still running."""
        torch = self.torch
        alive: list[Request] = []
        for req in list(self.running):  # _finish removes from self.running
            token, lp = self._sample(req)
            if not req.versions or req.versions[-1]["version"] != self.weight_version:
                req.versions.append({"version": self.weight_version, "start": len(req.output_ids), "end": len(req.output_ids)})
            req.output_ids.append(token)
            req.versions[-1]["end"] = len(req.output_ids)
            if req.return_logprob:
                req.logprobs.append(lp)
            self.tokens_generated += 1
            finish = self._check_finished(req, token)
            if finish is not None:
                self._finish(req, finish)
            else:
                alive.append(req)
        if not alive:
            return
        lengths = [r.kv[0][0].shape[2] for r in alive]
        longest = max(lengths)
        layers = []
        for layer in range(len(alive[0].kv)):
            ks, vs = [], []
            for req, n in zip(alive, lengths):
                k, v = req.kv[layer]
                if n < longest:
                    pad = (0, 0, longest - n, 0)
                    k, v = torch.nn.functional.pad(k, pad), torch.nn.functional.pad(v, pad)
                ks.append(k)
                vs.append(v)
            layers.append((torch.cat(ks), torch.cat(vs)))
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        mask = torch.zeros(len(alive), longest + 1, dtype=torch.long, device=self.device)
        for i, n in enumerate(lengths):
            mask[i, longest - n:] = 1
        ids = torch.tensor([[r.output_ids[-1]] for r in alive], device=self.device)
        pos = torch.tensor([[n] for n in lengths], device=self.device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        new_layers = out.past_key_values.layers
        for i, (req, n) in enumerate(zip(alive, lengths)):
            req.kv = [(l.keys[i:i + 1, :, longest - n:], l.values[i:i + 1, :, longest - n:]) for l in new_layers]
            req.next_logits = out.logits[i, -1].float()
        self.running = alive

    def _sample(self, req: Request) -> tuple[int, float]:
        torch = self.torch
        p = req.params
        logits = req.next_logits.clone()
        if len(req.output_ids) < p.min_new_tokens:
            stops = set() if p.ignore_eos else set(p.stop_token_ids) | set(self.eos_token_ids)
            if stops:
                logits[list(stops)] = -math.inf
        if p.greedy:
            logprobs = torch.log_softmax(logits, dim=-1)
            token = int(torch.argmax(logits))
            return token, float(logprobs[token])
        logprobs = torch.log_softmax(logits / p.temperature, dim=-1)
        probs = logprobs.exp()
        keep = torch.ones_like(probs, dtype=torch.bool)
        if p.top_k < probs.numel():
            kth = torch.topk(probs, p.top_k).values[-1]
            keep &= probs >= kth
        if p.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_probs, dim=0)
            drop_sorted = (cum - sorted_probs) > p.top_p  # keep the smallest prefix whose mass reaches top_p
            drop = torch.zeros_like(keep)
            drop[order] = drop_sorted
            keep &= ~drop
        if p.min_p > 0:
            keep &= probs >= p.min_p * probs.max()
        filtered = torch.where(keep, probs, torch.zeros_like(probs))
        token = int(torch.multinomial(filtered / filtered.sum(), 1, generator=req.generator))
        return token, float(logprobs[token])

    def _check_finished(self, req: Request, token: int) -> dict | None:
        p = req.params
        # A stop token beats the length cap on the same step (SGLang's order).
        # (min_new_tokens already kept stop tokens from being sampled.)
        if not p.ignore_eos and (token in p.stop_token_ids or token in self.eos_token_ids):  # SGLang: ignore_eos ignores both
            return {"type": "stop", "matched": token}
        if p.stop:
            tail = self.tokenizer.decode(req.output_ids[-32:], skip_special_tokens=False)
            for s in p.stop:
                if s and s in tail:
                    return {"type": "stop", "matched": s}
        if len(req.output_ids) >= p.max_new_tokens:
            return {"type": "length", "length": p.max_new_tokens}
        if len(req.input_ids) + len(req.output_ids) >= self.context_length:
            return {"type": "length", "length": len(req.output_ids)}
        return None

    def _finish(self, req: Request, finish: dict) -> None:
        req.finish = finish
        req.kv = req.next_logits = None
        if req in self.running:
            self.running.remove(req)
        self.by_rid.pop(req.rid, None)
        self.requests_finished += 1
        try:
            req.done(self._response(req))
        except Exception:  # the HTTP side went away; nothing to deliver to
            log.debug("could not deliver %s", req.rid, exc_info=True)

    def _response(self, req: Request) -> dict:
        p = req.params
        ids = req.output_ids
        text_ids = ids
        matched = (req.finish or {}).get("matched")
        if isinstance(matched, int) and not p.no_stop_trim and ids and ids[-1] == matched:
            text_ids = ids[:-1]
        text = self.tokenizer.decode(text_ids, skip_special_tokens=p.skip_special_tokens,
                                     spaces_between_special_tokens=p.spaces_between_special_tokens)
        if isinstance(matched, str) and not p.no_stop_trim and matched in text:
            text = text[: text.index(matched)]
        meta = {
            "id": req.rid,
            "finish_reason": req.finish,
            "prompt_tokens": len(req.input_ids),
            "completion_tokens": len(ids),
            "cached_tokens": 0,
            "weight_version": self.weight_version,
            "weight_versions": req.versions,
            "e2e_latency": time.perf_counter() - req.start,
        }
        if req.return_logprob:
            meta["output_token_logprobs"] = [[lp, t, None] for lp, t in zip(req.logprobs, ids)]
        return {"text": text, "output_ids": list(ids), "meta_info": meta}

    # ---- weights and memory ---------------------------------------------------------------------------------------
    def load_state_dict(self, tensors: dict, source: str) -> None:
        """Copy named HF tensors into the model in place; every name and shape is checked first."""
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        tied = getattr(self.model.config, "tie_word_embeddings", False)
        unknown = [n for n in tensors if n not in params and not (tied and n == "lm_head.weight")]
        if unknown:
            raise BadRequest(f"{source}: tensors the model does not have: {unknown[:5]}")
        for name, t in tensors.items():
            if name in params and tuple(t.shape) != tuple(params[name].shape):
                raise BadRequest(f"{source}: {name} has shape {tuple(t.shape)}, the model expects {tuple(params[name].shape)}")
        with self.torch.no_grad():
            for name, t in tensors.items():
                if name in params:
                    params[name].copy_(t.to(device=params[name].device, dtype=params[name].dtype))
            for req in self.running:  # their KV came from the old weights
                self._prefill(req)

    def load_from_disk(self, model_path: str) -> int:
        from safetensors.torch import load_file

        files = sorted(Path(model_path).glob("*.safetensors"))
        if not files:
            raise BadRequest(f"no *.safetensors files in {model_path}")
        tensors = {}
        for f in files:
            tensors.update(load_file(str(f)))
        self.load_state_dict(tensors, str(model_path))
        return len(tensors)

    def set_version(self, version: str | None) -> None:
        if version is not None:
            self.weight_version = str(version)

    def release(self, tags: list[str]) -> None:
        torch = self.torch
        if "weights" in tags and "weights" not in self.released:
            # The weights leave the device: a meta-device model holds no storage. On resume they come back from
            # the checkpoint last loaded (or from the next weight update), like SGLang without a CPU backup.
            # Buffers (RoPE inv_freq: computed, not in the checkpoint) are small and kept on the host.
            self._buffers = {n: b.detach().cpu().clone() for n, b in self.model.named_buffers()}
            self.model.to("meta")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.released |= set(tags)

    def resume(self, tags: list[str]) -> None:
        if "weights" in tags and "weights" in self.released:
            self.model.to_empty(device=self.device)
            with self.torch.no_grad():
                for n, b in self.model.named_buffers():
                    b.copy_(self._buffers[n])
            self.load_from_disk(self.model_path)
            self.model.tie_weights()
        self.released -= set(tags)
        self.wakeup.set()


def _abort_reason(message: str) -> dict:
    return {"type": "abort", "message": message, "status_code": None, "err_type": None}


# ---- HTTP ---------------------------------------------------------------------------------------------------------

def _as_list(value: Any, n: int, name: str) -> list:
    if isinstance(value, list) and n > 1 and len(value) == n and not (name == "stop" and isinstance(value[0], str)):
        return value
    return [value] * n


def build_app(state: EngineState, served_model_name: str | None = None):
    app = FastAPI(title="longtrace torch engine (SGLang HTTP API)")
    name = served_model_name or state.model_path
    started = time.time()

    def ok(content: dict | None = None, status: int = 200):
        return JSONResponse(content if content is not None else {"success": True}, status_code=status)

    async def body(request: HttpRequest) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        import json

        data = json.loads(raw)
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    @app.exception_handler(BadRequest)
    async def bad_request(_, exc: BadRequest):
        return JSONResponse({"error": {"message": str(exc), "code": 400}, "success": False, "message": str(exc)}, status_code=400)

    @app.get("/health")
    async def health():
        return Response(status_code=200 if state.thread.is_alive() and not state.stopping else 503)

    @app.get("/health_generate")
    async def health_generate():
        if not state.thread.is_alive():
            return Response(status_code=503)
        if state.num_requests() or state.paused or state.released:
            return Response(status_code=200)  # busy: like SGLang, the check is skipped
        out = await _generate_one(state, [0], {"max_new_tokens": 1, "temperature": 0.0}, False, f"HEALTH_CHECK_{uuid.uuid4().hex}")
        return Response(status_code=200 if out["meta_info"]["finish_reason"]["type"] != "abort" else 503)

    def model_info():
        cfg = state.model.config
        return {
            "model_path": state.model_path, "served_model_name": name, "tokenizer_path": state.model_path,
            "is_generation": True, "preferred_sampling_params": None, "weight_version": state.weight_version,
            "load_format": "safetensors", "model_type": getattr(cfg, "model_type", None),
            "architectures": getattr(cfg, "architectures", None), "has_image_understanding": False,
            "has_audio_understanding": False,
        }

    def server_info():
        return {
            "version": "longtrace-torch-engine", "frontend": "python", "model_path": state.model_path,
            "device": str(state.device), "dtype": str(state.dtype).replace("torch.", ""),
            "max_running_requests": state.max_running, "context_length": state.context_length,
            "startup_time": started, "weight_version": state.weight_version,
            "memory_released": sorted(state.released), "paused": state.paused,
            "internal_states": [{"num_running_reqs": len(state.running), "num_waiting_reqs": state.waiting.qsize(),
                                 "steps": state.steps, "tokens_generated": state.tokens_generated,
                                 "requests_finished": state.requests_finished}],
            "eos_token_ids": state.eos_token_ids, "pid": os.getpid(),
        }

    app.get("/get_model_info")(model_info)
    app.get("/model_info")(model_info)
    app.get("/get_server_info")(server_info)
    app.get("/server_info")(server_info)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "longtrace", "root": name}]}

    @app.get("/v1/loads")
    async def loads():  # the fields of SGLang's /v1/loads that this engine can tell
        return {"version": "longtrace-torch-engine", "loads": [{
            "dp_rank": 0, "num_running_reqs": len(state.running), "num_waiting_reqs": state.waiting.qsize()}]}

    @app.api_route("/generate", methods=["POST", "PUT"])
    async def generate(request: HttpRequest):
        data = await body(request)
        if data.get("stream"):
            raise BadRequest("stream=true is not supported by the torch engine")
        if data.get("logprob_start_len") not in (None, -1) or data.get("top_logprobs_num") or data.get("token_ids_logprob"):
            raise BadRequest("input/top log-probs are not supported by the torch engine (output_token_logprobs are)")
        ids, text = data.get("input_ids"), data.get("text")
        if (ids is None) == (text is None):
            raise BadRequest("give exactly one of input_ids or text")
        if ids is None:
            batch = isinstance(text, list)
            texts = text if batch else [text]
            prompts = [state.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        else:
            batch = bool(ids) and isinstance(ids[0], list)
            prompts = ids if batch else [ids]
        n = len(prompts)
        if n == 0:
            raise BadRequest("empty batch")
        params = _as_list(data.get("sampling_params") or {}, n, "sampling_params")
        logprob = _as_list(bool(data.get("return_logprob") or False) if not isinstance(data.get("return_logprob"), list) else data["return_logprob"], n, "return_logprob")
        rid = data.get("rid")
        if rid is None:
            rids = [uuid.uuid4().hex for _ in range(n)]
        elif isinstance(rid, list):
            if len(rid) != n:
                raise BadRequest(f"{len(rid)} rids for {n} prompts")
            rids = [str(r) for r in rid]
        else:
            rids = [str(rid)] if n == 1 else [f"{rid}-{i}" for i in range(n)]
        outs = await asyncio.gather(*(_generate_one(state, list(map(int, p)), sp, bool(lp), r)
                                      for p, sp, lp, r in zip(prompts, params, logprob, rids)))
        for o, i in zip(outs, range(n)):
            if batch:
                o["index"] = i
        return JSONResponse(outs if batch else outs[0])

    @app.post("/abort_request")
    async def abort_request(request: HttpRequest):
        data = await body(request)
        state.abort(rid=data.get("rid") or None, abort_all=bool(data.get("abort_all")))
        return Response(status_code=200)

    @app.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache():
        held = state.paused and state.pause_mode != "in_place"  # SGLang: retracted requests wait, they do not run
        if state.num_requests() and not held:
            return Response("Flush cache failed: requests are running or waiting.\n", status_code=400)
        return Response("Cache flushed.\n", status_code=200)

    @app.post("/pause_generation")
    async def pause_generation(request: HttpRequest):
        mode = (await body(request)).get("mode", "abort")
        if mode not in ("abort", "retract", "in_place"):
            raise BadRequest(f"unknown pause mode {mode!r}")
        with state.lock:
            state.paused, state.pause_mode = True, mode
            if mode == "abort":
                state.abort(abort_all=True, message="Aborted by /pause_generation")
                state._finish_aborted()
        return ok({"message": "Generation paused successfully.", "status": "ok"})

    @app.post("/continue_generation")
    async def continue_generation():
        with state.lock:
            state.paused = False
        state.wakeup.set()
        return ok({"message": "Generation continued successfully.", "status": "ok"})

    async def locked(fn, *args):
        """Run fn under the engine lock in a worker thread (between decode steps)."""
        def run():
            with state.lock:
                return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, run)

    @app.post("/update_weights_from_disk")
    async def update_weights_from_disk(request: HttpRequest):
        data = await body(request)
        path = data.get("model_path")
        if not path:
            raise BadRequest("model_path is required")
        if data.get("abort_all_requests"):
            state.abort(abort_all=True, message="Aborted by weight update")
        running = state.num_requests()

        def load():
            if "weights" in state.released:
                raise BadRequest("weights are released; call /resume_memory_occupation first")
            n = state.load_from_disk(path)
            state.model_path = str(path)
            state.set_version(data.get("weight_version"))
            return n
        try:
            n = await locked(load)
        except BadRequest as e:
            return ok({"success": False, "message": str(e), "num_paused_requests": 0}, 400)
        log.info("loaded %d tensors from %s, weight_version=%s", n, path, state.weight_version)
        return ok({"success": True, "message": f"Succeeded to update model weights ({n} tensors).", "num_paused_requests": running})

    def session_refusal(route: str):
        if state.update_session:
            return None
        return ok({"success": False, "message": f"{route} must run between begin_weight_update() and end_weight_update()"}, 400)

    @app.post("/begin_weight_update")
    async def begin_weight_update():
        if state.update_session:
            return ok({"success": False, "message": "a weight-update session is already open; call end_weight_update() first"}, 400)
        state.update_session = True
        return ok({"success": True, "message": "Success"})

    @app.post("/end_weight_update")
    async def end_weight_update():
        if not state.update_session:
            return ok({"success": False, "message": "no weight-update session is open; call begin_weight_update() first"}, 400)
        state.update_session = False
        return ok({"success": True, "message": "Success"})

    @app.post("/init_weights_update_group")
    async def init_weights_update_group(request: HttpRequest):
        data = await body(request)
        try:
            for key in ("master_address", "master_port", "rank_offset", "world_size"):
                if key not in data:
                    raise BadRequest(f"{key} is required")
            group = data.get("group_name", "weight_update_group")
            backend = data.get("backend", "nccl")
            if backend == "nccl" and state.device.type != "cuda":
                raise BadRequest("backend nccl needs a GPU engine; use backend gloo on CPU")
            pg = await asyncio.get_running_loop().run_in_executor(
                None, init_weight_update_group, backend, data["master_address"], int(data["master_port"]),
                int(data["world_size"]), int(data["rank_offset"]), group, 300.0)
            state.groups[group] = pg
        except BadRequest as e:
            return ok({"success": False, "message": str(e)}, 400)
        except Exception as e:
            return ok({"success": False, "message": f"init_weights_update_group failed: {type(e).__name__}: {e}"}, 400)
        return ok({"success": True, "message": f"joined weight update group {group!r}"})

    @app.post("/destroy_weights_update_group")
    async def destroy_weights_update_group(request: HttpRequest):
        group = (await body(request)).get("group_name", "weight_update_group")
        pg = state.groups.pop(group, None)
        if pg is None:
            return ok({"success": False, "message": "The group to be destroyed does not exist."}, 400)
        import torch.distributed as dist

        dist.destroy_process_group(pg)
        return ok({"success": True, "message": f"left {group!r}"})

    async def update_named_tensors(endpoint: str, source: str, get_tensors, version):
        """Under the lock: take the named tensors ``get_tensors()`` returns into the model and set the weight
        version; SGLang's reply (a failure is a 400 with the exception)."""
        def update():
            tensors = get_tensors()
            state.load_state_dict(tensors, source)
            state.set_version(version)
            return len(tensors)
        try:
            n = await locked(update)
        except Exception as e:
            return ok({"success": False, "message": f"{endpoint} failed: {type(e).__name__}: {e}"}, 400)
        return ok({"success": True, "message": f"Succeeded to update {n} parameters."})

    @app.post("/update_weights_from_distributed")
    async def update_weights_from_distributed(request: HttpRequest):
        data = await body(request)
        if refusal := session_refusal("update_weights_from_distributed"):
            return refusal
        torch = state.torch
        group = data.get("group_name", "weight_update_group")
        pg = state.groups.get(group)
        if pg is None:
            return ok({"success": False, "message": f"no weight update group {group!r}; call /init_weights_update_group"}, 400)
        names, dtypes, shapes = data.get("names") or [], data.get("dtypes") or [], data.get("shapes") or []
        if not (len(names) == len(dtypes) == len(shapes)):
            return ok({"success": False, "message": "names, dtypes and shapes differ in length"}, 400)

        def receive():
            import torch.distributed as dist

            types = [getattr(torch, str(d).replace("torch.", "")) for d in dtypes]
            if data.get("load_format") == "flattened_bucket":  # one broadcast of the bucket's bytes
                sizes = [math.prod(shape) * t.itemsize for shape, t in zip(shapes, types)]
                flat = torch.empty(sum(sizes), dtype=torch.uint8, device=state.device)
                dist.broadcast(flat, src=0, group=pg)
                out, start = {}, 0
                for name, shape, t, n in zip(names, shapes, types, sizes):
                    out[name] = flat[start:start + n].view(t).reshape(shape)
                    start += n
                return out
            tensors = {}
            for name, t, shape in zip(names, types, shapes):
                tensors[name] = torch.empty(shape, dtype=t, device=state.device)
                dist.broadcast(tensors[name], src=0, group=pg)
            return tensors
        return await update_named_tensors("update_weights_from_distributed", f"group {group}", receive,
                                          data.get("weight_version"))

    @app.post("/update_weights_from_tensor")
    async def update_weights_from_tensor(request: HttpRequest):
        data = await body(request)
        if refusal := session_refusal("update_weights_from_tensor"):
            return refusal
        payloads = data.get("serialized_named_tensors") or []
        if not payloads:
            return ok({"success": False, "message": "serialized_named_tensors is empty"}, 400)
        fmt = data.get("load_format")

        def load():
            # One payload per TP rank of the engine; the torch engine has one rank, so payload 0 is its own.
            obj = deserialize_tensors(payloads[0])
            return unflatten_bucket(obj) if fmt == "flattened_bucket" else dict(obj)
        return await update_named_tensors("update_weights_from_tensor", "update_weights_from_tensor", load,
                                          data.get("weight_version"))

    @app.post("/update_weight_version")
    async def update_weight_version(request: HttpRequest):
        data = await body(request)
        if "new_version" not in data:
            raise BadRequest("new_version is required")
        if data.get("abort_all_requests", True):
            state.abort(abort_all=True, message="Aborted by weight version update")
        await locked(state.set_version, data["new_version"])
        return ok({"success": True, "message": f"Weight version updated to {data['new_version']}", "new_version": data["new_version"]})

    @app.api_route("/release_memory_occupation", methods=["GET", "POST"])
    async def release_memory_occupation(request: HttpRequest):
        tags = (await body(request)).get("tags") or ["weights", "kv_cache"]
        await locked(state.release, list(tags))
        return Response(status_code=200)

    @app.api_route("/resume_memory_occupation", methods=["GET", "POST"])
    async def resume_memory_occupation(request: HttpRequest):
        tags = (await body(request)).get("tags") or ["weights", "kv_cache"]
        await locked(state.resume, list(tags))
        return Response(status_code=200)

    return app


async def _generate_one(state: EngineState, ids: list[int], raw_params: dict, return_logprob: bool, rid: str) -> dict:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def done(result: dict) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(result))
    params = SamplingParams.parse(raw_params, state.vocab_size)
    state.submit(Request(rid=rid, input_ids=ids, params=params, return_logprob=return_logprob, done=done))
    return await fut


# ---- CLI ----------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longtrace engine serve",
                                description="Serve a Hugging Face causal LM over SGLang's HTTP API (transformers, CPU or one GPU).")
    p.add_argument("--model-path", required=True, help="HF checkpoint directory (config, safetensors, tokenizer)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 opens it up)")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--max-running-requests", type=int, default=64, help="requests decoded together in one step")
    p.add_argument("--context-length", type=int, default=None, help="prompt + response cap (default: the model's)")
    p.add_argument("--weight-version", default="default", help="initial weight version (SGLang's default: 'default')")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="base seed of requests without sampling_seed")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.max_running_requests < 1:
        print("--max-running-requests must be >= 1", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"--device {args.device}: no CUDA device is available", file=sys.stderr)
            return 2
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    import uvicorn

    state = EngineState(args.model_path, device=args.device, dtype=args.dtype, max_running_requests=args.max_running_requests,
                        context_length=args.context_length, weight_version=args.weight_version, seed=args.seed)
    state.start()
    log.info("torch engine: %s on %s, http://%s:%d", args.model_path, args.device, args.host, args.port)
    try:
        uvicorn.run(build_app(state, args.served_model_name), host=args.host, port=args.port,
                    log_level="warning" if args.log_level == "info" else args.log_level, timeout_graceful_shutdown=5)
    finally:
        state.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
