"""recipes/slime/*.sh against slime's own command line, and our own recipes' overlap with it.

slime's train.py parses Megatron-LM's flags plus slime's (unknown flags are dropped silently) and, separately,
SGLang's server flags prefixed ``--sglang-`` and sglang-router's prefixed ``--router-``. CI cannot reach GitHub, so
that parser is kept as data: tests/fixtures/slime_flags.json, written by scripts/dev/slime_flags.py from slime's
source (THUDM/slime 624b824, Megatron-LM at the commit slime's Dockerfile pins, SGLang 0.5.23), with the MODEL_ARGS
of the slime model scripts the recipes source. Here the parser is rebuilt from that data (flag, action, nargs,
choices) and made strict, so a flag slime would drop fails the test instead; the checks slime runs on the parsed
arguments that the recipes can break (slime_validate_args, _hf_validate_args) are written out below with their
source lines.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "slime_flags.json").read_text())
SLIME_RECIPES = sorted((ROOT / "recipes" / "slime").glob("longtracerl-*.sh"))
OUR_RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.sh") if p.name != "common.sh")
# recipe -> (slime model script, the HF config fields slime's _hf_validate_args compares; the published 2507 configs)
MODELS = {
    "longtracerl-qwen3-4b-thinking.sh": ("qwen3-4B.sh", {
        "hidden_size": 2560, "num_attention_heads": 32, "num_hidden_layers": 36, "intermediate_size": 9728,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-6, "rope_theta": 5000000, "num_key_value_heads": 8}),
    "longtracerl-qwen3-30b-a3b-thinking.sh": ("qwen3-30B-A3B.sh", {
        "hidden_size": 2048, "num_attention_heads": 32, "num_hidden_layers": 48, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_experts": 128, "tie_word_embeddings": False, "rms_norm_eps": 1e-6,
        "rope_theta": 10000000, "num_key_value_heads": 4}),
}


class SlimeParseError(Exception):
    pass


class _Strict(argparse.ArgumentParser):
    def error(self, message):
        raise SlimeParseError(message)


def slime_parser() -> argparse.ArgumentParser:
    """slime's command line rebuilt from the fixture, strict (slime itself ignores unknown flags)."""
    p = _Strict(add_help=False, allow_abbrev=False)
    for flag, spec in FIXTURE["flags"].items():
        kw: dict = {"dest": flag}
        if spec["action"] in ("store_true", "store_false"):
            kw["action"] = spec["action"]
        elif spec["nargs"] == 0:  # BooleanOptionalAction-style flags of SGLang
            kw["action"] = "store_true"
        else:
            if spec["nargs"] is not None:
                kw["nargs"] = spec["nargs"]
            if spec["choices"]:
                kw["choices"] = [c.split(".", 1)[1] if c.startswith("AttnBackend.") else c for c in spec["choices"]]
        p.add_argument(flag, **kw)
    return p


def slime_parse(argv: list[str]) -> dict:
    return vars(slime_parser().parse_args(argv))


def test_fixture_is_slimes_parser():
    """The fixture holds slime's, Megatron's and the prefixed SGLang / router flags (a partial dump fails here)."""
    flags = FIXTURE["flags"]
    assert "624b824" in FIXTURE["provenance"]["slime"]
    for flag in ("--custom-rm-path", "--group-rm", "--eval-function-path", "--custom-config-path",  # slime
                 "--tensor-model-parallel-size", "--rotary-base", "--bf16",  # Megatron
                 "--sglang-mem-fraction-static", "--sglang-enable-fp32-lm-head", "--sglang-ep-size",  # SGLang
                 "--router-policy"):  # sglang-router
        assert flag in flags, flag
    assert flags["--update-weight-transport"]["choices"] == ["nccl", "disk"]
    assert flags["--group-rm"]["action"] == "store_true" and flags["--eval-prompt-data"]["nargs"] == "+"
    for name, argv in FIXTURE["model_args"].items():
        assert FIXTURE["rotary_placeholder"] in argv, name


def test_strict_parser_refuses_what_slime_would_drop():
    with pytest.raises(SlimeParseError, match="unrecognized"):
        slime_parse(["--rubric-reward-ratio", "0.3"])
    with pytest.raises(SlimeParseError, match="invalid choice"):
        slime_parse(["--update-weight-transport", "tensor"])
    assert slime_parse(["--attention-backend", "flash"])["--attention-backend"] == "flash"


# ---------------------------------------------------------------- running the slime recipes (dry runs)

