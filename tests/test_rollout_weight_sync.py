"""Weight sync trainer -> engine, end to end on CPU with all three transports.

The Megatron trainer is built in parallel (issue 7), so the "trainer" here is the test: it perturbs the tiny
model's weights with torch, pushes them through WeightSync, and checks that the engine's returned log-probs equal
a plain HF forward pass of the new weights for the same tokens (and differ from the old weights')."""
import asyncio
import shutil

import httpx
import pytest
import torch

from slime_ext.weight_sync import WeightSync, WeightSyncConfig, buckets, flatten_bucket, unflatten_bucket

from .helpers import free_port, reference_logprobs, sharpened_tiny_model, start_torch_engine, stop_process

PROMPT = [1, 17, 42, 99, 7, 8]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return sharpened_tiny_model(tmp_path_factory.mktemp("sync-model"))


@pytest.fixture(scope="module")
def engine(model, tmp_path_factory):
    work = tmp_path_factory.mktemp("engine-copy") / "m"
    shutil.copytree(model, work)
    port = free_port()
    proc = start_torch_engine(work, port)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def perturbed(model_path, seed):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    named = []
    for name, p in m.state_dict().items():
        named.append((name, p + 0.05 * p.std() * torch.randn(p.shape, generator=g) if p.numel() > 1 else p.clone()))
    return named, m.config


def save_reference(named, config, out):
    from transformers import AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    m = AutoModelForCausalLM.from_config(config)
    m.load_state_dict(dict(named))
    m.save_pretrained(out)
    return out


def greedy(url, n=10):
    r = httpx.post(f"{url}/generate", timeout=60, json={"input_ids": PROMPT, "return_logprob": True,
                                                          "sampling_params": {"max_new_tokens": n, "temperature": 0.0}})
    out = r.json()
    return out["output_ids"], [t[0] for t in out["meta_info"]["output_token_logprobs"]], out["meta_info"]["weight_version"]


@pytest.mark.parametrize("transport", ["disk", "distributed", "tensor"])
def test_sync_makes_engine_logprobs_equal_the_new_weights(transport, engine, model, tmp_path):
    ids_before, lp_before, _ = greedy(engine)
    named, config = perturbed(model, seed={"disk": 1, "distributed": 2, "tensor": 3}[transport])
    ref_dir = save_reference(named, config, tmp_path / "reference")
    cfg = WeightSyncConfig(transport=transport, disk_dir=str(tmp_path / "sync"), backend="gloo", bucket_mb=0.05)

    async def run():
        sync = WeightSync([engine], cfg)
        sync.version = {"disk": 10, "distributed": 20, "tensor": 30}[transport]
        try:
            version = await sync.sync(named)
            if transport == "distributed":  # the group is reused by a second sync
                version = await sync.sync(named)
            return version, await sync.engine_versions(), sync.history
        finally:
            if transport == "distributed":
                await sync.destroy_group()
            await sync.aclose()
    version, versions, history = asyncio.run(run())
    expected_version = {"disk": 11, "distributed": 22, "tensor": 31}[transport]
    assert version == expected_version and versions == {engine: str(expected_version)}
    assert history[-1]["bytes"] == sum(t.numel() * 4 for _, t in named)

    ids, lps, engine_version = greedy(engine)
    assert engine_version == str(expected_version)
    ref = reference_logprobs(ref_dir, PROMPT, ids)
    assert lps == pytest.approx(ref, abs=1e-4)  # the engine now computes with the new weights
    assert (ids, lps) != (ids_before, pytest.approx(lp_before, abs=1e-3))  # the sync changed what the engine computes
    assert reference_logprobs(model, PROMPT, ids) != pytest.approx(lps, abs=1e-3)  # not the original weights
    if transport == "disk":
        assert (tmp_path / "sync" / f"weight_v{expected_version}" / "model.safetensors").exists()


def test_disk_sync_refuses_unknown_or_misshaped_tensors(engine, tmp_path):
    cfg = WeightSyncConfig(transport="disk", disk_dir=str(tmp_path))

    async def run(named):
        sync = WeightSync([engine], cfg)
        try:
            return await sync.sync(named)
        finally:
            await sync.aclose()
    from slime_ext.weight_sync import WeightSyncError

    with pytest.raises(WeightSyncError, match="does not have"):
        asyncio.run(run([("model.not_a_layer.weight", torch.zeros(2))]))
    with pytest.raises(WeightSyncError, match="shape"):
        asyncio.run(run([("model.norm.weight", torch.zeros(3))]))
    # a failed sync leaves generation running (continue_generation was sent)
    assert greedy(engine, 2)[0]


def test_buckets_and_flattened_layout():
    named = [(f"w{i}", torch.randn(10, i + 1)) for i in range(5)]
    groups = list(buckets(named, bucket_bytes=4 * 25))
    assert [n for g in groups for n, _ in g] == [n for n, _ in named]
    assert all(sum(t.numel() * 4 for _, t in g) <= 100 or len(g) == 1 for g in groups)
    flat = flatten_bucket(named)
    assert flat["flattened_tensor"].numel() == sum(t.numel() for _, t in named)
    back = unflatten_bucket(flat)
    assert all(torch.equal(back[n], t) for n, t in named)
    with pytest.raises(ValueError, match="one dtype"):
        flatten_bucket([("a", torch.zeros(2)), ("b", torch.zeros(2, dtype=torch.int64))])


def test_config_validation():
    with pytest.raises(ValueError, match="disk-dir"):
        WeightSyncConfig(transport="disk").validate()
    with pytest.raises(ValueError, match="transport"):
        WeightSyncConfig(transport="rdma").validate()
