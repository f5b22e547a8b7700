"""The async /generate client against a scripted engine: payloads, max_new_tokens, statuses, retries, timeouts."""
import asyncio

import pytest

from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
from slime_ext.sample import Sample

from .helpers import FakeSGLangEngine


@pytest.fixture
def fake():
    engines = []

    def make(script=None):
        engines.append(FakeSGLangEngine(script))
        return engines[-1]
    yield make
    for e in engines:
        e.close()


def run(client, coro):
    async def go():
        try:
            return await coro
        finally:
            await client.aclose()
    return asyncio.run(go())


def client_for(engine, **kw):
    kw = {"backoff_s": 0.01, "backoff_max_s": 0.05, **kw}
    return RolloutClient(ClientConfig(url=engine.url, **kw), worker_urls=[engine.url])


def test_payload_tokens_logprobs_and_status(fake):
    eng = fake(lambda n, b: {"n_tokens": 5})
    c = client_for(eng)
    sampling = SamplingConfig(max_response_len=32000, max_context_len=160000, temperature=0.8, top_p=0.95, top_k=20,
                              stop_token_ids=[151643, 151645])
    s = run(c, c.generate(Sample(prompt_tokens=[1, 2, 3], prompt_id="p", group_id=4, index=1), sampling))
    body = eng.bodies[0]
    assert body["input_ids"] == [1, 2, 3] and body["return_logprob"] is True and body["rid"].startswith("p-4-1-")
    assert body["sampling_params"] == {"max_new_tokens": 32000, "temperature": 0.8, "top_p": 0.95, "top_k": 20,
                                       "skip_special_tokens": True, "no_stop_trim": True,
                                       "spaces_between_special_tokens": False, "stop_token_ids": [151643, 151645]}
    assert s.response_tokens == [103, 104, 105, 106, 2] and s.rollout_logprobs == [-0.25] * 5 and s.loss_mask == [1] * 5
    assert s.status == "completed" and s.finish_reason == {"type": "stop", "matched": 2} and s.weight_version == 3
    assert "rid" not in s.metadata


def test_max_new_tokens_is_capped_by_the_context_and_resumes_count(fake):
    eng = fake(lambda n, b: {"n_tokens": 10, "finish": "length"})
    c = client_for(eng)
    sampling = SamplingConfig(max_response_len=32000, max_context_len=160000)
    long_prompt = Sample(prompt_tokens=[7] * 150000)
    partial = Sample(prompt_tokens=[1] * 10, response_tokens=[5] * 31995, loss_mask=[1] * 31995, rollout_logprobs=[-1.0] * 31995)
    too_long = Sample(prompt_tokens=[7] * 160000)

    async def go():
        return [await c.generate(s, sampling) for s in (long_prompt, partial, too_long)]
    a, b, t = run(c, go())
    assert eng.bodies[0]["sampling_params"]["max_new_tokens"] == 10000  # 160,000 - 150,000
    assert eng.bodies[1]["sampling_params"]["max_new_tokens"] == 5  # 32,000 - 31,995 already generated
    assert len(eng.bodies[1]["input_ids"]) == 10 + 31995  # prompt + partial response, token ids as they were
    assert a.status == "truncated" and b.response_length == 32000
    assert t.status == "failed" and t.error.startswith("prompt_too_long") and len(eng.bodies) == 2


def test_retries_5xx_and_dropped_connections_then_succeeds(fake):
    eng = fake(lambda n, b: {"status": 503} if n == 1 else {"status": "drop"} if n == 2 else {"n_tokens": 3})
    faults = []
    c = client_for(eng, retries=3)
    c.on_fault = lambda: faults.append(1) or ["engine 0 restarted"]
    s = run(c, c.generate(Sample(prompt_tokens=[1]), SamplingConfig()))
    assert s.status == "completed" and s.response_length == 3
    assert eng.calls == 3 and c.stats.retries == 2 and faults  # recovery hook ran before retrying
    rids = [b["rid"] for b in eng.bodies]
    assert len(set(rids)) == 3 and rids[1].startswith(rids[0])  # each retry has its own rid


def test_client_errors_are_not_retried_and_are_named(fake):
    eng = fake(lambda n, b: {"status": 400})
    c = client_for(eng, retries=3)
    s = run(c, c.generate(Sample(prompt_tokens=[1]), SamplingConfig()))
    assert s.status == "failed" and s.error.startswith("http_400") and eng.calls == 1


def test_timeouts_abort_the_request_and_exhausted_retries_fail_the_sample(fake):
    eng = fake(lambda n, b: {"delay": 5.0})
    c = client_for(eng, retries=1, request_timeout_s=0.3)
    s = run(c, c.generate(Sample(prompt_tokens=[1]), SamplingConfig()))
    assert s.status == "failed" and s.error.startswith("retries_exhausted: timeout")
    assert eng.calls == 2 and c.stats.failures == 1
    assert sorted(a["rid"] for a in eng.aborts) == sorted(b["rid"] for b in eng.bodies)  # both attempts aborted


def test_bad_responses_are_failures_with_a_reason(fake):
    eng = fake()
    c = client_for(eng)

    async def go():
        from slime_ext.rollout_client import GenerateFailed, apply_output
        with pytest.raises(GenerateFailed, match="output_token_logprobs"):
            apply_output(Sample(prompt_tokens=[1]), {"text": "x", "meta_info": {"finish_reason": {"type": "stop"}}})
        with pytest.raises(GenerateFailed, match="disagree"):
            apply_output(Sample(prompt_tokens=[1]), {"output_ids": [5], "meta_info": {
                "finish_reason": {"type": "stop"}, "output_token_logprobs": [[-1.0, 6, None]]}})
    run(c, go())


@pytest.mark.parametrize("kw, match", [
    ({"max_response_len": 0}, "max-response-len"), ({"top_p": 0}, "top-p"), ({"top_k": 0}, "top-k"),
    ({"temperature": -1}, "temperature"),
])
def test_sampling_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**kw).validate()
