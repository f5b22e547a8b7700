"""Command lines of SGLang engines, torch engines and the router; engine config validation."""
import sys

import pytest

from slime_ext.router import RouterConfig, router_command
from slime_ext.sglang_engine import EngineConfig, engine_env, sglang_command, torch_engine_command


def flag(cmd, name):
    return cmd[cmd.index(name) + 1]


def test_sglang_command_has_the_managed_flags_and_passes_extras_through():
    cfg = EngineConfig(model_path="/ckpt/Qwen3-4B", device="cuda", gpus_per_engine=4, mem_fraction_static=0.7,
                       context_length=161000, base_gpu_id=8, python="/opt/py/bin/python",
                       extra_args=["--attention-backend", "fa3", "--kv-cache-dtype=fp8_e4m3"])
    cmd = sglang_command(cfg, index=1, port=15001, nccl_port=15002)
    assert cmd[:3] == ["/opt/py/bin/python", "-m", "sglang.launch_server"]
    assert flag(cmd, "--model-path") == "/ckpt/Qwen3-4B" and flag(cmd, "--tp-size") == "4"
    assert flag(cmd, "--host") == "127.0.0.1"  # bound to loopback unless told otherwise
    assert flag(cmd, "--port") == "15001" and flag(cmd, "--nccl-port") == "15002"
    assert flag(cmd, "--base-gpu-id") == "12"  # engine 1 of tp 4 starting at GPU 8
    assert flag(cmd, "--mem-fraction-static") == "0.7" and flag(cmd, "--context-length") == "161000"
    assert "--enable-memory-saver" not in cmd and "--device" not in cmd and "--sleep-on-idle" not in cmd
    assert cmd[-3:] == ["--attention-backend", "fa3", "--kv-cache-dtype=fp8_e4m3"]
    env = engine_env(cfg)  # /health must not generate (it would time out on a paused or released engine)
    assert env == {"SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "0"}


def test_colocated_engines_get_the_memory_saver_and_optional_flags_stay_out():
    cmd = sglang_command(EngineConfig(model_path="/m", device="cuda", enable_memory_saver=True), 0, 1)
    assert "--enable-memory-saver" in cmd
    assert "--mem-fraction-static" not in cmd and "--context-length" not in cmd and "--dtype" not in cmd
    assert flag(cmd, "--base-gpu-id") == "0"


def test_cpu_sglang_command_and_environment(monkeypatch):
    monkeypatch.setenv("LONGTRACE_SGLANG_PYTHON", "/sgl/venv/bin/python")
    cfg = EngineConfig(model_path="/m", device="cpu", torch_threads=1, extra_args=["--sampling-backend", "flashinfer"])
    cmd = sglang_command(cfg, 0, 31000)
    assert cmd[0] == "/sgl/venv/bin/python"  # SGLang's own environment
    assert flag(cmd, "--device") == "cpu" and flag(cmd, "--attention-backend") == "torch_native"
    assert flag(cmd, "--dtype") == "float32" and flag(cmd, "--mem-fraction-static") == "0.05"
    assert "--sleep-on-idle" in cmd and "--base-gpu-id" not in cmd
    assert cmd.count("--sampling-backend") == 1 and cmd[-2:] == ["--sampling-backend", "flashinfer"]  # the user's wins
    assert engine_env(cfg) == {"SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "0", "SGLANG_USE_CPU_ENGINE": "1",
                               "OMP_NUM_THREADS": "1"}


def test_extra_flags_may_not_fight_the_manager():
    with pytest.raises(ValueError, match="--tp-size"):
        EngineConfig(model_path="/m", extra_args=["--tp-size", "2"]).validate()
    with pytest.raises(ValueError, match="--port"):
        EngineConfig(model_path="/m", extra_args=["--port=1"]).validate()


@pytest.mark.parametrize("kw, message", [
    ({"backend": "vllm"}, "backend"), ({"num_engines": 0}, "num-engines"), ({"gpus_per_engine": 0}, "gpus-per-engine"),
    ({"mem_fraction_static": 1.5}, "mem-fraction"), ({"backend": "torch", "gpus_per_engine": 2}, "one device"),
    ({"router": RouterConfig(policy="consistent_hashing")}, "router-policy"),
])
def test_engine_config_validation(kw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        EngineConfig(model_path=str(tmp_path), **kw).validate()


def test_torch_engine_command(tmp_path):
    cfg = EngineConfig(model_path=str(tmp_path), backend="torch", device="cuda", base_gpu_id=2, torch_threads=1,
                       max_running_requests=32, host="0.0.0.0")
    cmd = torch_engine_command(cfg, 1, 31000)
    assert cmd[:3] == [sys.executable, "-m", "slime_ext.torch_engine"]
    assert flag(cmd, "--device") == "cuda:3" and flag(cmd, "--host") == "0.0.0.0" and flag(cmd, "--port") == "31000"
    assert flag(cmd, "--torch-threads") == "1" and flag(cmd, "--max-running-requests") == "32"


def test_router_command():
    cmd = router_command(RouterConfig(policy="cache_aware", extra_args=["--disable-retries"]), 3000,
                         ["http://127.0.0.1:1", "http://127.0.0.1:2"], prometheus_port=4000)
    assert cmd[:3] == [sys.executable, "-m", "sglang_router.launch_router"]
    assert flag(cmd, "--host") == "127.0.0.1" and flag(cmd, "--policy") == "cache_aware"
    assert flag(cmd, "--prometheus-port") == "4000"
    i = cmd.index("--worker-urls")
    assert cmd[i + 1:i + 3] == ["http://127.0.0.1:1", "http://127.0.0.1:2"] and cmd[-1] == "--disable-retries"


def test_router_flags_exist_in_the_installed_router():
    from sglang_router.router_args import RouterArgs
    import argparse

    parser = argparse.ArgumentParser()
    RouterArgs.add_cli_args(parser)
    args = parser.parse_args(router_command(RouterConfig(), 3000, ["http://127.0.0.1:1"], prometheus_port=4000)[3:])
    assert args.port == 3000 and args.policy == "round_robin" and args.prometheus_port == 4000
