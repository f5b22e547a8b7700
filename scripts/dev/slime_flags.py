"""Dev-time: write down the command line slime's train.py accepts, for tests/test_slime_recipes.py (CI cannot reach
GitHub, so the flags are kept as a fixture with their provenance).

    .venv/bin/python scripts/dev/slime_flags.py --slime SLIME_GIT_DIR --megatron MEGATRON_LM_GIT_DIR \
        --python .sglang-cpu/venv/bin/python > tests/fixtures/slime_flags.json

It builds slime's real parser: Megatron-LM's ``add_megatron_arguments`` (at the commit slime's docker/Dockerfile pins,
``MEGATRON_COMMIT``) plus slime's ``get_slime_extra_args_provider`` (slime at its git dir's HEAD), which adds slime's
flags; slime's SGLang parser (``add_sglang_arguments``: SGLang's server arguments with a ``--sglang-`` prefix,
sglang-router's with ``--router-``); the few flags slime pre-parses (``_pre_parse_mode``). Both trees are
exported with ``git archive``; the parser is built by ``--python``, an interpreter with torch and triton (the SGLang
CPU environment has both), with this environment's sglang_router on the path and empty stand-ins for modules that
slime imports but parsing never uses (wandb). Per flag: its argparse action, choices and nargs. Also the MODEL_ARGS of
the slime model scripts recipes/slime sources (``model_args``), with the RoPE base they take from the environment
left as a placeholder.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

DUMP = r'''
import argparse, json, sys
from megatron.training.arguments import add_megatron_arguments
from slime.utils.arguments import get_slime_extra_args_provider
from slime.backends.sglang_utils.arguments import add_sglang_arguments
# slime's parse_args: phase 1 parses the --sglang-*/--router-* flags with their own parser, phase 2 Megatron's and
# slime's flags (unknown flags dropped silently); a few flags are pre-parsed before both (_pre_parse_mode).
p = argparse.ArgumentParser()
add_megatron_arguments(p)
get_slime_extra_args_provider()(p)
sg = argparse.ArgumentParser(add_help=False)
add_sglang_arguments(sg)
pre = argparse.ArgumentParser(add_help=False)
pre.add_argument("--train-backend", choices=["megatron"])
for f in ("--debug-rollout-only", "--debug-train-only"):
    pre.add_argument(f, action="store_true")
pre.add_argument("--load-debug-rollout-data")
out = {}
for a in [*p._actions, *sg._actions, *pre._actions]:
    for f in a.option_strings:
        if f.startswith("--") and f != "--help":
            kind = type(a).__name__
            out[f] = {"action": {"_StoreTrueAction": "store_true", "_StoreFalseAction": "store_false"}.get(kind),
                      "choices": [str(c) for c in a.choices] if a.choices else None,
                      "nargs": a.nargs if isinstance(a.nargs, (str, int)) else None}
import sglang
print(json.dumps({"flags": out, "sglang": sglang.__version__}))
'''


MODEL_SCRIPTS = ("qwen3-4B.sh", "qwen3-30B-A3B.sh")
ROTARY_PLACEHOLDER = "@MODEL_ARGS_ROTARY_BASE@"


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slime", required=True, help="git dir of THUDM/slime")
    p.add_argument("--megatron", required=True, help="git dir of NVIDIA/Megatron-LM (with slime's pinned commit)")
    p.add_argument("--python", required=True, help="interpreter with torch and triton")
    a = p.parse_args()
    slime_rev = git(a.slime, "rev-parse", "HEAD").strip()
    pinned = re.search(r"MEGATRON_COMMIT=([0-9a-f]+)", git(a.slime, "show", "HEAD:docker/Dockerfile")).group(1)
    import sglang_router

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for repo, rev, sub in ((a.slime, "HEAD", "slime"), (a.megatron, pinned, "megatron")):
            archive = subprocess.run(["git", "-C", repo, "archive", rev, sub], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        stubs = tmp / "stubs"
        (stubs / "wandb").mkdir(parents=True)
        (stubs / "wandb" / "__init__.py").write_text("")
        router = tmp / "router"
        router.mkdir()
        (router / "sglang_router").symlink_to(Path(sglang_router.__file__).parent)
        env = {"PYTHONPATH": f"{tmp}:{router}:{stubs}", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([a.python, "-c", DUMP], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        dumped = json.loads(proc.stdout.strip().splitlines()[-1])
    model_args = {}  # MODEL_ARGS of slime's scripts/models/<name>.sh that recipes/slime source, RoPE base left open
    for name in MODEL_SCRIPTS:
        text = git(a.slime, "show", f"HEAD:scripts/models/{name}")
        argv = subprocess.run(["bash", "-c", 'source /dev/stdin; printf "%s\\0" "${MODEL_ARGS[@]}"'], input=text,
                              env={"MODEL_ARGS_ROTARY_BASE": ROTARY_PLACEHOLDER, "PATH": "/usr/bin:/bin"},
                              check=True, capture_output=True, text=True).stdout.split("\0")[:-1]
        model_args[name] = argv
    print(json.dumps({
        "provenance": {"slime": f"THUDM/slime@{slime_rev}",
                       "megatron": f"NVIDIA/Megatron-LM@{pinned} (slime's docker/Dockerfile MEGATRON_COMMIT)",
                       "sglang": f"sglang=={dumped['sglang']} ServerArgs, prefixed --sglang- by slime, and "
                                 f"sglang-router=={version('sglang-router')} RouterArgs, prefixed --router- (slime's image "
                                 "ships its own SGLang: a flag of another release may differ)",
                       "written_by": "scripts/dev/slime_flags.py"},
        "flags": dict(sorted(dumped["flags"].items())),
        "model_args": model_args,
        "rotary_placeholder": ROTARY_PLACEHOLDER,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
