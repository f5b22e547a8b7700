"""Static contract with the pinned SGLang release (slime_ext/versions.py), read from its wheel as text/AST.

The behaviour is tested against the running server (test_sglang_*.py); this module checks what a running CPU server
cannot show: every route the project calls exists in the HTTP server, every request field it sends is a field of
the request structs, every sampling parameter is in the JSON contract (which rejects unknown keys), every response
field it reads is in the response schema, and every launch flag of the GPU command lines is a server argument. The
wheel comes from PyPI (`pip download --no-deps`), cached between runs; no network means a FAILED test, not a skip.
"""
import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from slime_ext.rollout_client import SamplingConfig
from slime_ext.sglang_engine import EngineConfig, sglang_command
from slime_ext.versions import SGLANG_VERSION

CACHE = Path(os.environ.get("LONGTRACE_CACHE", Path.home() / ".cache" / "longtrace")) / "sglang-wheels"

# What our code uses (grep-able: each is sent or read somewhere in slime_ext).
ROUTES = {  # route -> where
    "/generate": "rollout_client", "/abort_request": "rollout_client", "/health": "sglang_engine",
    "/health_generate": "sglang_engine", "/model_info": "weight_sync", "/server_info": "sglang_engine",
    "/flush_cache": "weight_sync", "/pause_generation": "weight_sync", "/continue_generation": "weight_sync",
    "/begin_weight_update": "weight_sync", "/end_weight_update": "weight_sync",
    "/update_weights_from_disk": "weight_sync", "/init_weights_update_group": "weight_sync",
    "/update_weights_from_distributed": "weight_sync", "/destroy_weights_update_group": "weight_sync",
    "/update_weights_from_tensor": "weight_sync", "/release_memory_occupation": "weight_sync",
    "/resume_memory_occupation": "weight_sync",
}
DEPRECATED = ("/get_model_info", "/get_server_info")  # 0.5.23 logs a warning on every call
REQUEST_FIELDS = {  # io_struct class -> fields we send
    "GenerateReqInput": {"input_ids", "sampling_params", "return_logprob", "rid"},
    "AbortReq": {"rid", "abort_all"},
    "PauseGenerationReqInput": {"mode"},
    "UpdateWeightFromDiskReqInput": {"model_path", "weight_version", "flush_cache"},
    "InitWeightsUpdateGroupReqInput": {"master_address", "master_port", "rank_offset", "world_size", "group_name", "backend"},
    "UpdateWeightsFromDistributedReqInput": {"names", "dtypes", "shapes", "group_name", "weight_version", "flush_cache",
                                             "load_format"},
    "UpdateWeightsFromTensorReqInput": {"serialized_named_tensors", "load_format", "flush_cache", "weight_version"},
    "DestroyWeightsUpdateGroupReqInput": {"group_name"},
    "ReleaseMemoryOccupationReqInput": {"tags"},
    "ResumeMemoryOccupationReqInput": {"tags"},
}
META_FIELDS = {"finish_reason", "output_token_logprobs", "prompt_tokens", "completion_tokens", "weight_version"}


