"""Real lifecycle: SGLang 0.5.23 engines (CPU backend) and the real sglang-router as subprocesses, started by the
project's EngineManager: generation through the router; faults (an engine killed mid-rollout, the router killed
mid-rollout, a hung engine); a watchdog that leaves paused or released engines alone; teardown with no orphan
processes, also on Ctrl-C of `longtrace engine launch`."""
import asyncio
import os
import re
import signal
import subprocess
import threading
import time

import httpx
import pytest
from transformers import AutoTokenizer

from slime_ext.rollout import PromptSource, RolloutConfig, generate_rollout
from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
from slime_ext.sglang_engine import EngineConfig, EngineManager, group_alive

from .conftest import require_sglang
from .helpers import ROOT, longtrace_cmd


@pytest.fixture(scope="module")
def manager(sglang_model, tmp_path_factory):
    """Two SGLang engines behind the router, watched every 0.5 s, for the whole module."""
    require_sglang()
    cfg = EngineConfig(model_path=str(sglang_model), backend="sglang", device="cpu", num_engines=2, torch_threads=1,
                       health_timeout_s=300, health_probe_timeout_s=1.0, log_dir=str(tmp_path_factory.mktemp("logs")))
    m = EngineManager(cfg)
    m.start()
    m.start_watchdog(0.5)
    yield m
    m.stop()


