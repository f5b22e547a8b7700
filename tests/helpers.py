"""Test helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} came up")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not up after {timeout_s} s")


class FakeChatServer:
    """An OpenAI-compatible /v1/chat/completions endpoint whose replies a test scripts.

    ``script(call_number, body) -> (status, content or None, delay_s)``; content None with status 200 sends a
    body without choices (malformed); a dict content is sent as the whole assistant message (e.g. with
    ``tool_calls`` for native tool-calling replies). It records calls, request bodies, headers and peak concurrency.
    """

    def __init__(self, script):
        self.script = script
        self.calls = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.calls += 1
                    n = fake.calls
                    fake.bodies.append(body)
                    fake.headers.append(dict(self.headers))
                    fake.in_flight += 1
                    fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
                try:
                    status, content, delay = fake.script(n, body)
                    time.sleep(delay)
                    if content is None and status == 200:
                        payload = {"id": "x", "object": "chat.completion"}
                    elif status == 200:
                        message = {"role": "assistant", **content} if isinstance(content, dict) else {
                            "role": "assistant", "content": content}
                        payload = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
                    else:
                        payload = {"error": {"message": f"scripted {status}"}}
                    data = json.dumps(payload).encode()
                    try:
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                        pass
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def longtrace_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "slime_ext.cli", *args]


class ScriptedJudge:
    """An outcome judge whose verdicts a test scripts: ``fn(question, answer, content) -> Verdict`` (or raises)."""

    name = "scripted"

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    async def judge(self, question, answer, content):
        self.calls += 1
        return self.fn(question, answer, content)

    async def aclose(self):
        pass
