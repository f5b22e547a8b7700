"""The reward server end to end over HTTP: `longtrace reward serve` in its own process on 127.0.0.1."""
import json

import httpx
import pytest

from .helpers import free_port, longtrace_cmd

RUBRICS = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]


def sample(content, label="Moroccan-Swedish", **kw):
    return {"label": label, "extra_reward_info": {"question": "q?", "rubrics": RUBRICS},
            "response": f"think</think>{content}<|im_end|>", **kw}


@pytest.fixture(scope="module")
def server_url():
    # module-scoped server: started once, stopped at the end of the module
    import os
    import signal
    import subprocess

    from .helpers import ROOT, wait_http

    port = free_port()
    proc = subprocess.Popen(longtrace_cmd("reward", "serve", "--port", str(port), "--max-body-mb", "0.5",
                                          "--log-level", "warning"),
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", 60, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_health(server_url):
    r = httpx.get(f"{server_url}/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_evaluate_one_sample(server_url):
    r = httpx.post(f"{server_url}/evaluate", json=sample("Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish"))
    assert r.status_code == 200
    body = r.json()
    assert body["correct"] and body["rubric_reward"] == pytest.approx(0.8) and body["reward"] == pytest.approx(0.94)
    assert {"outcome_reward", "rubric_reward", "reward"} <= body.keys()  # the LongTraceRL response keys


def test_evaluate_in_evaluation_mode(server_url):
    r = httpx.post(f"{server_url}/evaluate?evaluation=true", json=sample("Lady Gaga **Answer:** Moroccan-Swedish"))
    assert r.json()["reward"] == 1.0


def test_evaluate_batch_combines_the_group(server_url):
    group = [sample("Lady Gaga, The Fame, Just Dance, Poker Face, RedOne **Answer:** Moroccan-Swedish"),
             sample("Lady Gaga **Answer:** Moroccan-Swedish"),
             sample("Lady Gaga, The Fame **Answer:** Swedish")]
    r = httpx.post(f"{server_url}/evaluate_batch", json={"samples": group})
    assert r.status_code == 200
    body = r.json()
    assert body["rewards"] == pytest.approx([1.0, 0.7 + 0.3 * 0.2, 0.0])
    assert body["rubric_max"] == 1.0 and body["dropped"] is None


def test_malformed_json_is_400(server_url):
    r = httpx.post(f"{server_url}/evaluate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_schema_errors_name_the_field(server_url):
    bad = sample("x")
    bad["extra_reward_info"]["rubrics"] = ["ok", {"nam": "typo"}]
    r = httpx.post(f"{server_url}/evaluate", json=bad)
    assert r.status_code == 422
    assert any("extra_reward_info.rubrics.1" in d for d in r.json()["details"])
    r = httpx.post(f"{server_url}/evaluate", json={"label": "x", "extra_reward_info": {}})
    assert r.status_code == 422 and any("response" in d for d in r.json()["details"])
    r = httpx.post(f"{server_url}/evaluate_batch", json={"samples": []})
    assert r.status_code == 422


def test_unscorable_requests_are_422(server_url):
    bad = sample("x")
    bad["extra_reward_info"]["rubrics"] = [7]  # chunk ids only make sense for longrlvr data
    r = httpx.post(f"{server_url}/evaluate", json=bad)
    assert r.status_code == 422 and "rubrics[0]" in r.json()["details"][0]


def test_request_size_limit(server_url):
    big = sample("x" * (600 << 10))
    r = httpx.post(f"{server_url}/evaluate", json=big)
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit must hold for streamed bodies too
        data = json.dumps(big).encode()
        for i in range(0, len(data), 64 << 10):
            yield data[i:i + 64 << 10]

    r = httpx.post(f"{server_url}/evaluate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_server_survives_bad_input_and_counts_it(server_url):
    httpx.post(f"{server_url}/evaluate", content=b"[]", headers={"content-type": "application/json"})
    assert httpx.get(f"{server_url}/health").status_code == 200
    m = httpx.get(f"{server_url}/metrics").json()
    assert m["samples"] >= 1 and m["bad_requests"].get("/evaluate", 0) >= 2
    assert m["latency_s"]["count"] >= 1
    text = httpx.get(f"{server_url}/metrics?format=prometheus").text
    assert "longtrace_reward_samples_total" in text and 'le="+Inf"' in text


def test_invalid_reasons_show_in_metrics(server_url):
    httpx.post(f"{server_url}/evaluate", json=sample("Answer: x", status="truncated"))
    assert httpx.get(f"{server_url}/metrics").json()["invalid"].get("truncated", 0) >= 1


def test_client_speaks_to_the_server(server_url):
    import asyncio

    from reward.client import RewardClient
    from reward.schema import RewardRequest
    from reward.scorer import RewardInputError

    async def go():
        client = RewardClient(server_url, retries=0)
        try:
            group = await client.score_group([RewardRequest(**sample("Lady Gaga **Answer:** Moroccan-Swedish"))])
            with pytest.raises(RewardInputError):
                bad = sample("x")
                bad["extra_reward_info"]["rubrics"] = [3]
                await client.score(RewardRequest(**bad))
            return group
        finally:
            await client.aclose()

    assert asyncio.run(go()).rewards == [1.0]


# slime's remote_rm (THUDM/slime@624b824, slime/rollout/rm_hub/__init__.py): it posts exactly
# {"prompt": sample.prompt, "response": sample.response, "label": sample.label} to args.rm_url with aiohttp,
# calls resp.raise_for_status() (retrying any error up to 10 times, then raising) and stores ``await resp.json()`` as
# sample.reward; training and eval then read ``sample.reward`` or ``sample.reward[reward_key]``
# (slime/utils/types.py get_reward_value; --eval-reward-key or --reward-key at eval).
SLIME_PROMPT = "<|im_start|>user\nq?<|im_end|>\n<|im_start|>assistant\n"


def slime_remote_rm(rm_url, prompt, response, label, reward_key=None):
    import aiohttp

    async def go():
        payload = {"prompt": prompt, "response": response, "label": label}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.post(rm_url, json=payload) as resp:
                resp.raise_for_status()
                return await resp.json()

    import asyncio

    reward = asyncio.run(go())
    return reward, (reward if not reward_key else reward[reward_key])


GOOD_RESPONSE = "think</think>Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish<|im_end|>"


def test_slime_remote_rm_payload_is_scored(server_url):
    reward, value = slime_remote_rm(f"{server_url}/slime", SLIME_PROMPT, GOOD_RESPONSE, "Moroccan-Swedish", "reward")
    assert value == 1.0 and reward["correct"] and reward["valid"]  # plain label: no rubric reaches it, outcome only
    _, value = slime_remote_rm(f"{server_url}/slime", SLIME_PROMPT, "think</think>**Answer:** Swedish<|im_end|>",
                               "Moroccan-Swedish", "reward")
    assert value == 0.0
    reward, value = slime_remote_rm(f"{server_url}/slime?scalar=true", SLIME_PROMPT, GOOD_RESPONSE, "Moroccan-Swedish")
    assert reward == value == 1.0  # a bare number: slime without --reward-key
    messages = [{"role": "user", "content": "q?"}]
    _, value = slime_remote_rm(f"{server_url}/slime", messages, GOOD_RESPONSE, 1973, "reward")
    assert value == 0.0  # message-list prompt, numeric label


def test_slime_remote_rm_with_rubrics_in_an_object_label(server_url):
    label = {"label": "Moroccan-Swedish", "extra_reward_info": {"question": "q?", "rubrics": RUBRICS}}
    _, value = slime_remote_rm(f"{server_url}/slime", SLIME_PROMPT, GOOD_RESPONSE, label, "reward")
    assert value == pytest.approx(0.94)
    _, value = slime_remote_rm(f"{server_url}/slime?evaluation=true", SLIME_PROMPT, GOOD_RESPONSE, label, "reward")
    assert value == 1.0


def test_slime_remote_rm_validity_comes_from_the_text(server_url):
    # truncated: SGLang's text ends without the stop token (slime keeps special tokens in the text by default)
    reward, _ = slime_remote_rm(f"{server_url}/slime", SLIME_PROMPT, GOOD_RESPONSE[: -len("<|im_end|>")] + " and",
                                "Moroccan-Swedish")
    assert reward["reward"] == 0.0 and reward["invalid_reason"] == "no_stop_token"


def test_slime_payload_errors(server_url):
    r = httpx.post(f"{server_url}/slime", json={"prompt": "p", "response": "r<|im_end|>", "label": None})
    assert r.status_code == 422 and "label" in r.json()["details"][0]
    r = httpx.post(f"{server_url}/slime", json={"prompt": "p", "label": "x"})
    assert r.status_code == 422 and any("response" in d for d in r.json()["details"])
    r = httpx.post(f"{server_url}/evaluate", json={"prompt": "p", "response": GOOD_RESPONSE, "label": "x"})
    assert r.status_code == 422 and any("--rm-url" in d for d in r.json()["details"])


def test_slime_route_answers_503_on_a_failed_judge():
    from fastapi.testclient import TestClient

    from reward.config import RewardConfig
    from reward.judge import judge_error
    from reward.scorer import RewardScorer
    from reward.server import create_app

    from .helpers import ScriptedJudge

    payload = {"prompt": SLIME_PROMPT, "response": GOOD_RESPONSE, "label": "Moroccan-Swedish"}
    scorer = RewardScorer(judge=ScriptedJudge(lambda q, a, c: judge_error("timeout after 120 s")))
    with TestClient(create_app(scorer)) as client:
        r = client.post("/slime", json=payload)
        assert r.status_code == 503 and "timeout" in r.json()["details"][0]  # slime's remote_rm retries, then raises
        assert client.get("/metrics").json()["judge_errors_total"] == 1
    cfg = RewardConfig()
    cfg.combine.on_judge_error = "zero"
    scorer = RewardScorer(cfg, judge=ScriptedJudge(lambda q, a, c: judge_error("timeout after 120 s")))
    with TestClient(create_app(scorer)) as client:
        r = client.post("/slime", json=payload)
        assert r.status_code == 200 and r.json()["reward"] == 0.0 and r.json()["judge_error"]
