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
