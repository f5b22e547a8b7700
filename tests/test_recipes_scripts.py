"""The shell recipes and cluster scripts: syntax, the flags they pass to `longtrace train`, batch and parallel
arithmetic, full `longtrace train` validation against each model's real architecture, and the launch pattern.

Recipes are run with LT_DRY_RUN=1: they build their flag arrays exactly as for a real run and print the final
argv (NUL-separated) instead of launching. A static scan of every flag array covers the branches a dry run
does not take.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from cost_estimate import MODELS  # noqa: E402

RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.sh") if p.name != "common.sh")
# recipe -> (model of scripts/cost_estimate.py MODELS, or "tiny")
MODEL_OF = {
    "longtracerl-qwen3-4b-thinking.sh": "qwen3-4b",
    "longtracerl-r1-0528-qwen3-8b.sh": "r1-qwen3-8b",
    "longtracerl-qwen3-30b-a3b-thinking.sh": "qwen3-30b-a3b",
    "qwen3-4b-32k-1node.sh": "qwen3-4b",
    "tiny-cpu.sh": "tiny",
}
TINY_CONFIG = {  # what `longtrace tiny-model` writes (defaults)
    "model_type": "qwen3", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 2048,
    "tie_word_embeddings": False, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
}
SHELL_FILES = [*sorted((ROOT / "recipes").glob("*.sh")), ROOT / "scripts" / "ray_cluster.sh",
               ROOT / "scripts" / "slurm_example.sbatch"]


def test_every_recipe_is_known_here():
    assert {p.name for p in RECIPES} == set(MODEL_OF), "add new recipes to MODEL_OF so they are checked"


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_bash_syntax(path):
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", [*RECIPES, ROOT / "scripts" / "ray_cluster.sh", ROOT / "scripts" / "slurm_example.sbatch"],
                         ids=lambda p: p.name)
def test_strict_mode_and_header(path):
    text = path.read_text()
    assert "set -euo pipefail" in text
    header = text.split("set -euo pipefail")[0]
    assert len([line for line in header.splitlines() if line.startswith("#")]) >= 5, "a header comment says what/how"


# ---------------------------------------------------------------- static scan of the flag arrays

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')
_ARRAY_START = re.compile(r"\b([A-Z_]+_ARGS)\+?=\(")
_FLAG = re.compile(r"(?:^|[\s(])(--[a-z][a-z0-9-]*)")


def array_flags(text: str) -> list[str]:
    """Every --flag written literally inside a *_ARGS=( ... ) or *_ARGS+=( ... ) array (quoted values dropped)."""
    flags, depth = [], 0
    for raw in text.splitlines():
        line = _QUOTED.sub('""', raw.split(" #")[0] if not raw.lstrip().startswith("#") else "")
        if depth == 0:
            m = _ARRAY_START.search(line)
            if not m:
                continue
            line = line[m.end():]
            depth = 1
        for flag in _FLAG.findall(line):
            flags.append(flag)
        depth += line.count("(") - line.count(")")
        depth = max(depth, 0)
    return flags


def train_option_strings() -> set[str]:
    from slime_ext.arguments import build_parser

    return {s for action in build_parser()._actions for s in action.option_strings}


def test_static_scan_finds_flags_and_catches_unknown_ones():
    script = 'A_ARGS=(\n    --known 1 --also "--not-scanned x"\n    --other-flag\n)\nB_ARGS+=(--bogus-flag "$X")\nrun --outside\n'
    assert array_flags(script) == ["--known", "--also", "--other-flag", "--bogus-flag"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_flags_exist_in_longtrace_train(recipe):
    flags = array_flags(recipe.read_text())
    assert len(flags) > 20, f"the scan found only {flags}"
    unknown = sorted(set(flags) - train_option_strings())
    assert not unknown, f"{recipe.name} passes flags `longtrace train` does not have: {unknown}"


# ---------------------------------------------------------------- dry runs

def clean_env(**env) -> dict:
    """A minimal environment, so the caller's variables (TP, NUM_NODES ...) cannot change what a recipe does."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return {**base, **env}


