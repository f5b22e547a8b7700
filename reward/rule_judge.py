"""Rule-based outcome judges for offline use (and the embedded default).

All of them first look for an explicit final answer in the content (``\\boxed{}``, ``<answer>``, a
"## Exact Answer" section, or a last "Answer:" line) and compare it with the gold answer after SQuAD-style
normalisation (unicode folding, punctuation dropped, articles removed):

  exact     normalised extracted answer == normalised gold
  f1        token F1 between them; correct when F1 >= the threshold (the score is the F1)
  contains  the gold tokens occur as whole words in the extracted answer (or in the whole content when no
            explicit answer is marked)
  numeric   the gold is a number and the answer's number is within a relative tolerance
  rule      the default: numeric when the gold is a number, else exact or contains

Without an explicit answer the numeric comparison reads the last number of the content, unless the content
emphasises a number in markdown (``**1805** (the Battle of Trafalgar, 21 October)``): then the first
emphasised number is the answer. Inputs with lone surrogates are cleaned first (they cannot be encoded).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterator

from .judge import Verdict
from .normalize import normalize_bytes
from .parsing import clean_text

RULE_KINDS = ("rule", "exact", "f1", "contains", "numeric")
_ARTICLES = frozenset((b"a", b"an", b"the"))

_SECTION_HEADING = re.compile(r"#+\s*(?:exact|final)\s+answer\s*:?\s*", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"\W*(?:exact |final )?answer\W*?:\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_MAX_ANSWER_MENTIONS = 64  # occurrences of "answer" examined from the end of a response
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_MAX_EMPHASIS_CHARS = 4096  # emphasised answers are looked for at the start of a response only


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _last_tag(text: str) -> str | None:
    start = text.rfind("<answer>")
    if start < 0:
        return None
    stop = text.find("</answer>", start)
    return text[start + len("<answer>"): stop] if stop >= 0 else None


def _last_marked_line(text: str) -> str | None:
    """The last "## Exact Answer" section or "Answer: ..." line, looking only at lines that mention "answer"
    (found with rfind from the end, so a 30 KB response costs a handful of short regex matches)."""
    pos, seen = len(text), 0
    while seen < _MAX_ANSWER_MENTIONS:
        pos = max(text.rfind("nswer", 0, pos), text.rfind("NSWER", 0, pos))
        if pos < 0:
            return None
        seen += 1
        line_start = text.rfind("\n", 0, pos) + 1
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        line = text[line_start:line_end]
        if _SECTION_HEADING.fullmatch(line.strip()):
            section_end = text.find("\n#", line_end)
            return text[line_end: len(text) if section_end < 0 else section_end]
        m = _ANSWER_LINE.match(line)
        if m:
            return m.group(1)
        pos = line_start
    return None


def extract_answer(content: str) -> str | None:
    """The explicitly marked final answer of a response (a ``\\boxed{}``, an ``<answer>`` tag, an
    "Exact Answer" section or an "Answer:" line; the first kind found wins, the last of its kind), else None."""
    for found in (_last_boxed(content), _last_tag(content), _last_marked_line(content)):
        if found is not None and found.strip():
            return found.strip().strip("*").strip()
    return None


def emphasized_number(content: str) -> str | None:
    """The first markdown-bold span (``**...**`` or ``__...__``) near the start of the content that holds a number."""
    head = content[:_MAX_EMPHASIS_CHARS]
    if "**" not in head and "__" not in head:
        return None
    for m in _EMPHASIS.finditer(head):
        if parse_number(m.group(2)) is not None:
            return m.group(2)
    return None


def answer_tokens(text: str) -> Iterator[bytes]:
    """SQuAD-style answer tokens: unicode-folded (normalize.py), articles dropped; lazily, so comparisons
    against a 30 KB response stop at the first mismatch."""
    data = normalize_bytes(text, "unicode")
    pos, n = 0, len(data)
    while pos < n:
        space = data.find(b" ", pos)
        space = n if space < 0 else space
        token = data[pos:space]
        pos = space + 1
        if token not in _ARTICLES:
            yield token


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = list(answer_tokens(prediction)), list(answer_tokens(gold))
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def parse_number(text: str) -> float | None:
    """The last number in a text ("1,234.5", "-3e5", "42%" -> 42.0)."""
    last_digit = max(text.rfind(d) for d in "0123456789")
    if last_digit < 0:
        return None
    # only the tail that can hold the last number is searched (responses are long, numbers are not)
    found = _NUMBER.findall(text[max(0, last_digit - 80): last_digit + 1])
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def contains_answer(haystack: str, gold: list[bytes]) -> bool:
    """Whether the gold tokens occur consecutively (articles between them skipped) in the haystack."""
    if not gold:
        return False
    data = b" " + normalize_bytes(haystack, "unicode") + b" "
    first = b" " + gold[0] + b" "
    start = data.find(first)
    while start >= 0:
        pos, i = start + len(first), 1
        while i < len(gold):
            space = data.find(b" ", pos)
            if space < 0:
                break
            token, pos = data[pos:space], space + 1
            if token in _ARTICLES:
                continue
            if token != gold[i]:
                break
            i += 1
        if i == len(gold):
            return True
        start = data.find(first, start + 1)
    return False


def exact_answer(prediction: str, gold: list[bytes]) -> bool:
    tokens = answer_tokens(prediction)
    return bool(gold) and all(next(tokens, None) == g for g in gold) and next(tokens, None) is None


def _is_number(answer: str) -> bool:
    """A gold answer that is only a number (with separators, sign, unit-less or '%')."""
    return parse_number(answer) is not None and next(answer_tokens(_NUMBER.sub(" ", answer)), None) is None


class RuleJudge:
    def __init__(self, kind: str = "rule", f1_threshold: float = 0.5, rel_tol: float = 1e-4):
        if kind not in RULE_KINDS:
            raise ValueError(f"unknown rule judge {kind!r}; choose one of {', '.join(RULE_KINDS)}")
        self.name, self.kind = kind, kind
        self.f1_threshold, self.rel_tol = f1_threshold, rel_tol

    def _numeric(self, prediction: str, gold: str) -> bool:
        want, got = parse_number(gold), parse_number(prediction)
        return want is not None and got is not None and math.isclose(got, want, rel_tol=self.rel_tol, abs_tol=1e-9)

    def judge_sync(self, question: str, answer: str, content: str) -> Verdict:
        answer, content = clean_text(answer), clean_text(content)
        extracted = extract_answer(content)
        prediction = extracted if extracted is not None else content
        kind = self.kind
        if kind == "rule" and _is_number(answer):
            kind = "numeric"
        if kind == "numeric" and extracted is None:
            prediction = emphasized_number(content) or content
        if kind == "f1":
            f1 = token_f1(prediction, answer)
            return Verdict(score=f1, correct=f1 >= self.f1_threshold, extracted=extracted)
        gold = list(answer_tokens(answer))
        if kind == "numeric":
            ok = self._numeric(prediction, answer)
        elif kind == "exact":
            ok = exact_answer(prediction, gold)
        elif kind == "contains":
            ok = contains_answer(prediction, gold)
        else:  # rule, non-numeric gold: exact or whole-word containment
            ok = exact_answer(prediction, gold) or contains_answer(prediction, gold)
        return Verdict(score=float(ok), correct=ok, extracted=extracted)

    async def judge(self, question: str, answer: str, content: str) -> Verdict:
        return self.judge_sync(question, answer, content)

    async def aclose(self) -> None:
        return None
