"""Dev-time check (not part of CI): our slime functions driven by slime's REAL code (THUDM/slime 624b824).

    git clone https://github.com/THUDM/slime && git -C slime checkout 624b824   # or any later slime to re-check
    mkdir -p /tmp/slime_src && git -C slime archive HEAD slime | tar x -C /tmp/slime_src
    PYTHONPATH=/tmp/slime_src:. .venv/bin/python scripts/dev/slime_reward_check.py

tests/test_slime_rm.py and tests/test_reward_server.py hold the same contract as fixtures for CI (no GitHub there).

The math-grading modules rm_hub imports (pylatexenc, ...) are stubbed when missing; they are not used here.
"""
import asyncio
import sys
import types
from types import SimpleNamespace

for name in ("pylatexenc", "pylatexenc.latex2text", "math_verify"):
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        mod.latex2text = types.SimpleNamespace(LatexNodes2Text=lambda *a, **k: None)
        sys.modules[name] = mod

from slime.rollout.rm_hub import async_rm, batched_async_rm  # noqa: E402
from slime.utils.eval_config import build_eval_dataset_configs  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

from reward import slime_rm  # noqa: E402

RUBRICS = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]
GOOD = "think</think>Lady Gaga, The Fame, Poker Face, RedOne. **Answer:** Moroccan-Swedish<|im_end|>"


def sample(response=GOOD):
    s = Sample(prompt="q", response=response, label="Moroccan-Swedish", status=Sample.Status.COMPLETED,
               metadata={"extra_reward_info": {"question": "q", "rubrics": RUBRICS}})
    return s


def args(**kw):
    base = dict(custom_rm_path="reward.slime_rm.longtrace_rm", group_rm=False, reward_key=None, eval_reward_key=None,
                rm_type=None, hf_checkpoint=None, rollout_stop=None, rollout_stop_token_ids=None)
    return SimpleNamespace(**{**base, **kw})


async def main():
    a = args()
    s = sample()
    assert abs(await async_rm(a, s) - 0.94) < 1e-9, s.reward  # training: no custom_rm_path on the sample
    # eval: slime's own eval-config resolution, then what eval_rollout_single_dataset does to the sample
    (ds,) = build_eval_dataset_configs(a, [{"name": "d", "path": "p"}], {})
    e = sample()
    e.metadata = ds.inject_metadata(e.metadata)
    e.custom_rm_path = ds.custom_rm_path
    assert ds.custom_rm_path == "reward.slime_rm.longtrace_rm" and await async_rm(a, e) == 1.0
    (ds,) = build_eval_dataset_configs(a, [{"name": "d", "path": "p"}], {"custom_rm_path": slime_rm.EVAL_RM_PATH})
    e = sample()
    e.custom_rm_path = ds.custom_rm_path
    assert await async_rm(args(reward_key="reward"), e) == {**e.metadata["longtrace_reward"]} | {}
    # group
    g = args(custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True)
    rewards = await batched_async_rm(g, [sample(), sample("think</think>Lady Gaga **Answer:** Moroccan-Swedish<|im_end|>")])
    assert [round(r, 6) for r in rewards] == [1.0, round(0.7 + 0.3 * 0.25, 6)], rewards
    print("slime", slime_rm.SLIME_COMMIT, "contract OK with slime's real Sample, async_rm, batched_async_rm, eval_config")


asyncio.run(main())


