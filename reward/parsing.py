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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

STATUSES = ("completed", "truncated", "aborted", "failed")
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


@dataclass(frozen=True)
class ValidityConfig:
    thinking: bool = True
    require_stop: bool = True
    stop_tokens: tuple[str, ...] = ("<|im_end|>",)
    # Generation-ending tokens that are recognised (and stripped) but not accepted as a proper stop.
    other_end_tokens: tuple[str, ...] = ("<|endoftext|>",)
    special_tokens: tuple[str, ...] = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", THINK_OPEN, THINK_CLOSE)


@dataclass(frozen=True)
class ParsedResponse:
    reasoning: str  # all reasoning the rubric may read (every assistant turn in history mode); not stripped
    content: str  # all final content the rubric may read
    final_content: str  # what the judge sees: the last assistant turn's content
    invalid_reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


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


def _has_special_token(content: str, tokens: tuple[str, ...]) -> bool:
    # One cheap scan per distinct first character before the full token searches.
    return any(c in content for c in {t[0] for t in tokens if t}) and any(t in content for t in tokens)


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
    text: str, status: str = "completed", stop: str | None = None, cfg: ValidityConfig = ValidityConfig()
) -> ParsedResponse:
    """Split a raw response string and check it. ``stop`` is the token that ended generation, if known."""
    end, stop = _end_of_text(text, stop, cfg)
    reasoning, content, split_reason = _split_thinking(text, end, cfg)
    return ParsedResponse(reasoning, content, content, _invalid_reason(status, stop, split_reason, reasoning, content, cfg))


def parse_history(
    history: Sequence[dict[str, Any]],
    status: str = "completed",
    stop: str | None = None,
    cfg: ValidityConfig = ValidityConfig(),
) -> ParsedResponse:
    """History mode (slime message lists): the last message must be the assistant's final answer.

    An assistant message carries ``content`` and, when the message processor already split the thinking,
    ``reasoning_content``. The rubric reads every assistant turn (as the reference server does).
    """
    last = history[-1] if history else None
    if not last or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        return ParsedResponse("", "", "", _status_reason(status) or "no_assistant_message")

    reasonings, contents = [], []
    for message in history:
        if message.get("role") != "assistant":
            continue
        if isinstance(message.get("reasoning_content"), str):
            reasonings.append(message["reasoning_content"].strip())
        if isinstance(message.get("content"), str):
            contents.append(message["content"].strip())

    end, stop = _end_of_text(last["content"], stop, cfg)
    if "reasoning_content" in last:
        final_reasoning, final_content, split_reason = (last["reasoning_content"] or "").strip(), last["content"][:end].strip(), None
    else:
        final_reasoning, final_content, split_reason = _split_thinking(last["content"], end, cfg)
        if final_reasoning:
            reasonings.append(final_reasoning.strip())
    contents[-1] = final_content
    reason = _invalid_reason(status, stop, split_reason, final_reasoning, final_content, cfg)
    return ParsedResponse("\n\n".join(reasonings), "\n\n".join(contents), final_content, reason)
