"""Shared test fixtures: a scripted OpenAI-compatible endpoint and subprocess servers (helpers in helpers.py)."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from .helpers import ROOT, FakeChatServer, wait_http


@pytest.fixture
def fake_chat():
    servers = []

    def make(script):
        server = FakeChatServer(script)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def run_server():
    """Start a command as a server subprocess in its own process group; always stopped at teardown."""
    procs = []

    def start(args: list[str], health_url: str, env: dict | None = None, timeout_s: float = 60.0) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        try:
            wait_http(health_url, timeout_s, proc)
        except Exception:
            proc.kill()
            print(proc.stdout.read())
            raise
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
