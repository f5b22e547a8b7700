"""The rollout step: groups, rewards as groups finish, over-sampling, dynamic filter, aborting the surplus,
partial rollout resume, multi-turn loss masks. Against a scripted engine (deterministic timing and tokens)."""
import asyncio

import pytest

from reward.schema import GroupResult, SampleReward
from slime_ext.multi_turn import MultiTurn
from slime_ext.rollout import PromptSource, RolloutConfig, generate_rollout, reward_request, rewards_not_all_equal
from slime_ext.rollout_client import ClientConfig, RolloutClient, SamplingConfig
from slime_ext.sample import Sample

from .helpers import FakeSGLangEngine


class IdTokenizer:
    """prompt i -> token ids [10 + i]; decode -> 't<id>' words (enough for the loop and multi-turn)."""

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return {"input_ids": [10 + int(messages[-1]["content"].split()[-1])]}

    def encode(self, text, add_special_tokens=False):
        return [int(w[3:]) for w in text.split()]  # "obs<id>" words

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids)

    def convert_ids_to_tokens(self, i):
        return {2: "<|im_end|>"}.get(i, f"t{i}")


class ScriptedRewards:
    """RewardFn whose rewards per group come from ``fn(group_id, requests)``; records when groups were scored."""

    def __init__(self, fn):
        self.fn, self.scored = fn, []

    async def score_group(self, requests, evaluation=False):
        self.scored.append(requests[0].group_id)
        rewards = self.fn(int(requests[0].group_id), requests)
        samples = [SampleReward(reward=r, outcome_reward=r, rubric_reward=0.0, correct=r > 0, valid=True) for r in rewards]
        return GroupResult(rewards=rewards, samples=samples, rubric_hat=[0.0] * len(rewards), rubric_max=0.0)

    async def aclose(self):
        pass


def records(n):
    return [{"prompt": f"question {i}", "label": str(i), "metadata": {"extra_reward_info": {"question": f"q{i}"}}} for i in range(n)]


def rollout(engine, cfg, source, reward_fn=None, generate_fn=None):
    async def go():
        client = RolloutClient(ClientConfig(url=engine.url, backoff_s=0.01), worker_urls=[engine.url])
        try:
            return await generate_rollout(cfg, client, source, reward_fn, IdTokenizer(), generate_fn=generate_fn)
        finally:
            await client.aclose()
    return asyncio.run(go())


@pytest.fixture
def engine():
    engines = []

    def make(script):
        engines.append(FakeSGLangEngine(script))
        return engines[-1]
    yield make
    for e in engines:
        e.close()


def prompt_index(body):
    return body["input_ids"][0] - 10  # IdTokenizer: prompt i starts with token 10 + i


def test_groups_rewarded_and_counts_add_up(engine):
    eng = engine(lambda n, b: {"n_tokens": 4})
    rewards = ScriptedRewards(lambda gid, reqs: [float(i % 2) for i in range(len(reqs))])
    cfg = RolloutConfig(rollout_batch_size=3, n_samples_per_prompt=4)
    result = rollout(eng, cfg, PromptSource(records(5), IdTokenizer(), 4), rewards)
    assert len(result.groups) == 3 and all(len(g) == 4 for g in result.groups)
    assert [s.index for s in result.groups[0]] == [0, 1, 2, 3] and len({s.group_id for s in result.groups[0]}) == 1
    assert [s.reward for s in result.groups[0]] == [0.0, 1.0, 0.0, 1.0]
    req = reward_request(result.groups[0][0], IdTokenizer())
    assert req.status == "completed" and req.stop == "<|im_end|>" and req.extra_reward_info.question.startswith("q")
    c = result.counts
    assert (c.requested, c.completed, c.groups_requested, c.groups_accepted) == (12, 12, 3, 3)
    assert len(eng.bodies) == 12  # no surplus beyond rollout_batch_size without over-sampling


def test_over_sampling_with_dynamic_filter_aborts_the_surplus(engine):
    # prompts 0-2 are slow (aborted once enough groups are in); the others answer at once.
    # prompts 3-4 answer at once, 5-8 a little later
    eng = engine(lambda n, b: {"delay": 30.0, "n_tokens": 50} if prompt_index(b) < 3 else
                 {"n_tokens": 4} if prompt_index(b) < 5 else {"delay": 1.0, "n_tokens": 4})
    # groups 3 and 4 get all-equal rewards (dropped by the filter), groups 5..8 get mixed rewards
    rewards = ScriptedRewards(lambda gid, reqs: [1.0] * len(reqs) if gid in (3, 4) else [0.0, 1.0][: len(reqs)])
    cfg = RolloutConfig(rollout_batch_size=2, n_samples_per_prompt=2, over_sampling_batch_size=9, dynamic_sampling_filter=True)
    result = rollout(eng, cfg, PromptSource(records(9), IdTokenizer(), 2), rewards)
    c = result.counts
    assert len(result.groups) == 2 and all(rewards_not_all_equal(g)[0] for g in result.groups)
    assert c.groups_filtered == 2 and c.filter_reasons["zero_std"] == 2
    assert c.groups_aborted >= 3 and c.aborted >= 6  # the three slow groups were aborted, not waited for
    assert c.groups_aborted + c.groups_surplus == 5  # slow ones + whatever of 5..8 was not needed
    assert c.groups_requested == 9 == c.groups_accepted + c.groups_filtered + c.groups_aborted + c.groups_surplus
    assert c.requested == 18 == c.completed + c.truncated + c.aborted + c.failed
    aborted_rids = {a["rid"] for a in eng.aborts}
    slow_rids = {b["rid"] for b in eng.bodies if prompt_index(b) < 3}
    assert slow_rids <= aborted_rids  # aborted through /abort_request by rid
    assert not (set(rewards.scored) & {"0", "1", "2"})  # aborted groups are not scored


