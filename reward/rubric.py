"""Entity-level rubric reward: the share of gold chain entities that a response mentions.

r_rubric = |{e in E : e found in text}| / |E|, and 0 for an empty rubric.

An entity is a name plus optional aliases (it counts as found when any of them is). In the data a rubric
item is a string, a list of strings (first = name, rest = aliases) or {"name": ..., "aliases": [...]}.

Matching is one pass over the normalised text whatever the number of entities: every normalised name and
alias goes into one Aho-Corasick automaton (Rust, ``ahocorasick_rs``) that is built once per rubric and
cached, since the 8 responses of a GRPO group share it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

import ahocorasick_rs

from .normalize import check_mode, normalize_bytes

TEXT_SOURCES = ("content", "reasoning", "both")


@dataclass(frozen=True)
class Entity:
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def surface_forms(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def parse_entity(item: Any, where: str = "rubrics") -> Entity:
    """One rubric item -> Entity. Raises ValueError naming the offending field."""
    if isinstance(item, str):
        return Entity(item)
    if isinstance(item, (list, tuple)) and item and all(isinstance(x, str) for x in item):
        return Entity(item[0], tuple(item[1:]))
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        aliases = item.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"{where}.aliases must be a list of strings, got {aliases!r}")
        return Entity(item["name"], tuple(aliases))
    raise ValueError(
        f"{where} must be a string, a non-empty list of strings or an object with 'name' (and 'aliases'), got {item!r}"
    )


def parse_entities(items: Iterable[Any]) -> tuple[Entity, ...]:
    return tuple(parse_entity(item, f"rubrics[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True)
class RubricResult:
    score: float
    matched: tuple[str, ...]
    missing: tuple[str, ...]


class EntityMatcher:
    """Finds which of a fixed set of entities occur in normalised texts, in one pass per text."""

    def __init__(self, entities: Sequence[Entity], mode: str = "reference", whole_word: bool = False):
        self.entities = tuple(entities)
        self.mode = check_mode(mode)
        self.whole_word = whole_word
        # normalised surface form -> indices of the entities that have it
        by_form: dict[bytes, list[int]] = {}
        self._always_found: set[int] = set()
        for idx, entity in enumerate(self.entities):
            for form in entity.surface_forms:
                key = normalize_bytes(form, mode)
                if not key:
                    # Reference behaviour: `"" in text` is True, so an entity that normalises to nothing (e.g.
                    # "—" or "É") always counts as found. Unicode mode treats it as unmatchable instead.
                    if mode == "reference":
                        self._always_found.add(idx)
                    continue
                by_form.setdefault(key, []).append(idx)
        self._forms = list(by_form)
        self._owners = [by_form[f] for f in self._forms]
        self._automaton = ahocorasick_rs.BytesAhoCorasick(self._forms) if self._forms else None

    def found(self, normalised: bytes) -> set[int]:
        """Indices of entities occurring in an already-normalised text."""
        found = set(self._always_found)
        if self._automaton is None or len(found) == len(self.entities):
            return found
        n = len(normalised)
        for form_idx, start, end in self._automaton.find_matches_as_indexes(normalised, overlapping=True):
            if self.whole_word and not (
                (start == 0 or normalised[start - 1] == 32) and (end == n or normalised[end] == 32)
            ):
                continue
            found.update(self._owners[form_idx])
            if len(found) == len(self.entities):
                break
        return found

    def score_text(self, text: str) -> RubricResult:
        return self.score_normalized(normalize_bytes(text, self.mode))

    def score_normalized(self, normalised: bytes) -> RubricResult:
        if not self.entities:
            return RubricResult(0.0, (), ())
        hit = self.found(normalised)
        names = [e.name for e in self.entities]
        return RubricResult(
            score=len(hit) / len(self.entities),
            matched=tuple(names[i] for i in sorted(hit)),
            missing=tuple(names[i] for i in range(len(names)) if i not in hit),
        )


@lru_cache(maxsize=4096)
def matcher_for(entities: tuple[Entity, ...], mode: str, whole_word: bool) -> EntityMatcher:
    """Cached matcher: the samples of a group (and repeated evaluations) share one automaton."""
    return EntityMatcher(entities, mode, whole_word)


def rubric_parts(reasoning: str, content: str, source: str) -> tuple[str, ...]:
    """The texts the rubric reads, in order (the reference joins them with a blank line)."""
    if source == "content":
        return (content,)
    if source == "reasoning":
        return (reasoning,)
    if source == "both":
        return (reasoning, content)
    raise ValueError(f"unknown rubric text source {source!r}; choose one of {', '.join(TEXT_SOURCES)}")


def normalized_rubric_text(reasoning: str, content: str, source: str, mode: str) -> bytes:
    """Normalised rubric text. The blank line between parts normalises to one space, so the parts are
    normalised apart and joined: the same bytes without copying a 130 KB string first."""
    return b" ".join(n for n in (normalize_bytes(t, mode) for t in rubric_parts(reasoning, content, source)) if n)


def rubric_reward(
    text: str, rubrics: Sequence[Any], mode: str = "reference", whole_word: bool = False
) -> RubricResult:
    """Convenience entry point: score one text against raw rubric items."""
    return matcher_for(parse_entities(rubrics), mode, whole_word).score_text(text)

