"""Entity-level rubric reward: the share of gold chain entities that a response mentions.

r_rubric = |{e in E : e found in text}| / |E|, and 0 for an empty rubric.

An entity is a name plus optional aliases (it counts as found when any of them is). In the data a rubric
item is a string, a list of strings (first = name, rest = aliases) or {"name": ..., "aliases": [...]}.

Matching is one pass over the normalised text whatever the number of entities: every normalised name and
alias goes into one Aho-Corasick automaton (Rust, ``ahocorasick_rs``) that is built once per rubric and
cached, since the 8 responses of a GRPO group share it. The search is leftmost-longest (SIMD-prefiltered, ~4x
faster than an overlapping search); the forms it steps over are recovered exactly (``EntityMatcher._scan``).
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


# _substring_hits: a first chunk of this size with this many matches means the entities are frequent
_HEAD_BYTES = 16384
_DENSE_MATCHES = 32


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
        self._automaton = None
        if self._forms and whole_word:
            # every occurrence is checked for word boundaries: standard semantics, overlapping matches
            self._automaton = ahocorasick_rs.BytesAhoCorasick(self._forms)
        elif self._forms:
            # leftmost-longest lets the automaton use its SIMD prefilter (~4x faster than overlapping search);
            # _substring_hits recovers the forms it steps over
            self._automaton = self._leftmost_automaton(range(len(self._forms)))
        self._longest = max(map(len, self._forms), default=0)
        self._missing_automata: dict[tuple[int, ...], Any] = {}
        self._prefixes: dict[bytes, list[int]] | None = None  # proper prefix -> forms that start with it (lazy)
        self._contained_cache: dict[int, tuple[int, ...]] = {}
        self._overlap_cache: dict[int, tuple[tuple[int, int], ...]] = {}

    def _contained(self, f: int) -> tuple[int, ...]:
        """The other forms that are substrings of form ``f`` (they occur wherever it does)."""
        if f not in self._contained_cache:
            form = self._forms[f]
            self._contained_cache[f] = tuple(
                g for g, other in enumerate(self._forms) if g != f and len(other) <= len(form) and other in form
            )
        return self._contained_cache[f]

    def _overlapping(self, f: int) -> tuple[tuple[int, int], ...]:
        """(g, k) for every other form g whose first k bytes are the last k bytes of form ``f``, k shorter than both:
        an occurrence of g that starts inside an occurrence of f and runs past its end."""
        if f not in self._overlap_cache:
            prefixes = self._prefixes
            if prefixes is None:  # built whole before it is shared (a matcher may serve several threads)
                prefixes = {}
                for g, other in enumerate(self._forms):
                    for k in range(1, len(other)):
                        prefixes.setdefault(other[:k], []).append(g)
                self._prefixes = prefixes
            form = self._forms[f]
            self._overlap_cache[f] = tuple(
                (g, k) for k in range(1, len(form)) for g in prefixes.get(form[-k:], ()) if g != f
            )
        return self._overlap_cache[f]

    def _leftmost_automaton(self, forms: Sequence[int]):
        return ahocorasick_rs.BytesAhoCorasick(
            [self._forms[f] for f in forms], matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
            implementation=ahocorasick_rs.Implementation.ContiguousNFA,
        )

    def _scan(self, automaton, ids: tuple[int, ...] | None, text: bytes, start: int, stop: int, hit: set[int]) -> int:
        """Add to ``hit`` the forms that occur in text[start:stop], exactly the forms an overlapping search finds
        (``ids`` maps the automaton's patterns to form indices; None: all forms). Returns the number of matches.

        A leftmost-longest search reports non-overlapping matches. An occurrence [a, b) of a form it does not
        report lies in a reported match [s, e) with s <= a < e (the search resumed before a and took the leftmost,
        longest match). If b <= e the form is a substring of the reported form: ``_contained``. Otherwise it
        starts e - a = k bytes before the reported match ends, and its first k bytes are that form's last k:
        ``_overlapping`` lists those (form, k) pairs, and each is checked at the end of each reported match.
        """
        view = text if start == 0 and stop == len(text) else memoryview(text)[start:stop]
        matches = automaton.find_matches_as_indexes(view)
        if not matches:
            return 0
        reported = {m[0] for m in matches}
        for p in reported:
            f = p if ids is None else ids[p]
            hit.add(f)
            hit.update(self._contained(f))
        pending = {}
        if len(hit) < len(self._forms):
            for p in reported:
                pairs = [(g, k) for g, k in self._overlapping(p if ids is None else ids[p]) if g not in hit]
                if pairs:
                    pending[p] = pairs
        if pending:
            forms = self._forms
            for p, _, end in matches:
                pairs = pending.get(p)
                if pairs:
                    for g, k in pairs:
                        if g not in hit and text.startswith(forms[g], start + end - k):
                            hit.add(g)
        return len(matches)

    def _substring_hits(self, text: bytes) -> set[int]:
        """Indices of the forms that occur in ``text``.

        Where entities are frequent, the cost is the matches (~1,000 in 130 KB): the first _HEAD_BYTES are scanned
        with every form, and if they hold many matches the rest is scanned only for the forms still missing
        (an automaton per set of missing forms, cached). Occurrences across the cut lie in the second part,
        which starts a form's length early. Where they are rare, one scan of the whole text.
        """
        hit: set[int] = set()
        n = len(text)
        if n <= 2 * _HEAD_BYTES:
            self._scan(self._automaton, None, text, 0, n, hit)
            return hit
        dense = self._scan(self._automaton, None, text, 0, _HEAD_BYTES, hit) >= _DENSE_MATCHES
        missing = tuple(g for g in range(len(self._forms)) if g not in hit)
        if not missing:
            return hit
        automaton, ids = self._automaton, None
        if dense and hit:
            ids = missing
            automaton = self._missing_automata.get(missing)
            if automaton is None:
                automaton = self._leftmost_automaton(missing)
                if len(self._missing_automata) >= 256:
                    self._missing_automata.clear()
                self._missing_automata[missing] = automaton
        self._scan(automaton, ids, text, _HEAD_BYTES - self._longest + 1, n, hit)
        return hit

    def _whole_word_hits(self, text: bytes) -> set[int]:
        hit: set[int] = set()
        n = len(text)
        for g, start, end in self._automaton.find_matches_as_indexes(text, overlapping=True):
            if g not in hit and (start == 0 or text[start - 1] == 32) and (end == n or text[end] == 32):
                hit.add(g)
                if len(hit) == len(self._forms):
                    break
        return hit

    def found(self, normalised: bytes) -> set[int]:
        """Indices of entities occurring in an already-normalised text."""
        found = set(self._always_found)
        if self._automaton is None or len(found) == len(self.entities):
            return found
        hits = self._whole_word_hits(normalised) if self.whole_word else self._substring_hits(normalised)
        for g in hits:
            found.update(self._owners[g])
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


def rubric_parts(
    reasoning: str, content: str, source: str, turns: Sequence[tuple[str | None, str | None]] | None = None
) -> tuple[str, ...]:
    """The texts the rubric reads, in order (the reference joins them with a blank line); blank ones are left out.

    ``turns`` (one (reasoning, content) pair per assistant turn, None for an absent side) are read in conversation
    order, R1 C1 R2 C2, as the reference server does; without them, ``reasoning`` and ``content``. Source
    ``none`` reads nothing (the reference server when a request turns both sides off).
    """
    if source not in (*TEXT_SOURCES, "none"):
        raise ValueError(f"unknown rubric text source {source!r}; choose one of {', '.join(TEXT_SOURCES)}")
    use_reasoning, use_content = source in ("reasoning", "both"), source in ("content", "both")
    pairs = ((reasoning, content),) if turns is None else turns
    return tuple(
        text
        for r, c in pairs
        for text, used in ((r, use_reasoning), (c, use_content))
        if used and text and not text.isspace()
    )


def normalized_rubric_text(
    reasoning: str, content: str, source: str, mode: str, turns: Sequence[tuple[str | None, str | None]] | None = None
) -> bytes:
    """Normalised rubric text. The blank line between parts normalises to one space, so the parts are
    normalised apart and joined: the same bytes without copying a 130 KB string first."""
    parts = rubric_parts(reasoning, content, source, turns)
    return b" ".join(n for n in (normalize_bytes(t, mode) for t in parts) if n)


def rubric_reward(
    text: str, rubrics: Sequence[Any], mode: str = "reference", whole_word: bool = False
) -> RubricResult:
    """Convenience entry point: score one text against raw rubric items."""
    return matcher_for(parse_entities(rubrics), mode, whole_word).score_text(text)

