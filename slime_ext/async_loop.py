"""An asyncio event loop on a thread of its own, for actors whose methods are synchronous.

Ray may already run a loop on the thread that executes an actor method, so ``asyncio.run`` /
``run_until_complete`` cannot be used there; and async HTTP clients (aiohttp, httpx) must stay in the loop they
were created in. ``LoopThread.run(coro)`` runs every coroutine of an actor in one long-lived loop.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine


class LoopThread:
    def __init__(self, name: str = "async-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine, timeout_s: float | None = None) -> Any:
        """Run ``coro`` in the loop and wait for its result (exceptions propagate)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
