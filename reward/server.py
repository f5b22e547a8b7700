"""The reward server: ``longtrace reward serve`` (FastAPI + uvicorn, 127.0.0.1 by default).

  POST /evaluate         one sample (RewardRequest) -> SampleReward; ``?evaluation=true`` forces eta = 0
  POST /evaluate_batch   {"samples": [...], "evaluation": false} = one GRPO group -> GroupResult (combined rewards)
  POST /slime            slime's remote_rm body {"prompt", "response", "label"} -> SampleReward as a JSON object
                         (slime: ``--rm-type remote_rm --rm-url http://HOST:PORT/slime --reward-key reward``), or the
                         bare reward with ``?scalar=true``; a failed judge answers 503 so slime retries
  GET  /health           {"status": "ok"}
  GET  /metrics          counters as JSON, or Prometheus text with ``?format=prometheus``

Bad input never takes the server down: malformed JSON -> 400, schema problems -> 422 naming each field,
unusable rubric items -> 422, bodies over the size limit -> 413, anything unexpected -> 500 (logged).
"""
from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from .schema import BatchRequest, GroupResult, RewardRequest, SampleReward
from .scorer import RewardInputError, RewardScorer
from .slime_rm import request_from_remote_rm

log = logging.getLogger(__name__)
DEFAULT_PORT = 7248  # the port LongTraceRL's reward server uses


class SlimeRemoteRM(BaseModel):
    """The body slime's ``remote_rm`` posts (slime/rollout/rm_hub/__init__.py at slime 624b824)."""

    model_config = ConfigDict(extra="allow")
    prompt: Union[StrictStr, list, None] = None
    response: StrictStr
    label: Any = None


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``, whether declared up front or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body larger than {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps({"error": message}).encode()
            await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.max_bytes:  # an HTTPException passes through FastAPI's body parsing as a 413
                raise HTTPException(status_code=413, detail=message)
            return event

        await self.app(scope, limited_receive, send)


def create_app(scorer: RewardScorer, max_body_bytes: int = 64 << 20) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await scorer.aclose()

    app = FastAPI(title="LongTrace-RL reward server", lifespan=lifespan)
    metrics = scorer.metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.observe_request(request.url.path, ok=False)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(status_code=400, content={"error": "body is not valid JSON"})
        details = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or '(body)'}: {e['msg']}" for e in errors]
        body = getattr(exc, "body", None)
        slime_body = isinstance(body, dict) and "prompt" in body and "extra_reward_info" not in body
        if request.url.path.startswith("/evaluate") and slime_body:
            details.append("this looks like slime's remote_rm body {prompt, response, label}: "
                           "set --rm-url to .../slime")
        return JSONResponse(status_code=422, content={"error": "invalid request", "details": details})

    @app.exception_handler(RewardInputError)
    async def _unscorable(request: Request, exc: RewardInputError):
        metrics.observe_request(request.url.path, ok=False)
        return JSONResponse(status_code=422, content={"error": "cannot score request", "details": [str(exc)]})

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        metrics.observe_request(request.url.path, ok=False)
        return JSONResponse(status_code=500, content={"error": f"internal error: {type(exc).__name__}: {exc}"})

    @app.post("/evaluate", response_model=SampleReward)
    async def evaluate(body: RewardRequest, evaluation: bool = False) -> SampleReward:
        result = await scorer.score(body, evaluation=evaluation)
        metrics.observe_request("/evaluate")
        return result

    @app.post("/evaluate_batch", response_model=GroupResult)
    async def evaluate_batch(body: BatchRequest) -> GroupResult:
        result = await scorer.score_group(body.samples, evaluation=body.evaluation)
        metrics.observe_request("/evaluate_batch")
        return result

    @app.post("/slime")
    async def slime_remote_rm(body: SlimeRemoteRM, scalar: bool = False, evaluation: bool = False):
        request = request_from_remote_rm(body.prompt, body.response, body.label)
        # Without rubrics (a plain label: slime sends no metadata) the reward is the outcome, as at evaluation.
        outcome_only = evaluation or not request.extra_reward_info.rubrics
        result = await scorer.score(request, evaluation=outcome_only)
        if result.judge_error is not None and scorer.cfg.combine.on_judge_error == "drop":
            # A reward would be trained on; slime's remote_rm retries on an error status and stops the run when
            # the judge stays down.
            metrics.observe_request("/slime", ok=False)
            answer = {"error": "outcome judge failed", "details": [result.judge_error]}
            return JSONResponse(status_code=503, content=answer)
        metrics.observe_request("/slime")
        return result.reward if scalar else result.model_dump()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "judge": scorer.judge.name}

    @app.get("/metrics")
    async def get_metrics(format: str = "json"):
        if format == "prometheus":
            return PlainTextResponse(metrics.prometheus())
        return metrics.snapshot()

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app
