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


def send_json(handler: BaseHTTPRequestHandler, status: int, payload) -> None:
    """Reply with ``payload`` as JSON; a client that already left (timed out) is not an error."""
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


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
                    send_json(self, status, payload)
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


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group of ``proc`` (started with start_new_session), SIGKILL it after ``timeout_s``."""
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class FakeSGLangEngine:
    """A scripted engine speaking SGLang's /generate and /abort_request (for client and rollout-loop tests).

    ``script(call_number, body) -> dict`` with optional keys: ``status`` (HTTP status; "drop" closes the connection
    without an answer), ``delay`` (seconds the request takes; an abort cuts it short), ``n_tokens`` (tokens to
    produce, capped by max_new_tokens), ``finish`` ("stop" ends on token ``stop_id``, "length" otherwise).
    Output token k of a request is ``first_token + k`` (first_token = 100 + len(input_ids), so a resumed request
    visibly continues), every log-prob is -0.25. An aborted request returns the share of its tokens that its
    delay had produced when the abort came, with finish_reason abort.
    """

    stop_id = 2

    def __init__(self, script=None):
        self.script = script or (lambda n, body: {})
        self.calls, self.bodies, self.aborts = 0, [], []
        self._events: dict[str, threading.Event] = {}
        self._abort_all = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                send_json(self, status, payload)

            def do_GET(self):
                self._send(200, {"ok": True})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/abort_request":
                    with fake._lock:
                        fake.aborts.append(body)
                        if body.get("abort_all"):
                            for ev in fake._events.values():
                                ev.set()
                        elif body.get("rid") in fake._events:
                            fake._events[body["rid"]].set()
                    return self._send(200, {})
                if self.path != "/generate":
                    return self._send(404, {"error": "no route"})
                with fake._lock:
                    fake.calls += 1
                    n = fake.calls
                    fake.bodies.append(body)
                    ev = fake._events.setdefault(body.get("rid") or f"anon{n}", threading.Event())
                plan = fake.script(n, body)
                if plan.get("status") == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                delay = plan.get("delay", 0.0)
                start = time.monotonic()
                aborted = ev.wait(delay) if delay else ev.is_set()
                if plan.get("status", 200) != 200:
                    return self._send(plan["status"], {"error": {"message": "scripted failure"}})
                params = body.get("sampling_params") or {}
                want = min(plan.get("n_tokens", 8), params.get("max_new_tokens", 128))
                if aborted:
                    share = (time.monotonic() - start) / delay if delay else 0.0
                    want = max(1, min(want - 1, int(want * share)))
                first = 100 + len(body["input_ids"])
                tokens = [first + k for k in range(want)]
                if aborted:
                    finish = {"type": "abort", "message": "Aborted"}
                elif plan.get("finish", "stop") == "stop" and want < params.get("max_new_tokens", 128):
                    tokens[-1] = fake.stop_id
                    finish = {"type": "stop", "matched": fake.stop_id}
                else:
                    finish = {"type": "length", "length": want}
                meta = {"id": body.get("rid"), "finish_reason": finish, "prompt_tokens": len(body["input_ids"]),
                        "completion_tokens": len(tokens), "weight_version": plan.get("weight_version", "3"),
                        "output_token_logprobs": [[-0.25, t, None] for t in tokens]}
                self._send(200, {"text": " ".join(f"t{t}" for t in tokens), "output_ids": tokens, "meta_info": meta})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        for ev in list(self._events.values()):
            ev.set()
        self.server.shutdown()
        self.server.server_close()


def build_family_checkpoint(kind: str, out_dir: Path) -> Path:
    """Tiny random HF checkpoints of each supported family, with a tokenizer:

    qwen3        untied embeddings, vocab 1024 (a multiple of 128: no padding)
    qwen3_tied   tied embeddings, vocab 1000 (Megatron pads it to 1024)
    qwen2        QKV biases (randomised so they matter), tied
    qwen3_moe    4 experts, top-2, written in the hub layout (one tensor per expert and projection)
    qwen3_yarn   YaRN RoPE scaling, factor 4 over 64 positions (max 256), transformers-5 `rope_parameters`
    qwen3_yarn_explicit  YaRN in the older top-level `rope_scaling` ("type"), explicit attention_factor 1.3,
                 truncate false, beta_fast 16 / beta_slow 2
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    from slime_ext.tiny_model import make_tiny_qwen3, train_tokenizer

    out_dir = Path(out_dir)
    if kind == "qwen3":
        return make_tiny_qwen3(out_dir, vocab_size=1024, seed=1)
    if kind == "qwen3_tied":
        return make_tiny_qwen3(out_dir, vocab_size=1000, tie_word_embeddings=True, seed=2)
    if kind in ("qwen3_yarn", "qwen3_yarn_explicit"):
        make_tiny_qwen3(out_dir, vocab_size=1024, max_position_embeddings=256, rope_theta=1e6, seed=4)
        path = out_dir / "config.json"
        config = json.loads(path.read_text())
        config.pop("rope_parameters", None)
        config.pop("rope_scaling", None)
        if kind == "qwen3_yarn":
            config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                         "rope_theta": 1e6}
        else:
            config["rope_theta"] = 1e6
            config["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                      "attention_factor": 1.3, "truncate": False, "beta_fast": 16, "beta_slow": 2}
        path.write_text(json.dumps(config, indent=2))
        return out_dir
    common = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6)
    torch.manual_seed(3)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **common))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.5)
    elif kind == "qwen3_moe":
        model = Qwen3MoeForCausalLM(Qwen3MoeConfig(head_dim=16, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                                                   norm_topk_prob=True, tie_word_embeddings=False, **common))
    else:
        raise ValueError(kind)
    model.save_pretrained(out_dir)
    train_tokenizer(1000).save_pretrained(out_dir)
    if kind == "qwen3_moe":  # transformers saves stacked experts; rewrite them the way hub checkpoints store them
        path = out_dir / "model.safetensors"
        tensors = load_file(path)
        for key in [k for k in tensors if k.endswith("mlp.experts.gate_up_proj")]:
            prefix = key[: -len("gate_up_proj")]
            gate_up, down = tensors.pop(key), tensors.pop(prefix + "down_proj")
            for e in range(gate_up.shape[0]):
                gate, up = gate_up[e].chunk(2, dim=0)
                tensors[f"{prefix}{e}.gate_proj.weight"] = gate.contiguous()
                tensors[f"{prefix}{e}.up_proj.weight"] = up.contiguous()
                tensors[f"{prefix}{e}.down_proj.weight"] = down[e].contiguous()
        save_file(tensors, str(path), metadata={"format": "pt"})
    return out_dir


