"""LongTrace-RL's RL framework (slime-style): Megatron-core trainer, SGLang rollout, Ray orchestration, and the
``longtrace`` command line (see docs/ARCHITECTURE.md)."""
