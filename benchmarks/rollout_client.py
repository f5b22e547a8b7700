"""Rollout client + sglang-router overhead against engines that answer instantly (or after a fixed time).

    .venv/bin/python benchmarks/rollout_client.py [--requests 2048] [--concurrency 512] [--engines 2] [--tokens 64]
                                                 [--engine-seconds 2.0]

Fake engines (one uvicorn process each) speak SGLang's /generate schema: every request gets ``--tokens`` output
tokens with log-prob triples, either at once or after ``--engine-seconds`` of (sleeping) "engine time".
Printed:
  1. throughput (requests/s) at --concurrency in flight: a bare aiohttp loop straight to one engine (the baseline; a bare httpx loop for comparison),
     RolloutClient straight to the engine, RolloutClient through the router;
  2. added latency per request at concurrency 1: client vs bare httpx, router vs direct;
  3. a rollout step of --concurrency requests that each take --engine-seconds in the engines: wall time vs the
     engine time, i.e. the share of the step spent outside the engines (target < 1% at 512).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig  # noqa: E402
from slime_ext.router import RouterClient, RouterConfig, router_command  # noqa: E402
from slime_ext.sample import Sample  # noqa: E402
from slime_ext.sglang_engine import ManagedProcess  # noqa: E402

FAKE_ENGINE = r'''
import asyncio, json, sys
N, DELAY = int(sys.argv[2]), float(sys.argv[3])
tokens = list(range(100, 100 + N - 1)) + [2]
def body(rid, n_in):
    return json.dumps({"text": "x" * N, "output_ids": tokens, "meta_info": {"id": rid,
        "finish_reason": {"type": "stop", "matched": 2}, "prompt_tokens": n_in, "completion_tokens": N,
        "weight_version": "1", "output_token_logprobs": [[-0.5, t, None] for t in tokens]}}).encode()
INFO = json.dumps({"model_path": "fake", "is_generation": True, "weight_version": "1"}).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        m = await receive()
        raw += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/generate":
        req = json.loads(raw)
        if DELAY:
            await asyncio.sleep(DELAY)
        out = body(req.get("rid"), len(req["input_ids"]))
    elif scope["path"] in ("/get_model_info", "/model_info"):
        out = INFO
    else:
        out = b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", backlog=4096)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(url)


class Stack:
    """n fake engines (+ a router in front of them)."""

    def __init__(self, n: int, tokens: int, delay: float):
        self.procs, self.urls = [], []
        for _ in range(n):
            port = free_port()
            self.procs.append(ManagedProcess("fake-engine", [sys.executable, "-c", FAKE_ENGINE, str(port), str(tokens), str(delay)]))
            self.urls.append(f"http://127.0.0.1:{port}")
        for u in self.urls:
            wait_up(u + "/health")
        port = free_port()
        self.procs.append(ManagedProcess("router", router_command(RouterConfig(log_level="error"), port, prometheus_port=free_port())))
        self.router = f"http://127.0.0.1:{port}"
        wait_up(self.router + "/health")
        rc = RouterClient(self.router)
        for u in self.urls:
            rc.add_worker(u)
        rc.close()

    def close(self) -> None:
        for p in self.procs:
            p.stop(5)


def prompt(i: int, length: int) -> list[int]:
    return [(i * 7 + k) % 1000 + 3 for k in range(length)]


async def bare_aiohttp(url: str, n: int, concurrency: int, prompt_len: int, max_new: int) -> float:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 16)) as c:
        async def one(i):
            async with sem:
                async with c.post(f"{url}/generate", json={"input_ids": prompt(i, prompt_len), "return_logprob": True,
                                                          "sampling_params": {"max_new_tokens": max_new}, "rid": f"a{i}"}) as r:
                    data = json.loads(await r.read())
                    return [t[1] for t in data["meta_info"]["output_token_logprobs"]]
        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t


async def bare_httpx(url: str, n: int, concurrency: int, prompt_len: int, max_new: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency + 16),
                                 trust_env=False) as c:
        async def one(i):
            async with sem:
                r = await c.post("/generate", json={"input_ids": prompt(i, prompt_len), "return_logprob": True,
                                                    "sampling_params": {"max_new_tokens": max_new}, "rid": f"b{i}"})
                data = r.json()
                return [t[1] for t in data["meta_info"]["output_token_logprobs"]]
        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t


async def with_client(url: str, n: int, concurrency: int, prompt_len: int, max_new: int, worker_urls) -> tuple[float, list]:
    client = RolloutClient(ClientConfig(url=url, concurrency=concurrency), worker_urls=worker_urls)
    sampling = SamplingConfig(max_response_len=max_new, stop_token_ids=[2])
    samples = [Sample(prompt_tokens=prompt(i, prompt_len), group_id=i // 8, index=i % 8, prompt_id=str(i // 8)) for i in range(n)]
    t = time.perf_counter()
    await asyncio.gather(*(client.generate(s, sampling) for s in samples))
    dt = time.perf_counter() - t
    await client.aclose()
    bad = [s for s in samples if s.status != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} samples did not complete: {bad[0].error}")
    return dt, samples


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2048)
    p.add_argument("--concurrency", type=int, default=512)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64, help="output tokens per response")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--engine-seconds", type=float, default=2.0, help="engine time per request in part 3")
    p.add_argument("--latency-requests", type=int, default=200)
    a = p.parse_args(argv)
    figures = {}
    stack = Stack(a.engines, a.tokens, 0.0)
    try:
        direct = stack.urls[0]
        for _ in range(2):  # warm-up
            asyncio.run(bare_aiohttp(direct, 64, 64, a.prompt_len, a.tokens))
        t_bare = asyncio.run(bare_aiohttp(direct, a.requests, a.concurrency, a.prompt_len, a.tokens))
        t_httpx = asyncio.run(bare_httpx(direct, a.requests, a.concurrency, a.prompt_len, a.tokens))
        t_client, _ = asyncio.run(with_client(direct, a.requests, a.concurrency, a.prompt_len, a.tokens, [direct]))
        t_router, _ = asyncio.run(with_client(stack.router, a.requests, a.concurrency, a.prompt_len, a.tokens, stack.urls))
        figures["throughput_rps"] = {"bare_aiohttp_direct": a.requests / t_bare, "bare_httpx_direct": a.requests / t_httpx, "client_direct": a.requests / t_client,
                                     "client_via_router": a.requests / t_router}
        n = a.latency_requests
        l_bare = asyncio.run(bare_aiohttp(direct, n, 1, a.prompt_len, a.tokens)) / n
        l_client = asyncio.run(with_client(direct, n, 1, a.prompt_len, a.tokens, [direct]))[0] / n
        l_router = asyncio.run(with_client(stack.router, n, 1, a.prompt_len, a.tokens, stack.urls))[0] / n
        figures["latency_ms_at_concurrency_1"] = {"bare_aiohttp_direct": l_bare * 1e3, "client_direct": l_client * 1e3,
                                                 "client_via_router": l_router * 1e3,
                                                 "added_by_client": (l_client - l_bare) * 1e3,
                                                 "added_by_router": (l_router - l_client) * 1e3}
    finally:
        stack.close()
    stack = Stack(a.engines, a.tokens, a.engine_seconds)
    try:
        asyncio.run(with_client(stack.router, 32, 32, a.prompt_len, a.tokens, stack.urls))  # warm-up
        # every request takes engine_seconds inside the engines and all run concurrently: the ideal step time is
        # engine_seconds; the rest is client + router + HTTP.
        wall, _ = asyncio.run(with_client(stack.router, a.concurrency, a.concurrency, a.prompt_len, a.tokens, stack.urls))
        figures["rollout_step"] = {"requests": a.concurrency, "engine_seconds": a.engine_seconds, "wall_seconds": wall,
                                   "outside_engines_pct": 100 * (wall - a.engine_seconds) / a.engine_seconds}
    finally:
        stack.close()
    th, lat, step = figures["throughput_rps"], figures["latency_ms_at_concurrency_1"], figures["rollout_step"]
    print(f"machine: {os.cpu_count()} CPUs; {a.engines} fake engines; {a.tokens} output tokens, {a.prompt_len} prompt tokens")
    print(f"throughput at {a.concurrency} in flight, {a.requests} requests:")
    base = th["bare_aiohttp_direct"]
    print(f"  bare aiohttp -> engine       {base:8.0f} req/s   (baseline)")
    print(f"  bare httpx -> engine         {th['bare_httpx_direct']:8.0f} req/s   ratio to baseline {th['bare_httpx_direct'] / base:.2f}")
    print(f"  RolloutClient -> engine      {th['client_direct']:8.0f} req/s   ratio to baseline {th['client_direct'] / base:.2f}")
    print(f"  RolloutClient -> router      {th['client_via_router']:8.0f} req/s   ratio to baseline {th['client_via_router'] / base:.2f}")
    print(f"latency at concurrency 1: bare {lat['bare_aiohttp_direct']:.2f} ms, client {lat['client_direct']:.2f} ms "
          f"(+{lat['added_by_client']:.2f}), via router {lat['client_via_router']:.2f} ms (+{lat['added_by_router']:.2f})")
    print(f"rollout step: {step['requests']} requests x {step['engine_seconds']:.1f} s engine time -> wall "
          f"{step['wall_seconds']:.3f} s: {step['outside_engines_pct']:.2f}% outside the engines (target < 1%)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
