"""The training loop's pieces without Ray workers: samples -> trainer items, reward metrics, the prompt source and
its checkpointed cursor, tracking outputs, and `longtrace train`'s derived defaults and validation."""
from __future__ import annotations

import io
import json
import math

import pytest

from slime_ext.sample import Sample


def _sample(group, index, reward, *, response=(5, 6), dropped=False, parts=None):
    parts = dict(parts or {})
    if dropped:
        parts["group_dropped"] = "judge_error"
    return Sample(prompt_tokens=[1, 2, 3], group_id=group, index=index, response_tokens=list(response),
                  loss_mask=[1] * len(response), rollout_logprobs=[-1.0] * len(response), reward=reward, reward_parts=parts)


# ------------------------------------------------------------------------------------------ train_items
def test_train_items_group_advantages_and_exclusions():
    from slime_ext.train import train_items

    samples = [
        _sample("a", 0, 1.0), _sample("a", 1, 0.0), _sample("a", 2, 0.0),
        _sample("b", 0, 0.5, dropped=True), _sample("b", 1, 0.0, dropped=True),  # judge error: whole group out
        _sample("c", 0, None), _sample("c", 1, 1.0, response=()),  # no reward / no response: out
        _sample("d", 0, 0.7), _sample("d", 1, 0.7),  # equal rewards: advantage 0, still trained (slime)
    ]
    items = train_items(samples)
    assert len(items) == 5
    adv = [it.advantage for it in items]
    # group a: mean 1/3, unbiased std sqrt(1/3); the correct sample is pushed up, the others down
    assert adv[0] == pytest.approx((1 - 1 / 3) / math.sqrt(1 / 3), rel=1e-5)
    assert adv[1] == adv[2] == pytest.approx((0 - 1 / 3) / math.sqrt(1 / 3), rel=1e-5)
    assert adv[3] == adv[4] == 0.0
    assert items[0].prompt_tokens == [1, 2, 3] and items[0].response_tokens == [5, 6]
    assert items[0].rollout_logprobs == [-1.0, -1.0]
    unnormalised = train_items(samples[:3], std_normalize=False)
    assert [it.advantage for it in unnormalised] == pytest.approx([2 / 3, -1 / 3, -1 / 3])


# ------------------------------------------------------------------------------------------ reward_metrics
def test_reward_metrics_counts_parts_and_reasons():
    from slime_ext.rollout_manager import reward_metrics

    ok = {"outcome_reward": 1.0, "rubric_reward": 0.5, "correct": True, "valid": True}
    wrong = {"outcome_reward": 0.0, "rubric_reward": 0.25, "correct": False, "valid": True}
    bad = {"outcome_reward": 0.0, "rubric_reward": 0.0, "correct": False, "valid": False, "invalid_reason": "truncated"}
    err = {"outcome_reward": 0.0, "rubric_reward": 0.0, "correct": False, "valid": True, "judge_error": "timeout"}
    g1 = [_sample(1, 0, 1.0, parts=ok), _sample(1, 1, 0.0, parts=wrong, response=(5, 6, 7, 8))]
    g2 = [_sample(2, 0, 0.0, parts=bad), _sample(2, 1, 0.0, parts=bad)]
    g3 = [_sample(3, 0, 0.0, parts=err, dropped=True)]
    g2[0].status = g2[1].status = "truncated"
    m = reward_metrics([g1, g2, g3])
    assert m["rollout/reward_mean"] == pytest.approx(1 / 5)
    assert m["rollout/accuracy"] == pytest.approx(1 / 5)
    assert m["rollout/rubric_mean"] == pytest.approx(0.75 / 5)
    assert m["rollout/invalid_ratio"] == pytest.approx(2 / 5)
    assert m["rollout/invalid/truncated"] == 2
    assert m["rollout/judge_errors"] == 1 and m["rollout/groups_dropped"] == 1
    assert m["rollout/zero_std_groups"] == 2  # g2 (all 0) and g3 (one sample)
    assert m["rollout/response_len/max"] == 4 and m["rollout/response_len/mean"] == pytest.approx(12 / 5)
    assert m["rollout/truncated_ratio"] == pytest.approx(2 / 5)
    assert reward_metrics([]) == {}


# ------------------------------------------------------------------------------------------ data
class _Tok:
    """Enough of a tokenizer for PromptSource: one token per character."""

    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 97 for c in text]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": self.encode(text)}


