"""Multi-turn (agentic) generation: model turns and tool/environment outputs in one token stream.

    gen = MultiTurn(env=my_env, tokenizer=tok, max_turns=8)
    sample = await gen(client, sample, sampling)

Each model turn is one ``/generate`` on prompt + everything so far; its tokens keep the engine's ids and log-probs
with loss mask 1. After a turn that ended on a stop token or string, ``env(sample, turn_text)`` (sync or async)
returns the observation to append (text, tokenised here without special tokens, or token ids) or ``None`` to end
the episode. Observation tokens get loss mask 0 and log-prob 0.0, so ``loss_mask``, ``rollout_logprobs`` and
``response_tokens`` stay aligned one to one. The response budget (``--rollout-max-response-len``) and the context
budget cover model and observation tokens together; an observation that does not fit truncates the sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .rollout_client import RolloutClient, SamplingConfig, call_maybe_async
from .sample import COMPLETED, TRUNCATED, Sample

EnvFn = Callable[[Sample, str], Any]  # -> str | list[int] | None (or an awaitable of one)


@dataclass
class MultiTurn:
    env: EnvFn
    tokenizer: Any = None  # needed when env returns text
    max_turns: int = 8

    async def __call__(self, client: RolloutClient, sample: Sample, sampling: SamplingConfig) -> Sample:
        turns = sample.metadata.get("turns", 0)
        while turns < self.max_turns:
            before = len(sample.response_tokens)
            await client.generate(sample, sampling)
            turns += 1
            sample.metadata["turns"] = turns
            if sample.status != COMPLETED:
                return sample  # truncated, aborted (partial rollout resumes it) or failed
            turn_text = _turn_text(self.tokenizer, sample, before)
            observation = await call_maybe_async(self.env, sample, turn_text)
            if observation is None:
                return sample
            ids = list(observation) if not isinstance(observation, str) else self._encode(observation)
            room = sampling.max_new_tokens(len(sample.prompt_tokens), len(sample.response_tokens))
            if len(ids) > room:
                ids, sample.status = ids[:max(room, 0)], TRUNCATED
            sample.response_tokens += ids
            sample.loss_mask += [0] * len(ids)
            sample.rollout_logprobs += [0.0] * len(ids)
            if isinstance(observation, str):
                sample.response_text += observation
            sample.metadata.setdefault("observation_spans", []).append([len(sample.response_tokens) - len(ids), len(sample.response_tokens)])
            if sample.status == TRUNCATED:
                return sample
        return sample

    def _encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError("MultiTurn: env returned text but no tokenizer was given")
        return self.tokenizer.encode(text, add_special_tokens=False)


def _turn_text(tokenizer: Any, sample: Sample, start: int) -> str:
    if tokenizer is None:
        return ""
    return tokenizer.decode(sample.response_tokens[start:], skip_special_tokens=False)