def test_partial_rollout_resumes_from_the_partial_tokens(engine):
    slow = {"on": True}
    eng = engine(lambda n, b: {"delay": 30.0, "n_tokens": 40, "finish": "length"} if prompt_index(b) == 0 and slow["on"]
                 else {"n_tokens": 3})
    cfg = RolloutConfig(rollout_batch_size=1, n_samples_per_prompt=1, over_sampling_batch_size=2, partial_rollout=True,
                        sampling=SamplingConfig(max_response_len=40))
    source = PromptSource(records(4), IdTokenizer(), 1)

    async def two_steps():
        client = RolloutClient(ClientConfig(url=eng.url), worker_urls=[eng.url])
        try:
            # step 1: prompt 1 finishes first; prompt 0 (slow) is aborted with the tokens it had so far
            first = await generate_rollout(cfg, client, source, None, IdTokenizer())
            buffered = [g[0] for g in source.buffer]
            partial = [list(s.response_tokens) for s in buffered]
            slow["on"] = False
            second = await generate_rollout(cfg, client, source, None, IdTokenizer())
            return first, buffered, partial, second
        finally:
            await client.aclose()
    first, buffered, partial, second = asyncio.run(two_steps())
    assert first.counts.buffered == 1 and first.counts.groups_aborted == 1
    assert len(buffered) == 1 and buffered[0].prompt_id == "0"
    s = second.groups[0][0]
    assert s.prompt_id == "0" and second.counts.resumed == 1  # the buffer is served first
    n = len(partial[0])
    assert n >= 1 and s.response_tokens[:n] == partial[0]  # partial tokens kept, generation continued after them
    resumed_body = [b for b in eng.bodies if prompt_index(b) == 0][-1]
    assert resumed_body["input_ids"] == s.prompt_tokens + partial[0]
    assert resumed_body["sampling_params"]["max_new_tokens"] == 40 - n
    assert len(s.rollout_logprobs) == len(s.loss_mask) == s.response_length and s.status == "completed"
    assert s.metadata["partial_rollout"] == 1


def test_multi_turn_masks_observations_and_keeps_logprobs_aligned(engine):
    eng = engine(lambda n, b: {"n_tokens": 3})

    def env(sample, turn_text):
        turns = sample.metadata["turns"]
        return None if turns >= 3 else f"obs{900 + turns} obs{950 + turns}"
    gen = MultiTurn(env=env, tokenizer=IdTokenizer(), max_turns=5)
    cfg = RolloutConfig(rollout_batch_size=1, n_samples_per_prompt=1)
    result = rollout(eng, cfg, PromptSource(records(1), IdTokenizer(), 1), generate_fn=gen)
    s = result.groups[0][0]
    assert len(eng.bodies) == 3 and s.metadata["turns"] == 3
    # model turn (3 tokens, mask 1), observation (2 tokens, mask 0), ... last model turn
    assert s.loss_mask == [1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1]
    assert s.rollout_logprobs == [-0.25 if m else 0.0 for m in s.loss_mask]
    assert s.response_tokens[3:5] == [901, 951] and s.response_tokens[8:10] == [902, 952]
    # each turn is sent prompt + everything so far, observations included, as token ids
    assert eng.bodies[1]["input_ids"] == s.prompt_tokens + s.response_tokens[:5]
    assert eng.bodies[2]["input_ids"] == s.prompt_tokens + s.response_tokens[:10]
    s.check()


def test_failed_samples_are_named_and_counted(engine):
    eng = engine(lambda n, b: {"status": 400} if prompt_index(b) == 1 else {"n_tokens": 2})
    cfg = RolloutConfig(rollout_batch_size=2, n_samples_per_prompt=2, over_sampling_batch_size=3)
    result = rollout(eng, cfg, PromptSource(records(3), IdTokenizer(), 2))
    c = result.counts
    assert c.failed == 2 and c.reasons["http_400"] == 2 and c.groups_failed == 1
    assert c.requested == c.completed + c.truncated + c.aborted + c.failed
    assert [g[0].prompt_id for g in result.groups] == ["0", "2"]


def test_config_validation():
    with pytest.raises(ValueError, match="over-sampling"):
        RolloutConfig(rollout_batch_size=4, over_sampling_batch_size=2).validate()
    with pytest.raises(ValueError, match="n-samples"):
        RolloutConfig(n_samples_per_prompt=0).validate()