def busy(url: str) -> int:
    """Requests engine ``url`` decodes now; 0 when it does not answer in time (a loaded CI machine)."""
    try:
        return httpx.get(f"{url}/v1/loads", timeout=2).json()["loads"][0]["num_running_reqs"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return 0


def kill_when_busy(pid: int, urls: list[str], done: threading.Event, min_running: int,
                   stop: threading.Event) -> None:
    """SIGKILL the process group ``pid`` once the engines at ``urls`` decode ``min_running`` requests together
    (gives up when ``stop`` is set or after 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        if sum(busy(u) for u in urls) >= min_running:
            os.killpg(pid, signal.SIGKILL)
            done.set()
            return
        time.sleep(0.02)


def rollout_while_killing(model, router_url, on_fault, pid_of, urls, min_running, attempts=3):
    """Run a rollout while a thread SIGKILLs ``pid_of()`` once the engines at ``urls`` decode ``min_running`` requests
    together. On 2 loaded cores a rollout can finish between two polls of /v1/loads; then it is run again (the
    fault is what is under test, not the polling), up to ``attempts`` times. Returns (result, killed pid)."""
    for _ in range(attempts):
        pid, killed, stop = pid_of(), threading.Event(), threading.Event()
        killer = threading.Thread(target=kill_when_busy, args=(pid, urls, killed, min_running, stop))
        killer.start()
        try:
            result = run_rollout(model, router_url, on_fault)
        finally:
            stop.set()
            killer.join(timeout=60)
        if killed.is_set():
            return result, pid
    pytest.fail(f"the engines never decoded {min_running} requests together in {attempts} rollouts")


def rollout_records(n):
    return [{"prompt": f"Question number {i} about the album?", "label": "x",
             "metadata": {"extra_reward_info": {"question": "q", "rubrics": []}}} for i in range(n)]


def run_rollout(model, url, on_fault, n_prompts=6, n=4, max_len=150):
    tok = AutoTokenizer.from_pretrained(model)
    cfg = RolloutConfig(rollout_batch_size=n_prompts, n_samples_per_prompt=n,
                        sampling=SamplingConfig(max_response_len=max_len, temperature=1.0))

    async def go():
        client = RolloutClient(ClientConfig(url=url, concurrency=64, retries=10, backoff_s=0.3, request_timeout_s=120),
                               on_fault=on_fault)
        try:
            return await generate_rollout(cfg, client, PromptSource(rollout_records(n_prompts), tok, n), None, tok)
        finally:
            await client.aclose()
    return asyncio.run(go())


def assert_nothing_lost(result, n_prompts=6, n=4):
    c = result.counts
    assert c.requested == n_prompts * n and c.completed + c.truncated == n_prompts * n, c.summary()
    assert c.failed == 0 and c.aborted == 0, c.summary()
    assert len(result.groups) == n_prompts and all(len(g) == n for g in result.groups)
    for s in result.samples:
        assert s.response_tokens and len(s.rollout_logprobs) == len(s.response_tokens) == len(s.loss_mask)


def served(manager, i) -> int:
    """/generate requests engine i answered (from its log)."""
    return manager.engines[i].process.tail(10**7).count('"POST /generate HTTP/1.1" 200')


def test_two_engines_behind_the_router(manager):
    assert len(manager.pids()) == 3 and all(group_alive(p) for p in manager.pids())
    workers = httpx.get(f"{manager.router_url}/workers").json()["workers"]
    assert sorted(w["url"] for w in workers) == sorted(manager.engine_urls)
    before = [served(manager, i) for i in range(2)]
    outs = [httpx.post(f"{manager.router_url}/generate", timeout=60, json={
        "input_ids": [1, 2, 3 + i], "return_logprob": True, "sampling_params": {"max_new_tokens": 4, "temperature": 0.0}}).json()
        for i in range(6)]
    assert all(len(o["meta_info"]["output_token_logprobs"]) == len(o["output_ids"]) == 4 for o in outs)
    after = [served(manager, i) for i in range(2)]
    assert [a - b for a, b in zip(after, before)] == [3, 3]  # round robin
    flushed = httpx.post(f"{manager.router_url}/flush_cache").json()  # the router broadcasts it
    assert flushed["workers_flushed"] == 2
    info = httpx.get(f"{manager.engine_urls[0]}/server_info", timeout=30).json()
    assert info["version"] == "0.5.23"
    assert manager.dead() == []


def test_engine_killed_mid_rollout_is_restarted_and_no_sample_is_lost(manager, sglang_model):
    victim = manager.engines[0]
    events = len(manager.events)
    result, old_pid = rollout_while_killing(sglang_model, manager.router_url, manager.recover,
                                            lambda: victim.process.pid, [victim.url], 2)
    deadline = time.monotonic() + 120
    while len(manager.events) == events and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any("engine 0" in e and "restarted" in e for e in manager.events[events:]), manager.events
    assert victim.restarts >= 1 and victim.process.pid != old_pid and victim.process.alive()
    assert not group_alive(old_pid)
    assert_nothing_lost(result)
    # the restarted engine is back behind the router and serves
    assert victim.url in [w["url"] for w in httpx.get(f"{manager.router_url}/workers").json()["workers"]]
    r = httpx.post(f"{victim.url}/generate", timeout=60, json={"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200


def test_router_killed_mid_rollout_is_restarted_and_no_sample_is_lost(manager, sglang_model):
    events = len(manager.events)
    result, old_pid = rollout_while_killing(sglang_model, manager.router_url, manager.recover,
                                            lambda: manager.router_process.pid, manager.engine_urls, 2)
    assert any(e.startswith("router") and "restarted with 2 engine(s)" in e for e in manager.events[events:]), manager.events
    assert manager.router_process.pid != old_pid and manager.router_process.alive()
    assert_nothing_lost(result)
    workers = httpx.get(f"{manager.router_url}/workers").json()["workers"]
    assert sorted(w["url"] for w in workers) == sorted(manager.engine_urls)


def test_a_hung_engine_is_restarted_but_not_while_it_is_paused_or_released(manager):
    """SIGSTOP freezes engine 1 (its process lives, /health stops answering). Marked released (the colocated
    training phase), the watchdog leaves it alone; marked up, it is restarted after `health_failures` probes."""
    victim = manager.engines[1]
    pid, events = victim.process.pid, len(manager.events)
    manager.set_state("released", [victim.url])
    os.killpg(pid, signal.SIGSTOP)
    try:
        time.sleep(5)  # ~10 watchdog rounds
        assert len(manager.events) == events and victim.process.pid == pid
        manager.set_state("up", [victim.url])
        deadline = time.monotonic() + 120
        while len(manager.events) == events and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if group_alive(pid):
            os.killpg(pid, signal.SIGCONT)
    assert any("engine 1" in e and "restarted" in e for e in manager.events[events:]), manager.events
    assert victim.process.pid != pid and not group_alive(pid)
    r = httpx.post(f"{manager.router_url}/generate", timeout=60, json={"input_ids": [3, 4], "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200


def test_teardown_leaves_no_process(manager, tmp_path):
    pids = manager.pids()
    log_dir = manager.log_dir
    manager.stop()
    assert not any(group_alive(p) for p in pids), "orphan processes after teardown"
    assert (log_dir / "engine0.log").exists() and (log_dir / "router.log").exists()


def test_engine_launch_cli_stops_everything_on_ctrl_c(sglang_model, tmp_path):
    require_sglang()
    proc = subprocess.Popen(longtrace_cmd("engine", "launch", "--model-path", str(sglang_model), "--num-engines", "1",
                                          "--torch-threads", "1", "--log-dir", str(tmp_path)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines, deadline = [], time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("router:") or proc.poll() is not None:
                break
        text = "".join(lines)
        assert "sglang.launch_server" in text and "SGLANG_USE_CPU_ENGINE=1" in text, text[-3000:]
        engine_pid = int(re.search(r"engine 0: pid (\d+)", text).group(1))
        router_url = next(re.search(r"(http://\S+)", l).group(1) for l in lines if l.startswith("router:"))
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
