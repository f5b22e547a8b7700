"""Tiny random-initialised Qwen3 checkpoints (Hugging Face format) for tests, the quickstart and CPU benchmarks.

    longtrace tiny-model --out models/tiny-qwen3 [--layers 2 --hidden 64 --heads 4 --kv-heads 2 --vocab 2048]
                         [--tokenizer DIR]   # reuse a tokenizer (e.g. the data build's local BPE) instead

The checkpoint has the real Qwen3 architecture (GQA, q/k RMSNorm, RoPE, SwiGLU) at toy size, and a byte-level
BPE tokenizer trained here (deterministically) with Qwen's chat special tokens (``<|im_start|>``,
``<|im_end|>``, ``<|endoftext|>``, ``<think>`` ...) and a Qwen3-thinking style chat template whose generation
prompt opens ``<think>``. Nothing is downloaded. ``--tokenizer DIR`` reuses an existing tokenizer instead (the
quickstart passes the byte-level BPE its data build trained on the synthetic world, so the prompts the policy
sees are the token counts the build assembled); the vocabulary then grows to fit it (padded to a multiple of 64).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added like Qwen's: whole tokens, but not "special" (they survive skip_special_tokens decoding).
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)

_WORDS = (
    "the of and to in a is was for on as by with that from at it an were which are this be had first album "
    "single song studio producer record released label city river county school university band film series "
    "born died married award number year during after before between known called later question answer "
    "document section title context reasoning think step evidence therefore because however city country "
    "village mountain lake island company founded president author novel published station railway team "
    "season player league football church castle painter museum battle war king queen empire language"
).split()


def default_corpus(n_lines: int = 4000, seed: int = 0) -> list[str]:
    """A deterministic English-like corpus (words, numbers, punctuation, tags) to train the tiny BPE on."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 20))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 3000)))
        words[0] = words[0].capitalize()
        line = " ".join(words) + rng.choice([".", ",", "?", "!", ":"])
        if rng.random() < 0.1:
            line = f'<section id="{rng.randint(0, 99)}" title="{words[-1]}">{line}</section>'
        lines.append(line)
    return lines


def train_tokenizer(vocab_size: int = 2048, corpus: Iterable[str] | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen's special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(ADDED_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus if corpus is not None else default_corpus()), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_qwen3(
    out_dir: str | Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    ffn_hidden_size: int = 128,
    vocab_size: int = 2048,
    tie_word_embeddings: bool = False,
    max_position_embeddings: int = 32768,
    rope_theta: float = 1_000_000.0,
    seed: int = 0,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write a random-initialised Qwen3ForCausalLM and its tokenizer to ``out_dir``; returns the path."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        for t in ("<|im_end|>", "<|endoftext|>"):
            if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id):
                raise ValueError(f"tokenizer {tokenizer_dir}: no {t} token (a Qwen-style chat tokenizer is needed)")
        vocab_size = max(vocab_size, -(-len(tokenizer) // 64) * 64)
    else:
        tokenizer = train_tokenizer(vocab_size)
    if len(tokenizer) > vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size={vocab_size}")
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=ffn_hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rope_theta=rope_theta,
        tie_word_embeddings=tie_word_embeddings,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="longtrace tiny-model", description="Write a tiny random Qwen3 checkpoint + tokenizer.")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--tie-embeddings", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="reuse this tokenizer directory (vocab grows to fit it) instead of training the tiny BPE")
    a = p.parse_args(argv)
    path = make_tiny_qwen3(
        a.out, num_layers=a.layers, hidden_size=a.hidden, num_heads=a.heads, num_kv_heads=a.kv_heads,
        head_dim=a.head_dim, ffn_hidden_size=a.ffn, vocab_size=a.vocab, tie_word_embeddings=a.tie_embeddings, seed=a.seed,
        tokenizer_dir=a.tokenizer,
    )
    print(f"tiny Qwen3 checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
