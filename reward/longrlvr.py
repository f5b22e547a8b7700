"""The LongRLVR baseline reward (chunk-selection F-beta), kept so that baseline can be reproduced.

For samples whose ``dataset_name`` is ``longrlvr`` the rubric items are gold chunk ids and the response lists
the chunks it used in ``<useful_chunks>`` blocks (``<CHUNK_3><CHUNK_7>``); only the last block counts.
The context reward is F_beta (beta = 2) between predicted and gold chunk sets, and the group combination
uses r = r_ans + eta * F + (1 - eta) * r_ans * F (see ``combine.py``).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

DATASET_NAME = "longrlvr"
BETA = 2.0

_BLOCK = re.compile(r"<useful_chunks>(.*?)</useful_chunks>", re.DOTALL | re.IGNORECASE)
_CHUNK = re.compile(r"<CHUNK[_\s]?(\d+)>", re.IGNORECASE)
_ID = re.compile(r"(\d+)\s*$")


def predicted_chunks(text: str) -> set[int]:
    blocks = _BLOCK.findall(text)
    return {int(x) for x in _CHUNK.findall(blocks[-1])} if blocks else set()


def gold_chunks(rubrics: Iterable[Any]) -> set[int]:
    """Gold ids may be ints, digit strings or chunk names ("CHUNK_3")."""
    gold = set()
    for i, item in enumerate(rubrics):
        if isinstance(item, bool):
            raise ValueError(f"rubrics[{i}]: expected a chunk id, got {item!r}")
        if isinstance(item, int):
            gold.add(item)
            continue
        m = _ID.search(item) if isinstance(item, str) else None
        if m is None:
            raise ValueError(f"rubrics[{i}]: expected a chunk id (int, '3' or 'CHUNK_3'), got {item!r}")
        gold.add(int(m.group(1)))
    return gold


def f_beta(predicted: set[int], gold: set[int], beta: float = BETA) -> float:
    hits = len(predicted & gold)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(gold) if gold else 0.0
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def chunk_reward(text: str, rubrics: Iterable[Any]) -> float:
    return f_beta(predicted_chunks(text), gold_chunks(rubrics))
