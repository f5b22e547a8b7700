"""Pinned versions of the rollout stack, in one place.

setup.py's ``gpu`` extra execs this file, the contract test downloads exactly ``SGLANG_VERSION`` from PyPI, and
the engine manager warns when the SGLang it launches reports another version.
"""

SGLANG_VERSION = "0.5.23"  # the SGLang release whose HTTP API the rollout client and weight sync speak
SGLANG_ROUTER_VERSION = "0.3.2"  # sglang-router: runs on CPU (Rust), used in CI and in production
