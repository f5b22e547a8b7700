"""HTTP client of the reward server, implementing the same ``RewardFn`` interface as ``RewardScorer``.

The trainer picks one or the other (``--reward-url`` or in-process); nothing else changes.
"""
from __future__ import annotations

from typing import Sequence

import httpx

from .http_retry import PerLoop, RetriesExhausted, post_with_retries
from .schema import GroupResult, RewardRequest, SampleReward
from .scorer import RewardInputError


class RewardServerError(RuntimeError):
    """The server could not be reached or kept failing after retries."""


class RewardClient:
    def __init__(self, url: str, timeout_s: float = 600.0, retries: int = 5, backoff_s: float = 1.0):
        self.url = url.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._clients = PerLoop(lambda: httpx.AsyncClient(base_url=self.url, timeout=timeout_s))

    async def _post(self, path: str, body: dict) -> dict:
        try:
            resp = await post_with_retries(
                self._clients.get(), path, json=body, retries=self.retries, backoff_s=self.backoff_s,
                what=f"reward server {path}",
            )
        except RetriesExhausted as e:
            raise RewardServerError(f"{self.url}{path}: {e}") from None
        if resp.status_code >= 400:
            raise RewardInputError(f"{self.url}{path} rejected the request (HTTP {resp.status_code}): {resp.text[:500]}")
        return resp.json()

    async def score(self, request: RewardRequest, evaluation: bool = False) -> SampleReward:
        body = request.model_dump(exclude_none=True)
        return SampleReward.model_validate(await self._post(f"/evaluate?evaluation={str(evaluation).lower()}", body))

    async def score_group(self, requests: Sequence[RewardRequest], evaluation: bool = False) -> GroupResult:
        body = {"samples": [r.model_dump(exclude_none=True) for r in requests], "evaluation": evaluation}
        return GroupResult.model_validate(await self._post("/evaluate_batch", body))

    async def health(self) -> dict:
        resp = await self._clients.get().get("/health")
        resp.raise_for_status()
        return resp.json()

    async def aclose(self) -> None:
        await self._clients.aclose()
