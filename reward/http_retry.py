"""HTTP plumbing shared by the LLM judge and the reward-server client.

* ``PerLoop``: one ``httpx.AsyncClient`` (or semaphore) per running event loop.
* ``post_with_retries``: POST with exponential backoff and jitter on transport errors, timeouts, 429 and 5xx.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable, Generic, TypeVar

import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable problem; the message says the last one."""


class PerLoop(Generic[T]):
    """One object per running event loop, made on first use (httpx clients and asyncio primitives cannot be
    shared across loops, and the CLI, the tests and slime's rollout threads each run their own)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._items: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self._items.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = self._items[id(loop)] = (loop, self._factory())
        return entry[1]

    async def aclose(self) -> None:
        """Close (``aclose()``) the current loop's object, forget all of them."""
        current = asyncio.get_running_loop()
        for loop, item in self._items.values():
            if loop is current and hasattr(item, "aclose"):
                await item.aclose()
        self._items.clear()


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, with +-50% jitter."""
    return min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + random.random())


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    json: Any,
    headers: dict[str, str] | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    backoff_max_s: float = 30.0,
    semaphore: asyncio.Semaphore | None = None,
    what: str = "request",
) -> httpx.Response:
    """The first response that is neither 429 nor 5xx (4xx included: the caller decides), else RetriesExhausted."""
    problem = "no attempt made"
    for attempt in range(1 + retries):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt, backoff_s, backoff_max_s))
        try:
            if semaphore is not None:
                async with semaphore:
                    resp = await client.post(url, json=json, headers=headers)
            else:
                resp = await client.post(url, json=json, headers=headers)
            if resp.status_code != 429 and resp.status_code < 500:
                return resp
            problem = f"HTTP {resp.status_code}"
        except httpx.TimeoutException:
            problem = f"timeout after {client.timeout.read:g} s" if client.timeout.read else "timeout"
        except httpx.TransportError as e:
            problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        log.warning("%s failed (%s), attempt %d/%d", what, problem, attempt + 1, 1 + retries)
    raise RetriesExhausted(f"{problem}; gave up after {1 + retries} attempts")
