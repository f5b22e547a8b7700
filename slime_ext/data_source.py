"""Training prompts: a dataset read lazily through HF ``datasets`` (memory-mapped Arrow), served in epochs.

``--prompt-data`` may be a ``.jsonl`` / ``.parquet`` file or a ``longtrace data export`` folder (its train split).
Fields are renamed from ``--input-key`` / ``--label-key`` / ``--metadata-key`` to the project's record layout.
``EpochSource`` is the rollout's ``PromptSource`` over the dataset: a fresh seeded permutation each epoch when
``--rollout-shuffle`` is on, and a cursor (epoch, position) that checkpoints save and restore.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Sequence

from .rollout import PromptSource


def resolve_data_path(path: str | Path, split: str = "train") -> Path:
    p = Path(path)
    if p.is_dir():
        for ext in ("parquet", "jsonl"):
            candidate = p / "data" / f"{split}.{ext}"
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{p}: no data/{split}.parquet or data/{split}.jsonl (a `longtrace data export` folder?)")
    if not p.exists():
        raise FileNotFoundError(f"prompt data not found: {p}")
    return p


class PromptRecords(Sequence):
    """Lazy, renamed view of a dataset file: ``records[i]`` -> {"input_messages"|"prompt", "label", "metadata", "id"}."""

    def __init__(self, path: str | Path, input_key: str = "input_messages", label_key: str = "label",
                 metadata_key: str = "metadata", split: str = "train"):
        import datasets

        self.path = resolve_data_path(path, split)
        kind = "parquet" if self.path.suffix == ".parquet" else "json"
        self.ds = datasets.load_dataset(kind, data_files=str(self.path), split="train")
        missing = [k for k in (input_key, label_key) if k not in self.ds.column_names]
        if missing:
            raise ValueError(f"{self.path}: no column(s) {', '.join(missing)} (columns: {', '.join(self.ds.column_names)}); "
                             "see --input-key / --label-key")
        self.input_key, self.label_key, self.metadata_key = input_key, label_key, metadata_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        row = self.ds[int(i)]
        value = row[self.input_key]
        record: dict[str, Any] = {"input_messages": value} if isinstance(value, list) else {"prompt": value}
        record["label"] = "" if row[self.label_key] is None else str(row[self.label_key])
        meta = row.get(self.metadata_key)
        record["metadata"] = meta if isinstance(meta, dict) else {}
        record["id"] = row.get("id", record["metadata"].get("question_id", i))
        return record


class _Permuted(Sequence):
    def __init__(self, base: Sequence, order: list[int]):
        self.base, self.order = base, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict:
        return self.base[self.order[i]]


class EpochSource(PromptSource):
    """PromptSource over a dataset, epoch after epoch (see the module docstring)."""

    def __init__(self, records: Sequence[dict], tokenizer: Any, n_samples_per_prompt: int, shuffle: bool = False,
                 seed: int = 42, apply_chat_template: bool = True, chat_template_kwargs: dict | None = None):
        if len(records) == 0:
            raise ValueError("the prompt dataset is empty")
        self.base, self.shuffle, self.seed, self.epoch = records, shuffle, seed, 0
        super().__init__(self._epoch_view(0), tokenizer, n_samples_per_prompt, apply_chat_template, chat_template_kwargs)

    def _epoch_view(self, epoch: int) -> Sequence[dict]:
        order = list(range(len(self.base)))
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(order)
        return _Permuted(self.base, order)

    def __len__(self) -> int:  # never runs dry: the next epoch follows
        return len(self.base)

    def get_groups(self, n: int) -> list:
        out = super().get_groups(n)
        while len(out) < n:
            self.epoch += 1
            self.records, self.cursor = self._epoch_view(self.epoch), 0
            more = super().get_groups(n - len(out))
            if not more:  # every record of a whole epoch was rejected
                break
            out += more
        return out

    def state_dict(self) -> dict:
        """Where the next prompt comes from. (Partial-rollout buffers are not saved: they are regenerated.)"""
        return {"epoch": self.epoch, "cursor": self.cursor, "next_group": self._next_group}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self._next_group = int(state["epoch"]), int(state["next_group"])
        self.records, self.cursor = self._epoch_view(self.epoch), int(state["cursor"])


def rollouts_for_epochs(num_records: int, num_epoch: int, rollout_batch_size: int) -> int:
    return math.ceil(num_records * num_epoch / rollout_batch_size)
