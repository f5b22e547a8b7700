"""The rollout client against a real SGLang 0.5.23 server (CPU backend): every field it sends is accepted and every
field it reads is there, statuses from SGLang's own finish reasons, log-probs that a transformers forward of the
same tokens reproduces, an abort by rid, a partial response resumed where it stopped, over-sampling whose surplus
is aborted on real requests, errors named with the engine's message. The scripted engine that the rollout-loop
tests use (helpers.FakeSGLangEngine) is checked against the real server's response shape here."""
import asyncio
import statistics

import httpx
import pytest
from transformers import AutoTokenizer

from slime_ext.rollout import PromptSource, RolloutConfig, generate_rollout
from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
from slime_ext.sample import Sample

from .helpers import FakeSGLangEngine, reference_logprobs

PROMPTS = [[1, 17, 42, 99, 7, 8], [5, 6, 7], [300, 301, 302, 303, 304], [11, 12]]


def run(coro_fn, url):
    async def go():
        client = RolloutClient(ClientConfig(url=url, backoff_s=0.05, retries=2), worker_urls=[url])
        try:
            return await coro_fn(client)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_statuses_tokens_and_logprobs_from_sglang(sglang, sglang_model):
    greedy = SamplingConfig(max_response_len=12, temperature=0.0)
    first = run(lambda c: c.generate(Sample(prompt_tokens=PROMPTS[0]), greedy), sglang.url)
    assert first.status == "truncated" and first.finish_reason == {"type": "length", "length": 12}
    assert len(first.response_tokens) == len(first.rollout_logprobs) == len(first.loss_mask) == 12
    assert first.metadata["weight_versions"] == ["default"]
    assert first.rollout_logprobs == pytest.approx(reference_logprobs(sglang_model, PROMPTS[0], first.response_tokens), abs=1e-3)
    # a stop token ends the response; it is the last response token (kept for the loss) and its id is reported
    stop = first.response_tokens[4]
    stopping = SamplingConfig(max_response_len=12, temperature=0.0, stop_token_ids=[stop])
    second = run(lambda c: c.generate(Sample(prompt_tokens=PROMPTS[0]), stopping), sglang.url)
    assert second.status == "completed" and second.finish_reason["type"] == "stop"
    assert second.finish_reason["matched"] == stop and second.response_tokens == first.response_tokens[:5]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_logprob_gap_to_a_transformers_forward(sglang, sglang_model, temperature):
    """SGLang's sampled-token log-probs are log_softmax(logits / T) over the full vocabulary (what the trainer
    computes): fp32 on both sides, the gap is float noise."""
    sampling = SamplingConfig(max_response_len=32, temperature=temperature, top_p=0.9, top_k=50)
    samples = run(lambda c: asyncio.gather(*(c.generate(Sample(prompt_tokens=p), sampling) for p in PROMPTS)), sglang.url)
    gaps = []
    for p, s in zip(PROMPTS, samples):
        ref = reference_logprobs(sglang_model, p, s.response_tokens, temperature=temperature)
        gaps += [abs(a - b) for a, b in zip(s.rollout_logprobs, ref)]
    print(f"T={temperature}: {len(gaps)} tokens, log-prob gap mean {statistics.mean(gaps):.2e} max {max(gaps):.2e}")
    assert max(gaps) < 1e-3
    # and not at temperature 1 when sampling at 0.7 (the trainer must divide by the rollout temperature)
    if temperature != 1.0:
        ref1 = reference_logprobs(sglang_model, PROMPTS[0], samples[0].response_tokens)
        assert max(abs(a - b) for a, b in zip(samples[0].rollout_logprobs, ref1)) > 1e-2


def test_abort_by_rid_then_resume_continues_where_it_stopped(sglang):
    """A partial rollout on the real server: the aborted request keeps its tokens and log-probs; resuming sends
    prompt + partial response and asks for the rest; greedy, the result equals one uninterrupted generation."""
    n = 2000
    greedy = SamplingConfig(max_response_len=n, temperature=0.0)

    async def abort_then_resume(client):
        sample = Sample(prompt_tokens=PROMPTS[1], prompt_id="p", metadata={"rid": "partial-1"})
        task = asyncio.create_task(client.generate(sample, greedy))
        while sglang.running() == 0:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await client.abort(["partial-1"])
        await task
        partial = (sample.status, list(sample.response_tokens), sample.finish_reason)
        await client.generate(sample, greedy)
        return partial, sample
    (status, partial, finish), resumed = run(abort_then_resume, sglang.url)
    assert status == "aborted" and finish["type"] == "abort" and 0 < len(partial) < n
    assert resumed.response_tokens[:len(partial)] == partial and len(resumed.response_tokens) == n
    assert len(resumed.rollout_logprobs) == len(resumed.loss_mask) == n and resumed.status == "truncated"
    whole = run(lambda c: c.generate(Sample(prompt_tokens=PROMPTS[1]), greedy), sglang.url)
    assert resumed.response_tokens == whole.response_tokens
    assert resumed.rollout_logprobs == pytest.approx(whole.rollout_logprobs, abs=1e-3)


def test_over_sampling_aborts_the_surplus_on_real_requests_and_counts_add_up(sglang, sglang_model):
    tok = AutoTokenizer.from_pretrained(sglang_model)
    records = [{"prompt": f"Question number {i} about the album?", "label": "x",
                "metadata": {"extra_reward_info": {"question": "q", "rubrics": []}}} for i in range(8)]
    cfg = RolloutConfig(rollout_batch_size=2, n_samples_per_prompt=2, over_sampling_batch_size=8,
                        sampling=SamplingConfig(max_response_len=400, temperature=1.0))
    result = run(lambda c: generate_rollout(cfg, c, PromptSource(records, tok, 2), None, tok), sglang.url)
    c = result.counts
    assert len(result.groups) == 2 and all(len(g) == 2 and g[0].group_id == g[1].group_id for g in result.groups)
    assert c.groups_requested == 8 == c.groups_accepted + c.groups_filtered + c.groups_aborted + c.groups_surplus
    assert c.requested == c.completed + c.truncated + c.aborted + c.failed and c.failed == 0
    assert sglang.running() == 0  # nothing left decoding on the engine


def test_errors_carry_the_engines_message(sglang):
    r = httpx.post(f"{sglang.url}/generate", json={"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 2, "bogus": 1}})
    assert r.status_code == 400 and "bogus" in r.text  # SGLang's JSON contract refuses unknown sampling keys
    bad = SamplingConfig(max_response_len=4, temperature=1.0, top_p=1.5)
    sample = run(lambda c: c.generate(Sample(prompt_tokens=PROMPTS[0]), bad), sglang.url)
    assert sample.status == "failed" and sample.error.startswith("http_400") and "top_p" in sample.error, sample.error


def test_the_scripted_engine_answers_in_sglangs_shape(sglang):
    real = sglang.generate(PROMPTS[0], 4)
    fake = FakeSGLangEngine(lambda n, body: {"n_tokens": 4, "finish": "length"})
    try:
        scripted = httpx.post(f"{fake.url}/generate", json={"input_ids": PROMPTS[0], "return_logprob": True,
                                                            "sampling_params": {"max_new_tokens": 4}}).json()
    finally:
        fake.close()
    assert set(scripted) <= set(real)
    assert set(scripted["meta_info"]) <= set(real["meta_info"])
    assert scripted["meta_info"]["finish_reason"].keys() == real["meta_info"]["finish_reason"].keys()
    assert [type(x) for x in scripted["meta_info"]["output_token_logprobs"][0]] == \
        [type(x) for x in real["meta_info"]["output_token_logprobs"][0]]