@pytest.fixture(scope="module")
def wheel() -> zipfile.ZipFile:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"sglang-{SGLANG_VERSION}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"sglang=={SGLANG_VERSION}", "-d", str(CACHE)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        found = sorted(CACHE.glob(f"sglang-{SGLANG_VERSION}-*.whl"))
        if proc.returncode != 0 or not found:
            pytest.fail(f"could not download sglang=={SGLANG_VERSION} from PyPI (network?); the contract test needs "
                        f"the pinned release.\n$ {' '.join(cmd)}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return zipfile.ZipFile(found[0])


def read(wheel, path: str) -> str:
    return wheel.read(path).decode()


def class_fields(tree: ast.Module) -> dict[str, set[str]]:
    """Annotated fields per class, inherited fields from classes of the same module included."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def fields(name, seen=()):
        node = classes.get(name)
        if node is None or name in seen:
            return set()
        out = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        for base in node.bases:
            if isinstance(base, ast.Name):
                out |= fields(base.id, (*seen, name))
        return out
    return {name: fields(name) for name in classes}


def test_routes_exist_in_the_http_server(wheel):
    source = read(wheel, "sglang/srt/entrypoints/http_server.py")
    declared = set(re.findall(r'@app\.(?:get|post|put|api_route)\(\s*"([^"]+)"', source))
    missing = {r: where for r, where in ROUTES.items() if r not in declared}
    assert not missing, f"routes used by slime_ext but not served by SGLang {SGLANG_VERSION}: {missing}"
    # the code really calls them (the list above is not stale)
    code = "".join((Path(__file__).parents[1] / "slime_ext" / f"{m}.py").read_text() for m in set(ROUTES.values()))
    assert all(f'{r}"' in code for r in ROUTES), [r for r in ROUTES if f'{r}"' not in code]
    assert not any(f'{r}"' in code for r in DEPRECATED)


def test_request_fields_exist_in_io_struct(wheel):
    fields = class_fields(ast.parse(read(wheel, "sglang/srt/managers/io_struct.py")))
    problems = {cls: sorted(want - fields.get(cls, set())) for cls, want in REQUEST_FIELDS.items()}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"fields we send that SGLang {SGLANG_VERSION} does not have: {problems}"


def test_generate_payload_and_sampling_params_pass_the_json_contract(wheel):
    tree = ast.parse(read(wheel, "sglang/api/v1/api_types.py"))
    fields = class_fields(tree)
    params = SamplingConfig(stop_token_ids=[151643, 151645], stop=["</answer>"], min_new_tokens=1, sampling_seed=3).params(100)
    unknown = set(params) - fields["SamplingParams"]
    assert not unknown, f"sampling params SGLang's contract rejects (unknown keys are refused): {unknown}"
    assert {"input_ids", "sampling_params", "return_logprob", "rid"} <= fields["GenerateRequest"]
    assert META_FIELDS <= fields["GenerateMetaInfo"]
    assert {"text", "meta_info", "output_ids"} <= fields["GenerateResponse"]
    # a log-prob entry is [logprob, token_id, text] and a finish reason one of stop(matched)/length(length)/abort
    assert ["logprob", "token_id", "text"] == [s.target.id for s in next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LogprobEntry").body if isinstance(s, ast.AnnAssign)]
    assert {"matched"} <= fields["FinishStop"] and {"length"} <= fields["FinishLength"]
    try:  # with msgspec installed, run the release's own decoder on our payload
        import msgspec  # noqa: F401
    except ImportError:
        return
    namespace: dict = {}
    exec(compile(read(wheel, "sglang/api/v1/api_types.py"), "api_types.py", "exec"), namespace)
    payload = {"input_ids": [1, 2, 3], "sampling_params": params, "return_logprob": True, "rid": "g0-s1"}
    namespace["GenerateRequest"].from_json_value(payload)  # raises JsonContractError on a violation
    with pytest.raises(namespace["JsonContractError"]):
        namespace["GenerateRequest"].from_json_value({**payload, "sampling_params": {**params, "bogus": 1}})


def test_finish_reason_shapes(wheel):
    source = read(wheel, "sglang/srt/managers/schedule_batch.py")
    assert re.search(r'"type": "stop",[^}]*"matched": self\.matched', source, re.S)
    assert re.search(r'"type": "length",[^}]*"length": self\.length', source, re.S)
    assert re.search(r'"type": "abort"', source)


def test_launch_flags_are_server_arguments(wheel):
    names = [n for n in wheel.namelist() if n.startswith("sglang/srt/arg_groups/fields/") and n.endswith(".py")]
    assert names, "SGLang's server-argument field modules moved"
    fields = set()
    for n in names:
        for cls_fields in class_fields(ast.parse(read(wheel, n))).values():
            fields |= cls_fields
    cfg = EngineConfig(model_path="/m", device="cuda", gpus_per_engine=8, mem_fraction_static=0.7, context_length=160000,
                       enable_memory_saver=True, dtype="bfloat16", max_total_tokens=100000)
    flags = [a for a in sglang_command(cfg, 1, 30001, nccl_port=30002) if a.startswith("--")]
    flags += [a for a in sglang_command(EngineConfig(model_path="/m", device="cpu"), 0, 30001) if a.startswith("--")]
    missing = [f for f in flags if f[2:].replace("-", "_") not in fields]
    assert not missing, f"flags not in SGLang {SGLANG_VERSION}'s ServerArgs: {missing}"
    launch = read(wheel, "sglang/launch_server.py")
    assert "ServerArgs" in launch or "prepare_server_args" in launch


def test_logprob_semantics_we_mirror(wheel):
    """The torch engine returns log_softmax(logits / T) (greedy: raw logits); check SGLang still does."""
    sampler = read(wheel, "sglang/srt/layers/sampler.py")
    assert "logits.div_(sampling_info.temperatures)" in sampler
    assert "torch.log(probs)" in sampler or "log_softmax(logits, dim=-1)" in sampler
    params = read(wheel, "sglang/srt/sampling/sampling_params.py")
    assert re.search(r"temperature < _SAMPLING_EPS:.*?self\.temperature = 1\.0.*?self\.top_k = 1", params, re.S)
