"""LongTrace-RL data generation: knowledge-graph walks, question synthesis, search agents, tiered distractors and
~128K-token context assembly (see docs/ARCHITECTURE.md)."""