def _records_file(tmp_path, n=5, **extra):
    rows = [{"id": f"r{i}", "question": f"q{i}", "answer": f"a{i}", "meta": {"k": i}, **extra} for i in range(n)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_records_rename_and_errors(tmp_path):
    from slime_ext.data_source import PromptRecords

    path = _records_file(tmp_path)
    rec = PromptRecords(path, input_key="question", label_key="answer", metadata_key="meta")
    assert len(rec) == 5
    assert rec[2] == {"prompt": "q2", "label": "a2", "metadata": {"k": 2}, "id": "r2"}
    with pytest.raises(ValueError, match=r"prompts\.jsonl: no column\(s\) input_messages"):
        PromptRecords(path, label_key="answer")
    with pytest.raises(FileNotFoundError, match="no data/train"):
        PromptRecords(tmp_path)
    export = tmp_path / "export" / "data"
    export.mkdir(parents=True)
    (export / "train.jsonl").write_text(path.read_text())
    assert len(PromptRecords(tmp_path / "export", input_key="question", label_key="answer")) == 5


def _prompts(groups):
    return [g[0].prompt_id for g in groups]


def test_epoch_source_shuffles_per_epoch_and_resumes_exactly(tmp_path):
    from slime_ext.data_source import EpochSource, PromptRecords, rollouts_for_epochs

    rec = PromptRecords(_records_file(tmp_path, n=5), input_key="question", label_key="answer")
    make = lambda: EpochSource(rec, _Tok(), n_samples_per_prompt=2, shuffle=True, seed=7, apply_chat_template=False)  # noqa: E731
    src = make()
    first = [_prompts(src.get_groups(2)) for _ in range(5)]  # 10 prompts: two epochs
    flat = sum(first, [])
    assert sorted(flat[:5]) == sorted(flat[5:]) == [f"r{i}" for i in range(5)]  # every record once per epoch
    assert flat[:5] != flat[5:]  # a fresh permutation per epoch
    assert src.epoch == 1

    again = make()
    assert [_prompts(again.get_groups(2)) for _ in range(5)] == first  # seeded: reproducible

    resumed = make()
    resumed.get_groups(2), resumed.get_groups(2), resumed.get_groups(2)
    state = json.loads(json.dumps(resumed.state_dict()))  # it travels inside a checkpoint
    fresh = make()
    fresh.load_state_dict(state)
    assert [_prompts(fresh.get_groups(2)) for _ in range(2)] == first[3:]
    assert rollouts_for_epochs(5, 2, 2) == 5


# ------------------------------------------------------------------------------------------ tracking
def test_tracker_writes_metrics_tensorboard_and_table(tmp_path):
    from rich.console import Console

    from slime_ext.tracking import Tracker

    t = Tracker(str(tmp_path / "run"), {"lr": 1e-3}, use_tensorboard=True)
    buf = io.StringIO()
    t.console = Console(file=buf, width=200)
    t.total_steps = 2
    t.log({"rollout/step": 0, "rollout/reward_mean": 0.25, "train/loss": float("nan"), "note": "text"}, 0)
    t.log({"eval/step": 1, "eval/heldout/accuracy": 0.5, "eval/heldout/reward_mean": 0.4}, 1)
    t.finish()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 0, "rollout/step": 0, "rollout/reward_mean": 0.25, "train/loss": None}  # NaN kept as null
    assert rows[1]["eval/heldout/accuracy"] == 0.5
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"lr": 1e-3}
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    out = buf.getvalue()
    assert "1/2" in out and "0.250" in out and "nan" in out
    assert "eval heldout @ step 1" in out and "accuracy=0.500" in out



def test_tracker_rewind_moves_rows_of_rerun_steps(tmp_path):
    """A resume at rollout 2 re-runs steps 2..: their old rows leave metrics.jsonl (kept aside, not lost)."""
    from slime_ext.tracking import Tracker

    run = tmp_path / "run"
    t = Tracker(str(run), {}, console_table=False)
    for step in range(4):
        t.log({"rollout/step": step, "rollout/reward_mean": 0.1 * step}, step)
        if step % 2 == 1:
            t.log({"eval/step": step + 1, "eval/heldout/accuracy": 0.5}, step + 1)
    t.finish()
    (run / "metrics.jsonl").open("a").write('{"step": 4, "rollout/st')  # a row cut by the crash
    t = Tracker(str(run), {}, console_table=False)
    assert t.rewind(2) == 4  # rollout steps 2, 3, the eval at step 4 and the cut line
    t.log({"rollout/step": 2, "rollout/reward_mean": 0.9}, 2)
    t.finish()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval/step" in r) for r in rows] == [(0, False), (1, False), (2, True), (2, False)]
    assert rows[-1]["rollout/reward_mean"] == 0.9
    moved = (run / "metrics.superseded.jsonl").read_text().splitlines()
    assert len(moved) == 4 and moved[-1] == '{"step": 4, "rollout/st'
    assert json.loads(moved[0])["rollout/step"] == 2

