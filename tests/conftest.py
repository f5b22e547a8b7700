"""Shared test fixtures: a scripted OpenAI-compatible endpoint and subprocess servers (helpers in helpers.py)."""
from __future__ import annotations

import os
import subprocess

import pytest

from .helpers import ROOT, FakeChatServer, stop_process, wait_http


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
        stop_process(proc, timeout_s=10)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A 600-page synthetic world, ingested and indexed once per test session (data_gen tests)."""
    from data_gen.search_index import SearchIndex, build_index
    from data_gen.store import Store, ingest
    from data_gen.synth_world import write_world

    d = tmp_path_factory.mktemp("small_world")
    write_world(d / "world.jsonl", 600, seed=7)
    ingest(d / "world.jsonl", d / "world.db")
    store = Store(d / "world.db")
    build_index(store, d / "index")

    class World:
        dir, jsonl, db, index_dir = d, d / "world.jsonl", d / "world.db", d / "index"

    World.store = store
    World.index = SearchIndex(d / "index", store)
    return World


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory):
    """family_checkpoint(kind) -> a tiny HF checkpoint directory (built once per session); see helpers."""
    from .helpers import build_family_checkpoint

    built: dict = {}

    def get(kind: str):
        if kind not in built:
            built[kind] = build_family_checkpoint(kind, tmp_path_factory.mktemp(kind))
        return built[kind]

    return get


# ---- real SGLang (its CPU backend; scripts/setup_sglang_cpu.sh) ----------------------------------------------------

def require_sglang() -> str:
    """The interpreter of the SGLang environment, or a skip naming why SGLang cannot run here."""
    from slime_ext.sglang_env import sglang_python, sglang_unavailable

    why = sglang_unavailable("cpu")
    if why:
        pytest.skip(f"real SGLang unavailable: {why}")
    return sglang_python("cpu")


@pytest.fixture(scope="session")
def sglang_model(tmp_path_factory):
    """The tiny Qwen3 the SGLang tests serve (peaked distributions: greedy choices are not near-ties)."""
    from .helpers import sharpened_tiny_model

    return sharpened_tiny_model(tmp_path_factory.mktemp("sglang-model"))


@pytest.fixture(scope="session")
def sglang_session(sglang_model, tmp_path_factory):
    """One real SGLang 0.5.23 server for the whole session, started by the project's own EngineManager (no router)."""
    from .helpers import TestEngine

    require_sglang()
    engine = TestEngine("sglang", sglang_model, tmp_path_factory.mktemp("sglang-logs"))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def torch_engine_session(sglang_model, tmp_path_factory):
    """The torch fallback engine on the same model, for the tests that hold it to SGLang's measured behaviour."""
    from .helpers import TestEngine

    engine = TestEngine("torch", sglang_model, tmp_path_factory.mktemp("torch-engine-logs"))
    yield engine
    engine.stop()


@pytest.fixture
def sglang(sglang_session):
    """The session's SGLang server, put back afterwards: original weights (version "default"), generating, no open
    weight-update session or group, empty cache; restarted if the test killed it."""
    sglang_session.ensure_running()
    yield sglang_session
    sglang_session.reset()


@pytest.fixture(params=["sglang", "torch"])
def engine(request):
    """Each test runs against real SGLang and against the torch fallback engine (which must behave the same)."""
    session = request.getfixturevalue("sglang_session" if request.param == "sglang" else "torch_engine_session")
    session.ensure_running()
    yield session
    session.reset()
