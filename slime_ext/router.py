"""sglang-router (pip ``sglang-router``, pinned in versions.py): command line and its worker-management API.

The router is a Rust binary that load-balances SGLang's native routes (``/generate``, ``/flush_cache`` broadcast,
``/get_model_info`` ...) over registered workers. Workers are added at run time with ``POST /workers {"url"}``
(answered 202, registration finishes in the background), listed with ``GET /workers`` and removed with
``DELETE /workers/{id}``. It does not forward ``/abort_request``: aborts go to every worker directly.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import httpx

ROUTER_POLICIES = ("random", "round_robin", "cache_aware", "power_of_two", "manual")  # `launch_router --help`, 0.3.2

@dataclass
class RouterConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    policy: str = "round_robin"  # one of ROUTER_POLICIES
    request_timeout_s: int = 14400  # slime's --sglang-router-request-timeout-secs default
    log_level: str = "warn"
    extra_args: list[str] = field(default_factory=list)  # passed through to sglang_router.launch_router


def router_command(cfg: RouterConfig, port: int, worker_urls: list[str] | None = None,
                   prometheus_port: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "sglang_router.launch_router", "--host", cfg.host, "--port", str(port),
           "--policy", cfg.policy, "--request-timeout-secs", str(cfg.request_timeout_s), "--log-level", cfg.log_level]
    if prometheus_port is not None:  # the router always serves metrics; its default port clashes between routers
        cmd += ["--prometheus-host", cfg.host, "--prometheus-port", str(prometheus_port)]
    if worker_urls:
        cmd += ["--worker-urls", *worker_urls]
    return cmd + list(cfg.extra_args)


class RouterClient:
    """Worker registration through the router's HTTP API (synchronous: used by the engine manager)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout_s, trust_env=False)

    def workers(self) -> list[dict]:
        resp = self.http.get(f"{self.url}/workers")
        resp.raise_for_status()
        return resp.json().get("workers", [])

    def worker_urls(self) -> list[str]:
        return [w["url"] for w in self.workers()]

    def add_worker(self, worker_url: str, timeout_s: float = 60.0) -> None:
        """Register and wait until the router lists the worker as healthy."""
        resp = self.http.post(f"{self.url}/workers", json={"url": worker_url})
        if resp.status_code not in (200, 201, 202):
            raise RuntimeError(f"router {self.url} refused worker {worker_url}: HTTP {resp.status_code} {resp.text[:200]}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(w["url"] == worker_url and w.get("is_healthy", True) for w in self.workers()):
                return
            time.sleep(0.1)
        raise TimeoutError(f"router {self.url} did not list worker {worker_url} within {timeout_s:g} s")

    def remove_worker(self, worker_url: str, timeout_s: float = 30.0) -> bool:
        ids = [w["id"] for w in self.workers() if w["url"] == worker_url]
        for wid in ids:
            self.http.delete(f"{self.url}/workers/{wid}")
        deadline = time.monotonic() + timeout_s
        while ids and time.monotonic() < deadline:
            if worker_url not in self.worker_urls():
                return True
            time.sleep(0.1)
        return bool(ids) and worker_url not in self.worker_urls()

    def close(self) -> None:
        self.http.close()