# ------------------------------------------------------------------------------------------ arguments
def test_parse_args_derives_defaults(tmp_path):
    from slime_ext.arguments import parse_args, resolved_config
    from slime_ext.tiny_model import make_tiny_qwen3

    model = make_tiny_qwen3(tmp_path / "m", num_layers=2, hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                            ffn_hidden_size=64)
    a = parse_args(["--cpu", "--hf-checkpoint", str(model), "--prompt-data", "x.jsonl", "--num-rollout", "3",
                    "--rollout-batch-size", "4", "--n-samples-per-prompt", "4", "--num-steps-per-rollout", "2",
                    "--run-dir", str(tmp_path / "run"), "--eval-prompt-data", "a", "a.jsonl", "b", "b.jsonl"])
    assert a.global_batch_size == 8 and a.dtype == "fp32"
    from slime_ext.sglang_env import sglang_unavailable

    assert a.rollout_backend == ("torch" if sglang_unavailable("cpu") else "sglang")  # auto
    assert a.update_weight_transport == "disk" and a.update_weight_disk_dir == str(tmp_path / "run" / "weights")
    assert a.eval_sets == [("a", "a.jsonl"), ("b", "b.jsonl")]
    assert a.eval_max_response_len == a.rollout_max_response_len
    cfg = resolved_config(a)
    assert cfg["reward_config"]["combine"]["eta"] == pytest.approx(0.3)
    json.dumps(cfg)


@pytest.mark.parametrize("flags, message", [
    (["--tensor-model-parallel-size", "2"], "not divisible by TP x PP x CP"),
    (["--save-interval", "5"], "--save-interval needs --save"),
    (["--update-weight-transport", "tensor"], "it needs --colocate"),
    (["--colocate", "--num-engines", "2"], "2 engine(s) x 1 GPU(s) need as many trainer ranks"),
    (["--context-parallel-size", "1", "--eval-only"], "--eval-only needs --eval-prompt-data"),
    (["--eval-prompt-data", "only-a-name"], "takes pairs"),
    (["--tis-clip-low", "3", "--use-tis"], "tis"),
    (["--use-tis", "--custom-tis-function-path", "my.module.tis"], "only slime's built-ins are understood"),
    (["--use-tis", "--tis-mode", "tis", "--custom-tis-function-path", "slime.backends.megatron_utils.loss.icepop_function"],
     "contradicts"),
    (["--rollout-num-gpus-per-engine", "4", "--sglang-ep-size", "3"], "--sglang-ep-size 3 must divide"),
])
def test_parse_args_rejects(tmp_path, flags, message):
    from slime_ext.arguments import parse_args
    from slime_ext.tiny_model import make_tiny_qwen3

    model = make_tiny_qwen3(tmp_path / "m", num_layers=2, hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                            ffn_hidden_size=64)
    with pytest.raises(ValueError, match="invalid `longtrace train` flags") as e:
        parse_args(["--cpu", "--hf-checkpoint", str(model), "--prompt-data", "x.jsonl", "--num-rollout", "1",
                    "--run-dir", str(tmp_path / "run"), *flags])
    assert message in str(e.value)


class _Remote:
    """A Ray actor method stand-in: ``.remote(*args)`` records the call and returns ``fn(*args)`` (``get`` is the
    identity), so the driver's hand-over logic runs without Ray."""

    def __init__(self, log, name, fn=lambda *a: None):
        self.log, self.name, self.fn = log, name, fn

    def remote(self, *args):
        self.log.append((self.name, *args))
        return self.fn(*args)


class _Rollout:
    def __init__(self, log):
        self.sleep, self.wake = _Remote(log, "engines.sleep"), _Remote(log, "engines.wake")
        self.engine_urls = _Remote(log, "engines.urls", lambda: ["http://e0", "http://e1"])


