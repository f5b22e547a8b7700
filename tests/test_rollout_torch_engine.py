"""The torch engine over HTTP: SGLang's /generate schema, finish reasons, log-prob semantics, batching, abort,
pause, flush, memory release/resume. One engine subprocess for the module (weights are never changed here)."""
import asyncio
import threading
import time

import httpx
import pytest

from .helpers import free_port, reference_logprobs, sharpened_tiny_model, start_torch_engine, stop_process

PROMPTS = [[1, 17, 42, 99, 7], [5, 6, 7], [300, 301, 302, 303, 304, 305, 306], [11]]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return sharpened_tiny_model(tmp_path_factory.mktemp("engine-model"))


@pytest.fixture(scope="module")
def engine(model):
    port = free_port()
    proc = start_torch_engine(model, port, "--max-running-requests", "16")
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def gen(url, ids, timeout=60, **params):
    body = {"input_ids": ids, "sampling_params": params, "return_logprob": True}
    r = httpx.post(f"{url}/generate", json=body, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()


def test_generate_schema_and_greedy_logprobs_match_a_reference_forward(engine, model):
    out = gen(engine, PROMPTS[0], max_new_tokens=8, temperature=0.0)
    meta = out["meta_info"]
    assert meta["finish_reason"] == {"type": "length", "length": 8}
    assert meta["prompt_tokens"] == 5 and meta["completion_tokens"] == 8 == len(out["output_ids"])
    triples = meta["output_token_logprobs"]
    assert all(len(t) == 3 and t[2] is None for t in triples)  # [logprob, token_id, text-or-null]
    assert [t[1] for t in triples] == out["output_ids"]
    ref = reference_logprobs(model, PROMPTS[0], out["output_ids"])
    assert [t[0] for t in triples] == pytest.approx(ref, abs=1e-4)
    assert isinstance(out["text"], str) and meta["weight_version"] == "default"


def test_sampled_logprobs_are_temperature_scaled_full_vocab(engine, model):
    """SGLang: log_softmax(logits / T)[token], before top-p/top-k filtering."""
    out = gen(engine, PROMPTS[1], max_new_tokens=6, temperature=1.7, top_p=0.9, top_k=50, sampling_seed=3)
    lps = [t[0] for t in out["meta_info"]["output_token_logprobs"]]
    assert lps == pytest.approx(reference_logprobs(model, PROMPTS[1], out["output_ids"], temperature=1.7), abs=1e-4)
    assert lps != pytest.approx(reference_logprobs(model, PROMPTS[1], out["output_ids"], temperature=1.0), abs=1e-3)


def test_sampling_seed_reproduces_and_top_k_1_is_greedy(engine):
    a = gen(engine, PROMPTS[2], max_new_tokens=10, temperature=1.0, sampling_seed=7)["output_ids"]
    b = gen(engine, PROMPTS[2], max_new_tokens=10, temperature=1.0, sampling_seed=7)["output_ids"]
    assert a == b
    greedy = gen(engine, PROMPTS[2], max_new_tokens=10, temperature=0.0)["output_ids"]
    assert gen(engine, PROMPTS[2], max_new_tokens=10, temperature=1.0, top_k=1)["output_ids"] == greedy


def test_stop_token_ids_end_generation_with_matched_id(engine):
    greedy = gen(engine, PROMPTS[0], max_new_tokens=8, temperature=0.0)["output_ids"]
    stop = greedy[3]
    first = greedy.index(stop)
    out = gen(engine, PROMPTS[0], max_new_tokens=8, temperature=0.0, stop_token_ids=[stop])
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert out["output_ids"] == greedy[: first + 1]  # the stop token is part of the output, like SGLang
    # min_new_tokens keeps stop tokens from being chosen before it is reached
    later = gen(engine, PROMPTS[0], max_new_tokens=8, temperature=0.0, stop_token_ids=[stop], min_new_tokens=first + 2)
    assert stop not in later["output_ids"][: first + 2]
    # ignore_eos ignores stop_token_ids too (SGLang)
    assert gen(engine, PROMPTS[0], max_new_tokens=8, temperature=0.0, stop_token_ids=[stop],
               ignore_eos=True)["meta_info"]["finish_reason"]["type"] == "length"


def test_batched_input_ids_and_concurrent_requests_equal_one_by_one(engine):
    single = [gen(engine, p, max_new_tokens=12, temperature=0.0) for p in PROMPTS]
    r = httpx.post(f"{engine}/generate", json={"input_ids": PROMPTS, "return_logprob": True,
                                               "sampling_params": {"max_new_tokens": 12, "temperature": 0.0}}, timeout=60)
    batched = r.json()
    assert isinstance(batched, list) and len(batched) == len(PROMPTS)
    for s, b in zip(single, batched):
        assert b["output_ids"] == s["output_ids"]
        assert [t[0] for t in b["meta_info"]["output_token_logprobs"]] == pytest.approx(
            [t[0] for t in s["meta_info"]["output_token_logprobs"]], abs=1e-4)

    async def concurrent():  # different lengths joining and leaving the running batch
        async with httpx.AsyncClient(timeout=60) as c:
            bodies = [{"input_ids": p, "sampling_params": {"max_new_tokens": 4 + 2 * i, "temperature": 0.0}}
                      for i, p in enumerate(PROMPTS)]
            return await asyncio.gather(*(c.post(f"{engine}/generate", json=b) for b in bodies))
    for i, (resp, s) in enumerate(zip(asyncio.run(concurrent()), single)):
        assert resp.json()["output_ids"] == s["output_ids"][: 4 + 2 * i]


def test_bad_requests_are_refused_with_a_reason(engine):
    r = httpx.post(f"{engine}/generate", json={"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 2, "bogus": 1}})
    assert r.status_code == 400 and "bogus" in r.text
    r = httpx.post(f"{engine}/generate", json={"input_ids": [1, 99999], "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 400 and "vocabulary" in r.text
    r = httpx.post(f"{engine}/generate", json={"input_ids": [1], "sampling_params": {"top_p": 0}})
    assert r.status_code == 400 and "top_p" in r.text


def test_abort_by_rid_returns_partial_tokens_and_flush_waits_for_idle(engine):
    result = {}

    def long_request():
        result["out"] = httpx.post(f"{engine}/generate", timeout=120, json={
            "input_ids": PROMPTS[1], "rid": "to-abort", "return_logprob": True,
            "sampling_params": {"max_new_tokens": 20000, "temperature": 1.0, "ignore_eos": True}}).json()
    t = threading.Thread(target=long_request)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = httpx.get(f"{engine}/get_server_info").json()["internal_states"][0]
        if state["num_running_reqs"]:
            break
        time.sleep(0.05)
    assert httpx.post(f"{engine}/flush_cache").status_code == 400  # SGLang refuses while requests run
    time.sleep(0.3)
    assert httpx.post(f"{engine}/abort_request", json={"rid": "to-abort"}).status_code == 200
    t.join(timeout=30)
    out = result["out"]
    assert out["meta_info"]["finish_reason"]["type"] == "abort"
    n = len(out["output_ids"])
    assert 0 < n < 20000 and len(out["meta_info"]["output_token_logprobs"]) == n
    assert httpx.post(f"{engine}/flush_cache").status_code == 200


def test_pause_in_place_holds_requests_until_continue(engine):
    assert httpx.post(f"{engine}/pause_generation", json={"mode": "in_place"}).status_code == 200
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("out", gen(engine, PROMPTS[3], max_new_tokens=3, temperature=0.0)))
    t.start()
    t.join(timeout=1.5)
    assert t.is_alive()  # paused: no step runs
    assert httpx.post(f"{engine}/continue_generation", json={}).status_code == 200
    t.join(timeout=30)
    assert result["out"]["meta_info"]["finish_reason"]["type"] == "length"


def test_release_and_resume_memory_occupation(engine):
    before = gen(engine, PROMPTS[0], max_new_tokens=6, temperature=0.0)["output_ids"]
    assert httpx.post(f"{engine}/release_memory_occupation", json={"tags": ["weights", "kv_cache"]}).status_code == 200
    info = httpx.get(f"{engine}/get_server_info").json()
    assert info["memory_released"] == ["kv_cache", "weights"]
    assert httpx.get(f"{engine}/get_server_info").status_code == 200
    assert httpx.post(f"{engine}/resume_memory_occupation", json={"tags": ["weights", "kv_cache"]}).status_code == 200
    assert httpx.get(f"{engine}/get_server_info").json()["memory_released"] == []
    assert gen(engine, PROMPTS[0], max_new_tokens=6, temperature=0.0)["output_ids"] == before


def test_model_info_and_health(engine):
    info = httpx.get(f"{engine}/get_model_info").json()
    assert info["is_generation"] is True and info["model_type"] == "qwen3"
    assert httpx.get(f"{engine}/health").status_code == 200
    assert httpx.get(f"{engine}/health_generate", timeout=30).status_code == 200
