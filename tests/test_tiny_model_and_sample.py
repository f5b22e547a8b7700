import pytest

from slime_ext.sample import Sample, status_from_finish_reason
from slime_ext.tiny_model import make_tiny_qwen3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny"), vocab_size=1024)


def test_tiny_checkpoint_loads_with_transformers_and_runs(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert model.config.model_type == "qwen3" and model.config.num_key_value_heads == 2
    enc = tok.apply_chat_template([{"role": "user", "content": "Where is Cheiron Studios?"}], add_generation_prompt=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n<think>\n")
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 1024)


def test_chat_tokens_are_single_tokens_and_think_survives_decoding(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    ids = tok.encode("a</think>b<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "a</think>b"  # </think> is not "special", like Qwen's
    assert tok.eos_token == "<|im_end|>"


def test_tokenizer_training_is_deterministic(tmp_path):
    from slime_ext.tiny_model import train_tokenizer

    a, b = train_tokenizer(512), train_tokenizer(512)
    text = "The album was released in 1973 by the studio."
    assert a.encode(text) == b.encode(text)


def test_status_from_finish_reason():
    assert status_from_finish_reason({"type": "stop", "matched": 7}) == "completed"
    assert status_from_finish_reason({"type": "length", "length": 32}) == "truncated"
    assert status_from_finish_reason({"type": "abort"}) == "aborted"
    assert status_from_finish_reason(None) == "failed"


def test_sample_bookkeeping_is_checked():
    s = Sample(prompt_tokens=[1, 2], response_tokens=[3, 4, 5], loss_mask=[1, 1, 1], rollout_logprobs=[-0.1] * 3)
    s.check()
    assert (s.response_length, s.total_length) == (3, 5)
    assert Sample.from_dict(s.to_dict()) == s
    s.loss_mask = [1, 1]
    with pytest.raises(ValueError, match="loss_mask has 2 entries for 3 response tokens"):
        s.check()