# ---- slime's real eval rollout (slime.rollout.sglang_rollout.generate_rollout, evaluation=True) with a run trained
# with --group-rm: through reward.slime_rm.longtrace_eval_rollout; SGLang's /generate replaced by a canned answer.
def real_eval_rollout():
    import json
    import tempfile

    import slime.rollout.sglang_rollout as sr
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tmp = tempfile.mkdtemp()
    vocab = {"a": 0, "<｜end▁of▁sentence｜>": 1, "<|endoftext|>": 2}  # a DeepSeek-style EOS
    tok = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<｜end▁of▁sentence｜>",
                            additional_special_tokens=["<|endoftext|>"]).save_pretrained(tmp)
    data = f"{tmp}/eval.jsonl"
    with open(data, "w") as f:
        f.write(json.dumps({"text": "q", "label": "Moroccan-Swedish",
                            "metadata": {"extra_reward_info": {"question": "q", "rubrics": RUBRICS}}}) + "\n")

    async def fake_generate(args, sample, sampling_params):
        sample.tokens = [0, 0, 0, 1]
        sample.response = GOOD.replace("<|im_end|>", "<｜end▁of▁sentence｜>")
        sample.response_length = 3
        sample.status = Sample.Status.COMPLETED
        return sample

    sr.generate = fake_generate
    a = SimpleNamespace(
        custom_rm_path="reward.slime_rm.longtrace_group_rm", group_rm=True, reward_key=None, eval_reward_key=None,
        rm_type=None, hf_checkpoint=tmp, rollout_stop=None, rollout_stop_token_ids=None, rollout_global_dataset=True,
        rollout_function_path="slime.rollout.sglang_rollout.generate_rollout",
        eval_function_path="reward.slime_rm.longtrace_eval_rollout", sglang_server_concurrency=4, rollout_num_gpus=1,
        rollout_num_gpus_per_engine=1, rollout_temperature=1.0, rollout_top_p=1.0, rollout_top_k=-1,
        rollout_max_response_len=16, rollout_skip_special_tokens=False, sglang_dp_size=None, n_samples_per_prompt=2,
        partial_rollout=False, custom_generate_function_path=None, multimodal_keys=None, apply_chat_template=False,
        apply_chat_template_kwargs=None, eval_max_prompt_len=None, input_key="text", label_key="label",
        metadata_key="metadata", tool_key=None, n_samples_per_eval_prompt=2, eval_temperature=None, eval_top_p=None,
        eval_top_k=None, eval_max_response_len=None, eval_min_new_tokens=None, sglang_enable_deterministic_inference=False,
        ci_test=False, use_rollout_routing_replay=False,
    )
    a.eval_datasets = build_eval_dataset_configs(a, [{"name": "d", "path": data}], {})
    try:
        sr.generate_rollout(a, 0, None, evaluation=True)
        raise SystemExit("expected slime's assert")
    except AssertionError as e:
        print("slime's own eval with --group-rm:", e)
    from slime.rollout.base_types import call_rollout_fn
    from slime.utils.misc import load_function

    out = call_rollout_fn(load_function(a.eval_function_path), a, 0, None, evaluation=True)
    rewards = out.data["d"]["rewards"]
    assert rewards == [1.0, 1.0] and a.group_rm, (rewards, a.group_rm)
    print("real slime eval through longtrace_eval_rollout, DeepSeek EOS:", rewards)


real_eval_rollout()


# ---- slime's real remote_rm against `longtrace reward serve` (--rm-type remote_rm --rm-url http://HOST:PORT/slime)
def real_remote_rm():
    import socket
    import subprocess
    import time

    import httpx
    from slime.rollout.rm_hub import remote_rm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "slime_ext.cli", "reward", "serve", "--port", str(port),
                             "--log-level", "warning"], cwd="/work/main")
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        a = args(rm_type="remote_rm", custom_rm_path=None, rm_url=f"http://127.0.0.1:{port}/slime", reward_key="reward")
        async def go():  # one event loop: slime's remote_rm keeps a shared aiohttp session
            s = sample()
            s.reward = await async_rm(a, s)
            assert s.get_reward_value(a) == 1.0, s.reward
            s.label = {"label": "Moroccan-Swedish", "extra_reward_info": {"question": "q", "rubrics": RUBRICS}}
            s.reward = await remote_rm(a, s)
            assert abs(s.get_reward_value(a) - 0.94) < 1e-9, s.reward
            print("real slime remote_rm against /slime:", s.get_reward_value(a))

        asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)


real_remote_rm()