class TestEngine:
    """One engine (real SGLang on its CPU backend, or the torch fallback engine) started through the project's
    EngineManager and shared by a test session. ``url`` is the engine; ``reset()`` undoes what a test may have
    changed; ``ensure_running()`` restarts it after a test that killed it."""

    def __init__(self, backend: str, model_path, log_dir, **overrides):
        from slime_ext.sglang_engine import EngineConfig, EngineManager

        self.backend, self.model_path = backend, str(model_path)
        self.cfg = EngineConfig(model_path=self.model_path, backend=backend, device="cpu", num_engines=1, router=None,
                                torch_threads=1, log_dir=str(log_dir), health_timeout_s=300, **overrides)
        self.manager = EngineManager(self.cfg)
        self.manager.start()

    def __repr__(self) -> str:
        return f"{self.backend} engine at {self.url}"

    @property
    def url(self) -> str:
        return self.manager.engines[0].url

    def log_tail(self, n: int = 3000) -> str:
        return self.manager.engines[0].process.tail(n)

    def ensure_running(self) -> None:
        if self.manager.dead():
            self.manager.recover()

    def reset(self) -> None:
        self.ensure_running()
        post = lambda route, body=None: httpx.post(f"{self.url}{route}", json=body or {}, timeout=60)  # noqa: E731
        post("/continue_generation")
        post("/abort_request", {"abort_all": True})
        post("/end_weight_update")  # refused when no session is open: fine
        post("/destroy_weights_update_group", {"group_name": "longtrace_weight_update"})
        r = post("/update_weights_from_disk", {"model_path": self.model_path, "weight_version": "default",
                                               "flush_cache": False})
        assert r.status_code == 200, f"could not restore the engine's weights: {r.text}"
        deadline = time.monotonic() + 60
        while post("/flush_cache").status_code != 200:
            assert time.monotonic() < deadline, "the engine did not get idle after the test"
            time.sleep(0.2)
        self.manager.set_state("up")

    def generate(self, input_ids, n: int = 8, temperature: float = 0.0, **extra) -> dict:
        body = {"input_ids": list(input_ids), "return_logprob": True,
                "sampling_params": {"max_new_tokens": n, "temperature": temperature, **extra.pop("sampling", {})}, **extra}
        r = httpx.post(f"{self.url}/generate", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    def running(self) -> int:
        r = httpx.get(f"{self.url}/v1/loads", timeout=10)
        return r.json()["loads"][0]["num_running_reqs"]

    def start_long_request(self, n: int = 20000, prompt=(1, 17, 42, 99, 7, 8)) -> tuple[threading.Thread, dict]:
        """A sampled request of ``n`` tokens (no stop) in a thread, returned once the engine is decoding it; its
        answer lands in ``result["out"]``."""
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(
            out=self.generate(list(prompt), n, temperature=1.0, sampling={"ignore_eos": True})), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while self.running() == 0:
            assert thread.is_alive() and time.monotonic() < deadline, f"the request never ran: {result}"
            time.sleep(0.02)
        return thread, result

    def stop(self) -> None:
        self.manager.stop()
