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
    body without choices (malformed). It records calls, request bodies, headers and peak concurrency.
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
                        payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
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


def sharpened_tiny_model(out_dir, vocab_size: int = 512, scale: float = 40.0, seed: int = 0):
    """A tiny Qwen3 checkpoint whose output layer is scaled up, so next-token distributions are peaked (greedy
    choices are not near-ties and batching cannot flip them by rounding)."""
    from safetensors.torch import load_file, save_file

    from slime_ext.tiny_model import make_tiny_qwen3

    path = make_tiny_qwen3(out_dir, vocab_size=vocab_size, seed=seed)
    f = Path(path) / "model.safetensors"
    tensors = load_file(str(f))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] * scale
    save_file(tensors, str(f), metadata={"format": "pt"})
    return path


def reference_logprobs(model_path, prompt: list[int], response: list[int], temperature: float = 1.0) -> list[float]:
    """log_softmax(logits / T) of each response token under a plain HF forward pass of the checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = torch.log_softmax(logits / temperature, dim=-1)
    return [float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(response)]


def start_torch_engine(model_path, port: int, *extra: str) -> subprocess.Popen:
    """A torch engine subprocess in its own process group (stop it with stop_process)."""
    import os

    proc = subprocess.Popen(
        longtrace_cmd("engine", "serve", "--model-path", str(model_path), "--port", str(port), "--torch-threads", "1",
                      "--log-level", "warning", *extra),
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 90, proc)
    except Exception:
        stop_process(proc)
        raise
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
