"""Real lifecycle: torch engines + the real sglang-router as subprocesses; generation through the router; teardown
with no orphan processes (also on Ctrl-C of `longtrace engine launch`); an engine killed mid-rollout."""
import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from slime_ext.rollout import PromptSource, RolloutConfig, generate_rollout
from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
from slime_ext.sglang_engine import EngineConfig, EngineManager, group_alive

from .helpers import ROOT, longtrace_cmd, sharpened_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return sharpened_tiny_model(tmp_path_factory.mktemp("lifecycle-model"))


def manager_config(model, tmp_path, **kw):
    return EngineConfig(model_path=str(model), backend="torch", num_engines=2, torch_threads=1, health_timeout_s=90,
                        log_dir=str(tmp_path / "logs"), **kw)


def test_two_engines_behind_the_router_then_nothing_left(model, tmp_path):
    with EngineManager(manager_config(model, tmp_path)) as m:
        pids = m.pids()
        assert len(pids) == 3 and all(group_alive(p) for p in pids)
        workers = httpx.get(f"{m.router_url}/workers").json()["workers"]
        assert sorted(w["url"] for w in workers) == sorted(m.engine_urls)
        outs = [httpx.post(f"{m.router_url}/generate", timeout=60, json={
            "input_ids": [1, 2, 3 + i], "return_logprob": True, "sampling_params": {"max_new_tokens": 4, "temperature": 0.0}}).json()
            for i in range(6)]
        assert all(len(o["meta_info"]["output_token_logprobs"]) == len(o["output_ids"]) > 0 for o in outs)
        served = [httpx.get(f"{u}/get_server_info").json()["internal_states"][0]["requests_finished"] for u in m.engine_urls]
        assert all(n > 0 for n in served) and sum(served) >= 6  # round robin reached both engines
        assert httpx.post(f"{m.router_url}/flush_cache").status_code == 200  # the router broadcasts it
    assert not any(group_alive(p) for p in pids), "orphan processes after teardown"
    assert (tmp_path / "logs" / "engine0.log").exists() and (tmp_path / "logs" / "router.log").exists()


def test_engine_launch_cli_stops_everything_on_ctrl_c(model, tmp_path):
    proc = subprocess.Popen(longtrace_cmd("engine", "launch", "--backend", "torch", "--model-path", str(model),
                                          "--num-engines", "1", "--torch-threads", "1", "--log-dir", str(tmp_path)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("router:") or proc.poll() is not None:
                break
        engine_url = next(re.search(r"(http://\S+)", l).group(1) for l in lines if l.startswith("engines:"))
        router_url = next(re.search(r"(http://\S+)", l).group(1) for l in lines if l.startswith("router:"))
        engine_pid = httpx.get(f"{engine_url}/get_server_info").json()["pid"]
        assert httpx.get(f"{router_url}/health").status_code == 200
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not group_alive(engine_pid)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{router_url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_engine_killed_mid_rollout_is_restarted_and_no_sample_is_lost(model, tmp_path):
    tok = AutoTokenizer.from_pretrained(model)
    records = [{"prompt": f"Question number {i} about the album?", "label": "x",
                "metadata": {"extra_reward_info": {"question": "q", "rubrics": []}}} for i in range(6)]
    cfg = RolloutConfig(rollout_batch_size=6, n_samples_per_prompt=4,
                        sampling=SamplingConfig(max_response_len=120, temperature=1.0))
    with EngineManager(manager_config(model, tmp_path)) as m:
        m.start_watchdog(0.5)
        victim = m.engines[0]
        old_pid = victim.process.pid
        killed = threading.Event()

        def kill_when_busy():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    state = httpx.get(f"{victim.url}/get_server_info", timeout=2).json()["internal_states"][0]
                    if state["num_running_reqs"] >= 2:
                        os.killpg(old_pid, signal.SIGKILL)
                        killed.set()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        killer = threading.Thread(target=kill_when_busy)
        killer.start()

        async def run():
            client = RolloutClient(ClientConfig(url=m.router_url, concurrency=64, retries=8, backoff_s=0.2, request_timeout_s=60),
                                   on_fault=m.recover)
            try:
                return await generate_rollout(cfg, client, PromptSource(records, tok, 4), None, tok), client.stats
            finally:
                await client.aclose()
        result, stats = asyncio.run(run())
        killer.join(timeout=60)
        assert killed.is_set(), "the engine was never busy enough to be killed mid-run"
        deadline = time.monotonic() + 60
        while not m.events and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("engine 0" in e and "restarted" in e for e in m.events), m.events
        assert victim.restarts == 1 and victim.process.pid != old_pid and victim.process.alive()
        c = result.counts
        assert c.requested == 24 and c.completed + c.truncated == 24 and c.failed == 0 and c.aborted == 0, c.summary()
        assert len(result.groups) == 6 and all(len(g) == 4 for g in result.groups)
        for s in result.samples:
            assert s.response_tokens and len(s.rollout_logprobs) == len(s.response_tokens) == len(s.loss_mask)
        # the restarted engine is back behind the router and serves
        assert victim.url in [w["url"] for w in httpx.get(f"{m.router_url}/workers").json()["workers"]]
        assert httpx.post(f"{victim.url}/generate", timeout=30, json={"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 2}}).status_code == 200
        pids = m.pids()
    assert not any(group_alive(p) for p in pids + [old_pid])
