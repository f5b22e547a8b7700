"""``longtrace engine``: the rollout engines' command line.

    longtrace engine serve  --model-path DIR [--port 30000 --device cpu]      one torch engine (SGLang HTTP API)
    longtrace engine launch --model-path DIR --num-engines N [--backend sglang|torch] [-- SGLANG FLAGS]
                                                                              engines + sglang-router, Ctrl-C stops all
"""
from __future__ import annotations

import sys

SUBCOMMANDS = {
    "serve": ("slime_ext.torch_engine", "serve a HF model over SGLang's HTTP API with transformers (CPU or one GPU)"),
    "launch": ("slime_ext.sglang_engine", "start SGLang (or torch) engines behind sglang-router"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        print("usage: longtrace engine {serve,launch} [args...]\n")
        for name, (_, help_) in SUBCOMMANDS.items():
            print(f"  {name:8s} {help_}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