def fake_slime(tmp_path: Path) -> Path:
    """A SLIME_DIR holding slime's model scripts as the fixture recorded them (their MODEL_ARGS, RoPE base from
    MODEL_ARGS_ROTARY_BASE with slime's default)."""
    models = tmp_path / "slime" / "scripts" / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name, argv in FIXTURE["model_args"].items():
        body = " ".join("\"${MODEL_ARGS_ROTARY_BASE:-1000000}\"" if a == FIXTURE["rotary_placeholder"]
                        else "'" + a + "'" for a in argv)
        (models / name).write_text(f"MODEL_ARGS=({body})\n")
    return tmp_path / "slime"


def hf_dir(tmp_path: Path, fields: dict) -> Path:
    d = tmp_path / "hf"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(fields))
    return d


def export_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ds" / "data"
    d.mkdir(parents=True, exist_ok=True)
    for split in ("train", "eval"):
        (d / f"{split}.jsonl").write_text("{}\n")
    return d.parent


def run_recipe(recipe: Path, tmp_path: Path, **env) -> tuple[list[str], Path]:
    """(the submitted command's argv, the run dir) of a dry run writing the reward config."""
    run_dir = tmp_path / "run"
    full = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    full.update({"LT_DRY_RUN": "1", "LT_DRY_RUN_FILES": "1", "RUN_DIR": str(run_dir),
                 "SLIME_DIR": str(fake_slime(tmp_path)), "MEGATRON_DIR": "/opt/Megatron-LM",
                 "PROMPT_DATA": str(export_dir(tmp_path)), "JUDGE_BASE_URL": "http://judge.example:30000/v1", **env})
    proc = subprocess.run(["bash", str(recipe)], env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split("\0")
    assert argv[-1] == ""
    return argv[:-1], run_dir


def train_argv(argv: list[str], slime_dir: Path) -> list[str]:
    i = argv.index("--")
    assert argv[:3] == ["ray", "job", "submit"] and argv[i + 2] == str(slime_dir / "train.py")
    return argv[i + 3:]


def check_slime_validation(a: dict, hf: dict) -> None:
    """What slime checks on the parsed flags, by source line (slime/utils/arguments.py and
    slime/backends/megatron_utils/arguments.py at 624b824)."""
    # _hf_validate_args: the model script's flags against the HF config
    assert a["--hidden-size"] == str(hf["hidden_size"]) and a["--num-attention-heads"] == str(hf["num_attention_heads"])
    assert a["--num-layers"] == str(hf["num_hidden_layers"]) and float(a["--norm-epsilon"]) == hf["rms_norm_eps"]
    if "moe_intermediate_size" in hf:
        assert a["--moe-ffn-hidden-size"] == str(hf["moe_intermediate_size"])
    else:
        assert a["--ffn-hidden-size"] == str(hf["intermediate_size"])
    assert a["--untie-embeddings-and-output-weights"] == (not hf["tie_word_embeddings"])
    assert float(a["--rotary-base"]) == hf["rope_theta"], "slime: rope_theta in hf config is not equal to rotary_base"
    assert a["--num-query-groups"] == str(hf["num_key_value_heads"])
    # slime_validate_args
    assert float(a["--rollout-temperature"]) > 0
    if a["--eval-interval"] is not None:
        assert a["--eval-prompt-data"], "Evaluation datasets must be configured when eval_interval is set."
    if a["--save-interval"] is not None:
        assert a["--save"] is not None
    if a["--use-dynamic-batch-size"]:
        assert a["--max-tokens-per-gpu"] is not None
    # slime/ray/rollout.py eval path: its own eval rollout asserts `not args.group_rm`
    if a["--group-rm"] and a["--eval-interval"] is not None:
        assert a["--eval-function-path"], "slime's eval rollout asserts not group_rm: name an eval function"


@pytest.mark.parametrize("variant", [{}, {"EVAL_DATA": "export", "ETA": "0.1"}, {"REWARD_URL": "http://127.0.0.1:7248"}],
                         ids=["default", "eval", "reward-server"])
@pytest.mark.parametrize("recipe", SLIME_RECIPES, ids=lambda p: p.name)
def test_slime_recipe_parses_under_slimes_flags(recipe, variant, tmp_path):
    import reward.slime_rm as slime_rm
    from reward.slime_rm import config_from_slime_args, reward_url

    script, hf_fields = MODELS[recipe.name]
    hf = hf_dir(tmp_path, hf_fields)
    env = dict(variant)
    if env.get("EVAL_DATA") == "export":
        env["EVAL_DATA"] = str(export_dir(tmp_path))
    argv, run_dir = run_recipe(recipe, tmp_path, HF_CHECKPOINT=str(hf), REF_LOAD=str(tmp_path / "torch_dist"),
                               JUDGE_API_KEY="secret", **env)
    args = train_argv(argv, tmp_path / "slime")
    a = slime_parse(args)  # SlimeParseError on a flag slime does not have or a value it refuses
    check_slime_validation(a, hf_fields)

    # the model script's flags are all there, with the checkpoint's RoPE base
    recorded = FIXTURE["model_args"][script]
    assert [x for x in recorded if x.startswith("--")] == [x for x in args[:len(recorded)] if x.startswith("--")]
    # weights: --ref-load starts the run, --load (the run's checkpoints) resumes it
    assert a["--ref-load"] == str(tmp_path / "torch_dist") and a["--load"] == a["--save"] == str(run_dir / "checkpoints")
    # data: a file slime's Dataset reads, the export's keys, the chat template applied
    assert a["--prompt-data"] == str(tmp_path / "ds" / "data" / "train.jsonl")
    assert (a["--input-key"], a["--label-key"], a["--metadata-key"]) == ("input_messages", "label", "metadata")
    assert a["--apply-chat-template"]
    # the paper's algorithm in slime's terms: IcePop through slime's function path, not its default clamp
    assert a["--use-tis"] and a["--custom-tis-function-path"] == "slime.backends.megatron_utils.loss.icepop_function"
    assert (a["--tis-clip-low"], a["--tis-clip"], a["--eps-clip"], a["--eps-clip-high"]) == ("0.5", "2.0", "0.2", "0.28")
    assert int(a["--global-batch-size"]) == int(a["--rollout-batch-size"]) * int(a["--n-samples-per-prompt"])
    assert a["--sglang-enable-fp32-lm-head"] and a["--colocate"]
    world = int(a["--actor-num-nodes"]) * int(a["--actor-num-gpus-per-node"])
    tp, pp, cp = (int(a[f"--{k}-parallel-size"]) for k in ("tensor-model", "pipeline-model", "context"))
    assert world % (tp * pp * cp) == 0 and int(a["--actor-num-gpus-per-node"]) % int(a["--rollout-num-gpus-per-engine"]) == 0
    if "num_experts" in hf_fields:
        ep, etp = int(a["--expert-model-parallel-size"]), int(a["--expert-tensor-parallel-size"])
        assert world % (etp * ep * pp) == 0 and hf_fields["num_experts"] % ep == 0
        assert int(a["--rollout-num-gpus-per-engine"]) % int(a["--sglang-ep-size"]) == 0
    # our reward, where slime loads it from: functions that exist, configured through --custom-config-path
    assert a["--group-rm"]
    for path in (a["--custom-rm-path"], a["--eval-function-path"]):
        if path:
            module, name = path.rsplit(".", 1)
            assert module == "reward.slime_rm" and callable(getattr(slime_rm, name))
    assert (a["--eval-function-path"] is not None) == ("EVAL_DATA" in env)
    if "EVAL_DATA" in env:
        assert a["--eval-prompt-data"] == ["aa-lcr", str(tmp_path / "ds" / "data" / "eval.jsonl")]
    config = yaml.safe_load(Path(a["--custom-config-path"]).read_text())  # slime: setattr(args, k, v) for each key
    slime_args = Namespace(**config)
    cfg = config_from_slime_args(slime_args)
    assert (cfg.combine.mode, cfg.combine.eta, cfg.combine.group_normalize, cfg.rubric.source) == \
        ("positive_only", float(env.get("ETA", 0.3)), True, "content")
    if "REWARD_URL" in env:
        assert reward_url(slime_args) == env["REWARD_URL"] and "judge" not in json.dumps(config)
    else:
        assert cfg.judge.kind == "llm" and cfg.judge.llm.base_url == "http://judge.example:30000/v1"
        assert cfg.judge.llm.api_key_env == "JUDGE_API_KEY"
        assert "secret" not in json.dumps(config)  # the key travels in the job's environment, by name
        runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])["env_vars"]
        assert runtime_env["JUDGE_API_KEY"] == "secret"
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])["env_vars"]
    assert runtime_env["PYTHONPATH"].split(":")[:2] == ["/opt/Megatron-LM", str(ROOT)]