def dry_run(recipe: Path, **env) -> list[str]:
    full = clean_env(LT_DRY_RUN="1", JUDGE_BASE_URL="http://judge.example:30000/v1", **env)
    proc = subprocess.run(["bash", str(recipe)], env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split("\0")
    assert argv[-1] == "", "argv must be NUL-terminated"
    return argv[:-1]


def train_args(argv: list[str]) -> list[str]:
    i = argv.index("slime_ext.train")
    assert argv[i - 1] == "-m"
    return argv[i + 1:]


VARIANTS = [{}, {"EVAL_DATA": "/shared/aa_lcr.jsonl"}, {"EVAL_DATA": "/shared/aa_lcr.jsonl", "EVAL_ONLY": "1"},
            {"REWARD_URL": "http://127.0.0.1:7248"},
            {"USE_WANDB": "0", "USE_TENSORBOARD": "0", "SAVE_HF": "/x/hf/step_{rollout_id}", "LOAD": "/x/ckpt"}]


@pytest.mark.parametrize("variant", VARIANTS, ids=["default", "eval", "eval-only", "reward-server", "no-tracking"])
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_dry_run_argv_parses(recipe, variant):
    from slime_ext.arguments import build_parser

    args = train_args(dry_run(recipe, **variant))
    ns = build_parser().parse_args(args)  # SystemExit (test error) on an unknown flag or a bad value
    # the data keys of `longtrace data export` and the chat template, given explicitly (slime's defaults differ)
    for flag in ("--input-key", "--label-key", "--metadata-key", "--apply-chat-template"):
        assert flag in args, f"{recipe.name} does not pass {flag}"
    assert (ns.input_key, ns.label_key, ns.metadata_key) == ("input_messages", "label", "metadata")
    if "EVAL_DATA" in variant and recipe.name != "tiny-cpu.sh":
        assert ns.eval_prompt_data[1] == variant["EVAL_DATA"] and ns.n_samples_per_eval_prompt == 4
    if "REWARD_URL" in variant and recipe.name != "tiny-cpu.sh":
        assert ns.reward_url == variant["REWARD_URL"] and ns.judge_base_url is None
    if "LOAD" in variant:
        assert ns.load == "/x/ckpt"
    assert ns.eval_only == ("EVAL_ONLY" in variant and recipe.name != "tiny-cpu.sh")


def test_multinode_launch_pattern():
    argv = dry_run(ROOT / "recipes" / "longtracerl-qwen3-4b-thinking.sh", NET_IFNAME="ib0", JUDGE_API_KEY="secret")
    assert argv[:3] == ["ray", "job", "submit"]
    assert argv[argv.index("--address") + 1] == "http://127.0.0.1:8265"
    env = json.loads(argv[argv.index("--runtime-env-json") + 1])["env_vars"]
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ib0"
    assert env["JUDGE_API_KEY"] == "secret"  # the variable --judge-api-key-env names reaches the job
    args = train_args(argv)
    assert args[:2] == ["--ray-address", "auto"]
    assert "secret" not in args  # only the variable's name is on the command line
    assert args[args.index("--judge-api-key-env") + 1] == "JUDGE_API_KEY"


def test_single_node_launch_is_direct():
    argv = dry_run(ROOT / "recipes" / "qwen3-4b-32k-1node.sh")
    assert argv[1:3] == ["-m", "slime_ext.train"] and "--ray-address" not in argv
    argv = dry_run(ROOT / "recipes" / "qwen3-4b-32k-1node.sh", RAY_SUBMIT="1")  # e.g. under the Slurm example
    assert argv[:3] == ["ray", "job", "submit"] and "auto" in train_args(argv)[:2]


def test_resume_picks_up_the_latest_checkpoint(tmp_path):
    save = tmp_path / "ckpt"
    recipe = ROOT / "recipes" / "longtracerl-qwen3-4b-thinking.sh"
    assert "--load" not in train_args(dry_run(recipe, SAVE_DIR=str(save)))
    save.mkdir()
    (save / "latest_checkpointed_iteration.txt").write_text("20")
    args = train_args(dry_run(recipe, SAVE_DIR=str(save)))
    assert args[args.index("--load") + 1] == str(save)


# ---------------------------------------------------------------- the arithmetic and full validation

def write_config(tmp_path: Path, model: str) -> Path:
    # MODELS carry the real config.json's architecture fields (the 8B's YaRN rope_scaling included)
    cfg = dict(TINY_CONFIG) if model == "tiny" else {k: v for k, v in MODELS[model].items() if k != "name"}
    d = tmp_path / model
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def gpu_parse(args: list[str], monkeypatch, gpu: bool):
    """`longtrace train`'s own parse + validation, as on a GPU machine when `gpu`."""
    import torch

    from slime_ext.arguments import parse_args

    if gpu:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return parse_args(args)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_passes_longtrace_train_validation(recipe, tmp_path, monkeypatch):
    model = MODEL_OF[recipe.name]
    hf = write_config(tmp_path, model)
    env = {"HF_CHECKPOINT": str(hf), "RUN_DIR": str(tmp_path / "run")}
    if recipe.name == "tiny-cpu.sh":
        env["TINY_MODEL"] = str(hf)
    a = gpu_parse(train_args(dry_run(recipe, **env)), monkeypatch, gpu=model != "tiny")
    # batch identity (also inside validate(); asserted here on the recipe's own numbers)
    assert a.rollout_batch_size * a.n_samples_per_prompt == a.global_batch_size * a.num_steps_per_rollout
    world = a.actor_num_nodes * a.actor_num_gpus_per_node
    tp, pp, cp, ep = (a.tensor_model_parallel_size, a.pipeline_model_parallel_size, a.context_parallel_size,
                      a.expert_model_parallel_size)
    assert world % (tp * pp * cp) == 0
    # megatron's expert layout: expert-TP (default TP) x EP x PP must divide the ranks
    etp = a.expert_tensor_parallel_size or tp
    assert world % (etp * ep * pp) == 0, f"expert layout ETP {etp} x EP {ep} x PP {pp} does not divide {world} ranks"
    if model != "tiny":
        assert a.colocate and a.rollout_num_gpus == world
        per_engine = a.rollout_num_gpus_per_engine
        assert a.actor_num_gpus_per_node % per_engine == 0, "an SGLang engine must not span nodes"
        assert a.rollout_num_gpus % per_engine == 0
        # several nodes colocated with PP > 1: only the disk transport reaches every engine
        if a.actor_num_nodes > 1:
            assert a.update_weight_transport == "disk"
        if a.sglang_ep_size:
            assert per_engine % a.sglang_ep_size == 0
        assert a.sglang_enable_fp32_lm_head, "the rollout log-probs feed IcePop: SGLang's head in fp32 like ours"
        assert a.sglang_context_length >= a.rollout_max_context_len
    if MODELS.get(model, {}).get("num_experts"):
        assert MODELS[model]["num_experts"] % ep == 0 and ep > 1


def test_30b_recipe_uses_the_paper_moe_layout(tmp_path, monkeypatch):
    """The paper's 30B layout, TP4 PP2 CP4 EP16 on 32 ranks, which fits only with expert-TP 1: megatron lays the
    experts out as ETP x EP x PP, and ETP defaults to TP (4 x 16 x 2 = 128 ranks)."""
    hf = write_config(tmp_path, "qwen3-30b-a3b")
    recipe = ROOT / "recipes" / "longtracerl-qwen3-30b-a3b-thinking.sh"
    a = gpu_parse(train_args(dry_run(recipe, HF_CHECKPOINT=str(hf))), monkeypatch, gpu=True)
    assert (a.tensor_model_parallel_size, a.pipeline_model_parallel_size, a.context_parallel_size,
            a.expert_model_parallel_size, a.expert_tensor_parallel_size) == (4, 2, 4, 16, 1)
    assert a.actor_num_nodes * a.actor_num_gpus_per_node == 32 and a.update_weight_transport == "disk"
    args = train_args(dry_run(recipe, HF_CHECKPOINT=str(hf), ETP="4"))  # expert-TP = TP
    with pytest.raises(ValueError, match=r"not divisible by etp\*ep\*pp = 4\*16\*2 = 128"):
        gpu_parse(args, monkeypatch, gpu=True)


def test_in_memory_weight_sync_is_refused_with_expert_parallelism(tmp_path, monkeypatch):
    """tensor / distributed send from trainer rank 0, which holds 1/EP of the experts."""
    hf = write_config(tmp_path, "qwen3-30b-a3b")
    args = train_args(dry_run(ROOT / "recipes" / "longtracerl-qwen3-30b-a3b-thinking.sh", HF_CHECKPOINT=str(hf),
                              TP="2", PP="1", CP="4", EP="16", ETP="2", WEIGHT_TRANSPORT="distributed"))
    with pytest.raises(ValueError, match="holds 1/EP of the experts: use disk with EP > 1"):
        gpu_parse(args, monkeypatch, gpu=True)


def test_r1_qwen3_8b_real_config_with_yarn_is_accepted(tmp_path, monkeypatch):
    """The 8B's config.json has YaRN RoPE scaling (factor 4 over 32,768 positions, SGLang's attn_factor): `longtrace
    train`'s validation accepts it and the trainer builds megatron's YaRN with SGLang's attention factor (1.0)."""
    from slime_ext.megatron_model import ModelArch

    hf = write_config(tmp_path, "r1-qwen3-8b")
    assert json.loads((hf / "config.json").read_text())["rope_scaling"]["rope_type"] == "yarn"
    args = train_args(dry_run(ROOT / "recipes" / "longtracerl-r1-0528-qwen3-8b.sh", HF_CHECKPOINT=str(hf)))
    a = gpu_parse(args, monkeypatch, gpu=True)
    yarn = ModelArch.from_hf_config(hf).yarn
    assert (yarn.factor, yarn.original_max_position_embeddings) == (4.0, 32768)
    assert yarn.attention_factor == pytest.approx(1.0, abs=1e-12)
    # the 160K context runs past the config's 131,072 positions (YaRN extrapolates; the paper did the same)
    assert a.rollout_max_context_len > 131072


def test_r1_qwen3_8b_stop_token_from_the_tokenizer(tmp_path):
    argv = dry_run(ROOT / "recipes" / "longtracerl-r1-0528-qwen3-8b.sh")  # no tokenizer: the paper's id and text
    args = train_args(argv)
    assert args[args.index("--rollout-stop-token-ids") + 1] == "151645"
    assert args[args.index("--stop-tokens") + 1] == "<｜end▁of▁sentence｜>"
    args = train_args(dry_run(ROOT / "recipes" / "longtracerl-r1-0528-qwen3-8b.sh", STOP_TOKEN_ID="7", STOP_TOKEN="<e>"))
    assert args[args.index("--rollout-stop-token-ids") + 1] == "7" and args[args.index("--stop-tokens") + 1] == "<e>"


def test_paper_settings_of_the_4b_recipe():
    from slime_ext.arguments import build_parser, loss_config

    a = build_parser().parse_args(train_args(dry_run(ROOT / "recipes" / "longtracerl-qwen3-4b-thinking.sh",
                                                      EVAL_DATA="/e.jsonl")))
    assert (a.actor_num_nodes, a.actor_num_gpus_per_node) == (4, 8)
    assert (a.tensor_model_parallel_size, a.pipeline_model_parallel_size, a.context_parallel_size) == (4, 2, 4)
    assert a.sequence_parallel and a.recompute_activations and a.colocate
    assert (a.rollout_max_context_len, a.rollout_max_response_len) == (160000, 32000)
    assert (a.rollout_batch_size, a.n_samples_per_prompt, a.global_batch_size, a.num_rollout) == (16, 8, 128, 200)
    assert (a.lr, a.lr_decay_style, a.weight_decay, a.adam_beta1, a.adam_beta2, a.clip_grad) == \
        (2e-6, "constant", 0.1, 0.9, 0.98, 1.0)
    assert (a.eps_clip, a.eps_clip_high, a.kl_loss_coef, a.use_kl_loss, a.entropy_coef) == (0.2, 0.28, 0.0, False, 0.0)
    assert (a.use_tis, a.tis_clip_low, a.tis_clip) == (True, 0.5, 2.0)
    assert loss_config(a).tis == "icepop"  # through slime's function path, not the clamp slime's --use-tis defaults to
    assert a.sglang_enable_fp32_lm_head and a.dtype == "bf16"
    assert (a.rollout_temperature, a.max_tokens_per_gpu) == (1.0, 8192)
    assert (a.rubric_combine, a.eta, a.normalize_rubric_reward, a.rubric_source) == \
        ("positive_only", 0.3, True, "content")
    assert (a.judge, a.judge_model, a.judge_api_key_env) == ("llm", "Qwen/Qwen3-235B-A22B-Instruct-2507", "JUDGE_API_KEY")
    assert (a.eval_interval, a.save_interval, a.n_samples_per_eval_prompt) == (20, 20, 4)
    assert (a.eval_temperature, a.eval_top_p, a.eval_top_k) == (0.6, 0.95, 20)
    assert (a.rollout_num_gpus_per_engine, a.sglang_mem_fraction_static) == (8, 0.7)


def test_recipes_need_their_inputs_outside_dry_runs(tmp_path):
    env = clean_env(HF_CHECKPOINT=str(tmp_path / "missing"))
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "longtracerl-qwen3-4b-thinking.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "HF_CHECKPOINT" in proc.stderr


# ---------------------------------------------------------------- SGLang flags passed through

def sglang_server_fields() -> set[str]:
    import ast
    import zipfile

    from slime_ext.versions import SGLANG_VERSION

    cache = Path(os.environ.get("LONGTRACE_CACHE", Path.home() / ".cache" / "longtrace")) / "sglang-wheels"
    found = sorted(cache.glob(f"sglang-{SGLANG_VERSION}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                        f"sglang=={SGLANG_VERSION}", "-d", str(cache)], capture_output=True, timeout=600)
        found = sorted(cache.glob(f"sglang-{SGLANG_VERSION}-*.whl"))
    if not found:
        pytest.fail(f"could not download sglang=={SGLANG_VERSION} (network?); this test needs the pinned release")
    wheel = zipfile.ZipFile(found[0])
    fields = set()
    for name in wheel.namelist():
        if name.startswith("sglang/srt/arg_groups/fields/") and name.endswith(".py"):
            for node in ast.walk(ast.parse(wheel.read(name).decode())):
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    fields.add(node.target.id)
    assert fields, "SGLang's server-argument field modules moved"
    fields.add("__environ__" + wheel.read("sglang/srt/environ.py").decode())
    return fields


def test_sglang_pass_through_flags_and_env_exist_in_the_pinned_release():
    """What the engines are launched with (slime's --sglang-* names translated, then SGLANG_EXTRA_ARGS) are SGLang
    0.5.23 server arguments."""
    from slime_ext.arguments import build_parser, sglang_server_args

    fields = sglang_server_fields()
    environ = next(f for f in fields if f.startswith("__environ__"))
    for recipe in RECIPES:
        if recipe.name == "tiny-cpu.sh":
            continue
        for env in ({}, {"SGLANG_EXTRA_ARGS": "--kv-cache-dtype fp8_e5m2"}):
            extra = sglang_server_args(build_parser().parse_args(train_args(dry_run(recipe, **env))))
            flags = [f for f in extra if f.startswith("--")]
            missing = [f for f in flags if f[2:].replace("-", "_") not in fields]
            assert not missing, f"{recipe.name}: not SGLang server arguments: {missing}"
            # the rollout log-probs feed IcePop: SGLang's head in fp32 like ours
            assert "--enable-fp32-lm-head" in extra, recipe.name
            assert ("--kv-cache-dtype" in extra) == bool(env), recipe.name
            if "30b" in recipe.name:
                assert extra[extra.index("--ep-size") + 1] == "8"
        for var in re.findall(r"export (SGLANG_[A-Z_]+)=", recipe.read_text()):
            assert var in environ, f"{recipe.name}: SGLang has no environment variable {var}"


# ---------------------------------------------------------------- cluster scripts

def test_ray_cluster_start_stop_status_dry_run(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("gpu-a slots=8\n# a comment\ngpu-b\n\ngpu-c   # third\n")
    env = clean_env(DRY_RUN="1", HEAD_IP="10.0.0.1", NET_IFNAME="ib0", GPUS_PER_NODE="8")
    script = str(ROOT / "scripts" / "ray_cluster.sh")

    def run(action):
        proc = subprocess.run(["bash", script, action, str(hostfile)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return [line.split(": ", 1) for line in proc.stdout.splitlines()]

    lines = run("start")
    assert lines[0][0] == "gpu-a" and "ray start --head" in lines[0][1]
    head = lines[0][1]
    assert "--node-ip-address=10.0.0.1" in head and "--port=6379" in head and "--num-gpus=8" in head
    assert "--dashboard-host=127.0.0.1" in head and "NCCL_SOCKET_IFNAME=ib0" in head
    workers = {host: cmd for host, cmd in lines[1:]}
    assert set(workers) == {"gpu-b", "gpu-c"}
    for cmd in workers.values():
        assert "ray start --address=10.0.0.1:6379" in cmd and "--head" not in cmd and "GLOO_SOCKET_IFNAME=ib0" in cmd
    stop = run("stop")
    assert [h for h, _ in stop][-1] == "gpu-a" and all("ray stop" in c for _, c in stop)
    status = run("status")
    assert status[0][0] == "gpu-a" and "ray status --address=10.0.0.1:6379" in status[0][1]
    bad = subprocess.run(["bash", script, "restart", str(hostfile)], env=env, capture_output=True, text=True)
    assert bad.returncode == 2


def test_slurm_example_starts_ray_and_runs_a_recipe():
    text = (ROOT / "scripts" / "slurm_example.sbatch").read_text()
    assert re.search(r"^#SBATCH --nodes=\d+", text, re.M) and "#SBATCH --gpus-per-node" in text
    assert "scontrol show hostnames" in text
    assert re.search(r"srun .*\\\n\s+ray start --head --block", text)
    assert re.search(r"srun .*\\\n\s+ray start --block --address=", text)
    recipe = re.search(r'RECIPE="\$\{RECIPE:-([^}]+)\}"', text).group(1)
    assert (ROOT / recipe).is_file()
    assert "RAY_SUBMIT=1" in text and "ray stop" in text
