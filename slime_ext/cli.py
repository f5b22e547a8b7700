"""The ``longtrace`` command: one entry point, one sub-command per job, each implemented in its package.

    longtrace reward score|serve|bench ...      reward/cli.py
    longtrace data ...                          data_gen/cli.py
    longtrace engine serve|launch ...           slime_ext/torch_engine.py, slime_ext/sglang_engine.py
    longtrace rollout ...                       slime_ext/rollout.py
    longtrace train ...                         slime_ext/train.py

Sub-commands import their package lazily, so ``longtrace reward`` never imports torch.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "reward": ("reward.cli", "outcome + rubric rewards: score files, serve, benchmark"),
    "data": ("data_gen.cli", "training data: synthetic world, KILT store, walks, questions, search, agents"),
    "engine": ("slime_ext.engine_cli", "rollout engines: serve (torch engine, SGLang API), launch (SGLang/torch + router)"),
    "rollout": ("slime_ext.rollout", "generate and score GRPO groups for a dataset through engines behind the router"),
    "train": ("slime_ext.train", "GRPO training: Megatron-core trainer + rollout engines under Ray (recipes/ launch it)"),
    "convert": ("slime_ext.convert", "HF <-> megatron distributed checkpoints (hf-to-mcore, mcore-to-hf)"),
    "tiny-model": ("slime_ext.tiny_model", "write a tiny random Qwen3 checkpoint + tokenizer (tests, quickstart)"),
}


def _usage() -> str:
    lines = ["usage: longtrace <command> [args...]", "", "commands:"]
    lines += [f"  {name:10s} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'longtrace <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"longtrace: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