def test_slime_recipe_refuses_a_yarn_checkpoint(tmp_path):
    """Megatron at slime's pinned commit offers no YaRN for standard attention on its command line (its
    --position-embedding-type choices lack it; --rope-type yarn is MLA only): a scaled-RoPE model stops here."""
    assert "yarn" not in FIXTURE["flags"]["--position-embedding-type"]["choices"]
    hf = hf_dir(tmp_path, {**MODELS["longtracerl-qwen3-4b-thinking.sh"][1],
                           "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    recipe = ROOT / "recipes" / "slime" / "longtracerl-qwen3-4b-thinking.sh"
    with pytest.raises(AssertionError, match="rope_scaling"):
        run_recipe(recipe, tmp_path, HF_CHECKPOINT=str(hf))


def test_slime_recipe_data_file_rules(tmp_path):
    """slime's Dataset takes .jsonl / .parquet files only: an export folder gives its JSONL split, anything else
    stops before submitting."""
    recipe = ROOT / "recipes" / "slime" / "longtracerl-qwen3-4b-thinking.sh"
    hf = hf_dir(tmp_path, MODELS[recipe.name][1])
    argv, _ = run_recipe(recipe, tmp_path, HF_CHECKPOINT=str(hf), PROMPT_DATA=str(tmp_path / "x.parquet"))
    assert argv[argv.index("--prompt-data") + 1] == str(tmp_path / "x.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssertionError, match="no data/train.jsonl"):
        run_recipe(recipe, tmp_path, HF_CHECKPOINT=str(hf), PROMPT_DATA=str(tmp_path / "empty"))


# ---------------------------------------------------------------- our recipes: slime's names where slime has them

def documented_ours_only() -> set[str]:
    """The flags docs/slime.md lists as ours only (its table between the two markers)."""
    text = (ROOT / "docs" / "slime.md").read_text()
    block = text.split("<!-- ours-only:start -->")[1].split("<!-- ours-only:end -->")[0]
    return {cell.strip("` ") for line in block.splitlines() if line.startswith("| `--")
            for cell in [line.split("|")[1]]}


def our_recipe_argv(recipe: Path) -> list[str]:
    from .test_recipes_scripts import dry_run, train_args

    return train_args(dry_run(recipe, EVAL_DATA="/e.jsonl"))


@pytest.mark.parametrize("recipe", OUR_RECIPES, ids=lambda p: p.name)
def test_our_recipes_use_slime_names_and_values(recipe):
    """Every flag our recipes pass is slime's (and takes a value slime accepts), or is listed in docs/slime.md as
    ours only."""
    from slime_ext.arguments import build_parser

    from .test_recipes_scripts import array_flags

    ours_only = documented_ours_only()
    flags = set(array_flags(recipe.read_text()))
    undocumented = sorted(f for f in flags if f not in FIXTURE["flags"] and f not in ours_only)
    assert not undocumented, f"{recipe.name}: not slime flags and not in docs/slime.md's list: {undocumented}"
    # the argv without our own flags (and their values) must parse under slime's flags
    ours = {a.dest: a for a in build_parser()._actions for s in a.option_strings if s in ours_only}
    by_flag = {s: a for a in ours.values() for s in a.option_strings}
    argv, kept, i = our_recipe_argv(recipe), [], 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        if flag in by_flag:
            action = by_flag[flag]
            i += 1 if ("=" in argv[i] or action.nargs == 0) else 2
            continue
        kept.append(argv[i])
        i += 1
    slime_parse(kept)


def test_documented_ours_only_flags_exist_in_longtrace_train_and_not_in_slime():
    from slime_ext.arguments import build_parser

    ours = {s for a in build_parser()._actions for s in a.option_strings}
    listed = documented_ours_only()
    assert listed, "docs/slime.md lost its list of flags that are ours only"
    assert not sorted(listed - ours), "docs/slime.md lists flags `longtrace train` does not have"
    assert not sorted(listed & set(FIXTURE["flags"])), "docs/slime.md lists slime's own flags as ours only"


@pytest.mark.parametrize("path", [*SLIME_RECIPES, ROOT / "recipes" / "slime" / "common.sh"], ids=lambda p: p.name)
def test_slime_recipe_scripts_are_valid_bash_with_a_header(path):
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    if path.name != "common.sh":
        assert "set -euo pipefail" in text
        assert sum(line.startswith("#") for line in text.split("set -euo pipefail")[0].splitlines()) >= 8
