"""Response parsing and validity for thinking models.

A thinking model's response is ``<reasoning></think><final content><stop token>`` (the chat template usually
pre-opens ``<think>``). The final content is what the judge and, by default, the rubric see. A response is
invalid (reward 0 with a named reason, counted) when:

  truncated / aborted / failed   generation did not finish (length cap, abort, engine failure)
  no_stop_token                  not ended by an accepted stop token (e.g. ``<|endoftext|>`` instead of ``<|im_end|>``)
  no_think_end / multiple_think_end   not exactly one ``</think>``
  empty_reasoning / empty_content     one side of ``</think>`` is blank
  special_token_in_content       chat special tokens leak into the final content
  no_assistant_message           history mode with no final assistant message

``thinking=False`` (non-thinking models) skips the ``</think>`` rules: the whole response is the content.

``mode="reference"`` reproduces LongTraceRL's own parsing instead: slime's Qwen3 message processor for raw
responses and the reward server's history mode for message lists (docs/reward.md lists every difference).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

STATUSES = ("completed", "truncated", "aborted", "failed")
PARSE_MODES = ("default", "reference")
INVALID_REASONS = (
    "truncated",
    "aborted",
    "failed",
    "no_stop_token",
    "no_think_end",
    "multiple_think_end",
    "empty_reasoning",
    "empty_content",
    "special_token_in_content",
    "no_assistant_message",
)

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 encoder accepts: JSON ``"\\ud800"`` decodes to one) replaced
    by U+FFFD. Every other code point encodes; the common case costs one ``isascii`` or ``encode`` call."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


@dataclass(frozen=True)
class ValidityConfig:
    thinking: bool = True
    require_stop: bool = True
    stop_tokens: tuple[str, ...] = ("<|im_end|>",)
    # Generation-ending tokens that are recognised (and stripped) but not accepted as a proper stop.
    other_end_tokens: tuple[str, ...] = ("<|endoftext|>",)
    special_tokens: tuple[str, ...] = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", THINK_OPEN, THINK_CLOSE)


Turn = tuple["str | None", "str | None"]  # (reasoning, content) of one assistant turn; None when absent


@dataclass(frozen=True)
class ParsedResponse:
    reasoning: str  # all reasoning the rubric may read (every assistant turn in history mode); not stripped
    content: str  # all final content the rubric may read
    final_content: str  # what the judge sees: the last assistant turn's content
    invalid_reason: str | None = None
    # The assistant turns in conversation order; the rubric reads them as R1 C1 R2 C2 ...
    turns: tuple[Turn, ...] = ()
    # Whether an invalid response can still be scored when invalid responses are not punished. Reference mode:
    # only when the original's message kept a "content" (its server scores 0 otherwise).
    scorable: bool = True
    # Reference mode: the answer is blank after "</think>", so the outcome is 0 without asking the judge.
    answer_blank: bool = False

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


def _check_mode(mode: str) -> None:
    if mode not in PARSE_MODES:
        raise ValueError(f"unknown parsing mode {mode!r}; choose one of {', '.join(PARSE_MODES)}")


# Responses are ~130 KB: the helpers below work with indices into the text and copy only the final slices.


def _end_of_text(text: str, stop: str | None, cfg: ValidityConfig) -> tuple[int, str | None]:
    """Index where the text proper ends (before a trailing end token), and the stop token that ended it."""
    end = len(text)
    while end and text[end - 1].isspace():
        end -= 1
    for token in (*cfg.stop_tokens, *cfg.other_end_tokens):
        if text.endswith(token, 0, end):
            return end - len(token), stop if stop is not None else token
    return len(text), stop


def _split_thinking(text: str, end: int, cfg: ValidityConfig) -> tuple[str, str, str | None]:
    """(reasoning, content, invalid reason of the split or None) for text[:end]."""
    if not cfg.thinking:
        return "", text[:end].strip(), None
    start = 0
    while start < end and text[start].isspace():
        start += 1
    if text.startswith(THINK_OPEN, start, end):
        start += len(THINK_OPEN)
    close = text.find(THINK_CLOSE, start, end)
    if close < 0:
        # Like the reference server: without </think> the whole text is what a lenient judge would read.
        return "", text[start:end].strip(), "no_think_end"
    after = close + len(THINK_CLOSE)
    multiple = text.find(THINK_CLOSE, after, end) >= 0
    return text[start:close], text[after:end].strip(), "multiple_think_end" if multiple else None


def _has_special_token(content: str, tokens: Sequence[str]) -> bool:
    # One cheap scan per distinct first character before the full token searches.
    return any(c in content for c in {t[0] for t in tokens if t}) and any(t in content for t in tokens if t)


def _content_reason(reasoning: str, content: str, cfg: ValidityConfig) -> str | None:
    if cfg.thinking and (not reasoning or reasoning.isspace()):
        return "empty_reasoning"
    if not content:
        return "empty_content"
    if _has_special_token(content, cfg.special_tokens):
        return "special_token_in_content"
    return None


def _status_reason(status: str) -> str | None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return None if status == "completed" else status


def _invalid_reason(
    status: str, stop: str | None, split_reason: str | None, reasoning: str, content: str, cfg: ValidityConfig
) -> str | None:
    """The first rule a response breaks, in order of how much it tells the user."""
    if status_reason := _status_reason(status):
        return status_reason
    if cfg.require_stop and stop not in cfg.stop_tokens:
        return "no_stop_token"
    return split_reason or _content_reason(reasoning, content, cfg)


def parse_response(
    text: str,
    status: str = "completed",
    stop: str | None = None,
    cfg: ValidityConfig = ValidityConfig(),
    mode: str = "default",
) -> ParsedResponse:
    """Split a raw response string and check it. ``stop`` is the token that ended generation, if known."""
    _check_mode(mode)
    if mode == "reference":
        return _reference_response(text, status, stop, cfg)
    end, stop = _end_of_text(text, stop, cfg)
    reasoning, content, split_reason = _split_thinking(text, end, cfg)
    reason = _invalid_reason(status, stop, split_reason, reasoning, content, cfg)
    return ParsedResponse(reasoning, content, content, reason, turns=((reasoning, content),))


def _text(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    return value if isinstance(value, str) else None


def parse_history(
    history: Sequence[dict[str, Any]],
    status: str = "completed",
    stop: str | None = None,
    cfg: ValidityConfig = ValidityConfig(),
    mode: str = "default",
) -> ParsedResponse:
    """History mode (slime message lists): the last message must be the assistant's final answer.

    An assistant message carries ``content`` and, when the message processor already split the thinking,
    ``reasoning_content`` (absent or null otherwise). The rubric reads every assistant turn in conversation
    order (as the reference server does).
    """
    _check_mode(mode)
    if mode == "reference":
        return _reference_history(history, status)
    last = history[-1] if history else None
    if not last or last.get("role") != "assistant" or _text(last, "content") is None:
        return ParsedResponse("", "", "", _status_reason(status) or "no_assistant_message", scorable=False)

    turns: list[Turn] = []
    for message in history[:-1]:
        if message.get("role") == "assistant":
            reasoning, content = _text(message, "reasoning_content"), _text(message, "content")
            turns.append((reasoning.strip() if reasoning is not None else None, content.strip() if content is not None else None))

    end, stop = _end_of_text(last["content"], stop, cfg)
    if _text(last, "reasoning_content") is not None:
        final_reasoning, final_content, split_reason = last["reasoning_content"].strip(), last["content"][:end].strip(), None
    else:
        final_reasoning, final_content, split_reason = _split_thinking(last["content"], end, cfg)
        final_reasoning = final_reasoning.strip()
    turns.append((final_reasoning, final_content))
    reason = _invalid_reason(status, stop, split_reason, final_reasoning, final_content, cfg)
    reasonings = "\n\n".join(r for r, _ in turns if r)
    contents = "\n\n".join(c for _, c in turns if c)
    return ParsedResponse(reasonings, contents, final_content, reason, turns=tuple(turns))


# --------------------------------------------------------------------------------------------- reference mode


def _reference_invalid(reason: str) -> ParsedResponse:
    return ParsedResponse("", "", "", reason, scorable=False)


def _reference_response(text: str, status: str, stop: str | None, cfg: ValidityConfig) -> ParsedResponse:
    """slime's Qwen3MessageProcessor.parse_model_response, then the server's history mode on its message.

    Unfinished generations (truncated / aborted, and a text without a known end token) keep no "content", so they
    score 0 even when invalid responses are not punished. The text must end with the end token itself (trailing
    whitespace after it counts as no stop token); ``stop`` is appended when the engine stripped it. The reasoning
    keeps a leading ``<think>``; the split is at the last ``</think>``; a blank side counts only when empty; the
    content may hold ``<think>`` (only the chat tokens are checked there).
    """
    if reason := _status_reason(status):
        return _reference_invalid(reason)
    if stop is not None and not text.endswith(stop):
        text += stop
    body, reason = text, None
    for token in (*cfg.stop_tokens, *cfg.other_end_tokens):
        if token and text.endswith(token):
            body = text[: -len(token)]
            if token not in cfg.stop_tokens and cfg.require_stop:
                reason = "no_stop_token"  # e.g. <|endoftext|>: parsed, but ill-formed
            break
    else:
        if cfg.require_stop:
            return _reference_invalid("no_stop_token")
    if cfg.thinking:
        closes = body.count(THINK_CLOSE)
        reason = reason or (None if closes == 1 else "no_think_end" if closes == 0 else "multiple_think_end")
        if closes:
            reasoning, content = body.rsplit(THINK_CLOSE, 1)
            reasoning, content = reasoning.removesuffix("\n"), content.removeprefix("\n\n")
        else:
            reasoning, content = body, ""
        if not reasoning:
            reason = reason or "empty_reasoning"
    else:
        reasoning, content = "", body
    if not content:
        reason = reason or "empty_content"
    elif _has_special_token(content, [t for t in cfg.special_tokens if t not in (THINK_OPEN, THINK_CLOSE)]):
        reason = reason or "special_token_in_content"
    turn = (reasoning or None, content or None)
    return ParsedResponse(reasoning, content, content, reason, turns=(turn,), scorable=bool(content))


def _reference_history(history: Sequence[dict[str, Any]], status: str) -> ParsedResponse:
    """The reward server's history mode: the last message must be the assistant's with a content (nothing else is
    checked there: slime's message processor did that). The judge reads the text after the last ``</think>`` of
    that content, stripped (a blank one scores 0 without a judge call)."""
    if reason := _status_reason(status):
        return _reference_invalid(reason)
    last = history[-1] if history else None
    if not last or last.get("role") != "assistant" or _text(last, "content") is None:
        return _reference_invalid("no_assistant_message")
    turns = tuple(
        (_text(m, "reasoning_content"), _text(m, "content")) for m in history if m.get("role") == "assistant"
    )
    final = last["content"]
    blank = False
    if THINK_CLOSE in final:
        final = final.split(THINK_CLOSE)[-1].strip()
        blank = not final
    reasonings = "\n\n".join(r.strip() for r, _ in turns if r is not None)
    contents = "\n\n".join(c.strip() for _, c in turns if c is not None)
    return ParsedResponse(reasonings, contents, final, None, turns=turns, answer_blank=blank)