class _Trainer:
    def __init__(self, log, failures=0):
        self.log, self.failures = log, failures

    def call(self, method, *args):
        self.log.append((f"trainer.{method}", *args))
        if method == "sync_weights" and self.failures:
            from slime_ext.weight_sync import WeightSyncError

            self.failures -= 1
            raise WeightSyncError("http://e1/update_weights_from_distributed: Group x not in []")
        return {"version": 1.0, "seconds": 0.0} if method == "sync_weights" else None


def test_colocated_hand_over_order_and_sync_retries():
    from slime_ext.train import Colocation
    from slime_ext.weight_sync import WeightSyncError

    log: list = []
    c = Colocation(True, _Trainer(log, failures=1), _Rollout(log), lambda x: x, sync_retries=1)
    c.release_engines()
    c.onload_trainer()
    assert c.sync_weights() == {"version": 1.0, "seconds": 0.0}
    assert log == [
        ("engines.sleep", ["weights", "kv_cache", "cuda_graph"]), ("trainer.wake",),
        ("engines.wake", ["weights"], False), ("engines.urls",),
        ("trainer.sync_weights", ["http://e0", "http://e1"], True),  # refused once (keep_paused: KV not back yet)
        ("trainer.sync_weights", ["http://e0", "http://e1"], True),  # retried: only the sync, not the resume
        ("trainer.sleep",), ("engines.wake", ["kv_cache", "cuda_graph"], True)]

    log.clear()  # retries exhausted: the engine's error stops the run
    c = Colocation(True, _Trainer(log, failures=2), _Rollout(log), lambda x: x, sync_retries=1)
    with pytest.raises(WeightSyncError, match="Group x not in"):
        c.sync_weights()
    assert [e[0] for e in log].count("trainer.sync_weights") == 2 and ("trainer.sleep",) not in log

    log.clear()  # not colocated: nothing changes hands, generation continues after the sync
    c = Colocation(False, _Trainer(log), _Rollout(log), lambda x: x)
    c.release_engines()
    c.onload_trainer()
    c.sync_weights()
    assert log == [("engines.urls",), ("trainer.sync_weights", ["http://e0", "http://e1"], False)]


@pytest.mark.parametrize("flags, mode", [
    (["--use-tis"], "tis"),  # slime's --use-tis alone: vanilla_tis_function, the clamp
    (["--use-tis", "--custom-tis-function-path", "slime.backends.megatron_utils.loss.icepop_function"], "icepop"),
    (["--use-tis", "--custom-tis-function-path", "slime.backends.megatron_utils.loss.vanilla_tis_function"], "tis"),
    (["--use-tis", "--tis-mode", "icepop"], "icepop"),
    ([], None),
])
def test_tis_correction_follows_slime_names(flags, mode):
    from slime_ext.arguments import build_parser, loss_config

    a = build_parser().parse_args(["--hf-checkpoint", "m", *flags])
    assert loss_config(a).tis == mode


def test_slime_named_aliases():
    from slime_ext.arguments import build_parser, sglang_server_args

    a = build_parser().parse_args(["--hf-checkpoint", "m", "--bf16", "--ref-load", "/ckpt",
                                   "--sglang-router-request-timeout-secs", "60", "--sglang-ep-size", "4",
                                   "--sglang-enable-fp32-lm-head", "--sglang-extra-args=--kv-cache-dtype fp8_e5m2"])
    assert (a.dtype, a.mcore_checkpoint, a.rollout_request_timeout) == ("bf16", "/ckpt", 60.0)
    assert sglang_server_args(a) == ["--ep-size", "4", "--enable-fp32-lm-head", "--kv-cache-dtype", "fp8_e5m2"]


def test_slime_transport_name_nccl_is_the_distributed_broadcast(tmp_path):
    from slime_ext.arguments import parse_args
    from slime_ext.tiny_model import make_tiny_qwen3

    model = make_tiny_qwen3(tmp_path / "m", num_layers=2, hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                            ffn_hidden_size=64)
    a = parse_args(["--cpu", "--hf-checkpoint", str(model), "--prompt-data", "x.jsonl", "--num-rollout", "1",
                    "--run-dir", str(tmp_path / "run"), "--update-weight-transport", "nccl"])
    assert a.update_weight_transport == "distributed"
