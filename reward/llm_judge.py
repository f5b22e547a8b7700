"""LLM-as-judge outcome reward through any OpenAI-compatible chat endpoint (SGLang, vLLM, hosted APIs).

The judge sees the bare question, the gold answer and the response's final content, and must reply with
the answer it extracted, a short reasoning and ``correct: yes|no``.

Failure behaviour:
  * transport errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff and jitter;
  * other HTTP errors (401, 404, 400 ...) are not retried;
  * a reply without a parseable ``correct:`` line is asked again (``parse_retries``);
  * when all attempts fail the verdict carries ``error`` (never a silent 0).
The API key is read from the environment variable named in the config at call time; it is never stored
in the config, logged or put in an error message. Texts with lone surrogates are cleaned (U+FFFD) before they are
hashed or sent, so they can be encoded.

``reference=True`` parses replies as LongTraceRL's reward server does (``parse_judgement_reference``): the first
``correct: yes|no`` anywhere in the reply (``<think>`` blocks included, no word boundaries, so "incorrect: yes"
reads as yes); a reply is asked again until it holds both a decision and an ``extracted_final_answer:``; after the
last attempt the last decision counts, and only a lower-case ``yes`` then counts as yes. A reply with no decision at
all is a judge error there too, not the original's silent 0 (docs/reward.md).
"""
from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING

import httpx

from .http_retry import PerLoop, RetriesExhausted, post_with_retries
from .judge import Verdict, judge_error
from .judge_cache import JudgeCache, cache_key
from .parsing import clean_text

if TYPE_CHECKING:
    from .config import LLMJudgeConfig

PROMPT_VERSION = "v1"
GRADER_PROMPT = """You are grading one answer to a question. You get the question, the reference answer (which is \
correct and unambiguous) and a candidate response.

[question]: {question}

[reference answer]: {answer}

[candidate response]: {response}

Decide only whether the final answer given in the candidate response means the same as the reference answer. \
Do not try to solve the question and do not grade the reasoning. Differences in wording, spelling, formatting \
or capitalisation do not matter, and neither do small rounding differences in numbers. An answer that is \
different, incomplete, hedges between several options, or is missing is wrong.

Reply with exactly these three lines:
extracted_final_answer: <the final answer stated in the candidate response, or None if it states none>
reasoning: <one or two sentences comparing it with the reference answer>
correct: <yes or no>"""

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_CORRECT = re.compile(r"\**\s*correct\s*\**\s*[:：]\s*\**\s*(yes|no)\b", re.IGNORECASE)
_EXTRACTED = re.compile(r"\**\s*extracted_final_answer\s*\**\s*[:：]\s*\**\s*(.+)", re.IGNORECASE)
_REASONING = re.compile(r"\**\s*reasoning\s*\**\s*[:：]\s*\**\s*(.+)", re.IGNORECASE)


# The reference server's patterns: searched anywhere, first match wins; the star runs must be at most two long.
_REF_CORRECT = re.compile(r"correct\*{0,2}\s*:\s*(no|yes)", re.IGNORECASE)
_REF_EXTRACTED = re.compile(r"extracted_final_answer\*{0,2}\s*:\s*(.+)", re.IGNORECASE)


def parse_judgement_reference(reply: str) -> tuple[str | None, str | None]:
    """(decision as written, extracted answer) as LongTraceRL's server reads a reply; None where absent."""
    decision = _REF_CORRECT.search(reply)
    extracted = _REF_EXTRACTED.search(reply)
    return (decision.group(1) if decision else None), (extracted.group(1) if extracted else None)


def parse_judgement(reply: str) -> Verdict | None:
    """Parse a grader reply; None when it has no usable ``correct: yes|no`` line."""
    text = _THINK_BLOCK.sub("", reply)
    if "</think>" in text:  # a reasoning model whose opening tag was in the prompt
        text = text.rsplit("</think>", 1)[1]
    decisions = _CORRECT.findall(text)
    if not decisions:
        return None
    correct = decisions[-1].lower() == "yes"
    extracted = _EXTRACTED.search(text)
    reasoning = _REASONING.search(text)
    return Verdict(
        score=float(correct),
        correct=correct,
        extracted=extracted.group(1).strip().strip("*").strip() if extracted else None,
        reasoning=reasoning.group(1).strip() if reasoning else None,
    )


class LLMJudge:
    def __init__(self, cfg: "LLMJudgeConfig", cache: JudgeCache | None = None, reference: bool = False):
        if not cfg.base_url or not cfg.model:
            raise ValueError("the llm judge needs --judge-base-url and --judge-model")
        self.cfg = cfg
        self.reference = reference
        self.name = f"llm:{cfg.model}" + (":reference" if reference else "")
        self.cache = cache if cache is not None else JudgeCache(cfg.cache_path)
        self._identity = f"{cfg.model}|{PROMPT_VERSION}" + ("|reference-parsing" if reference else "")
        self._clients = PerLoop(lambda: httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), timeout=cfg.timeout_s))
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(cfg.max_concurrency))

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def judge(self, question: str, answer: str, content: str) -> Verdict:
        question, answer, content = clean_text(question), clean_text(answer), clean_text(content)
        key = cache_key(self._identity, question, answer, content)
        hit = self.cache.get(key)
        if hit is not None:
            return Verdict(hit.score, hit.correct, hit.extracted, hit.reasoning, cached=True)
        messages = [{"role": "user", "content": GRADER_PROMPT.format(question=question, answer=answer, response=content)}]
        attempts = 1 + self.cfg.parse_retries
        if self.reference:
            verdict = await self._judge_reference(messages, attempts)
            if verdict.error is None:
                self.cache.put(key, verdict)
            return verdict
        problem = "no reply"
        for _ in range(attempts):
            reply = await self._complete(messages)
            if isinstance(reply, Verdict):  # the request itself failed
                return reply
            verdict = parse_judgement(reply)
            if verdict is not None:
                self.cache.put(key, verdict)
                return verdict
            problem = f"unparseable reply {reply[:120]!r}"
        return judge_error(f"{problem} after {attempts} attempts")

    async def _judge_reference(self, messages: list[dict], attempts: int) -> Verdict:
        decision, extracted, reply = None, None, ""
        for _ in range(attempts):
            reply = await self._complete(messages)
            if isinstance(reply, Verdict):  # the request failed: an error here, where the original scored 0
                return reply
            decision, extracted = parse_judgement_reference(reply)
            if decision and extracted:
                decision = decision.lower()
                break
        if decision is None:
            return judge_error(f"unparseable reply {reply[:120]!r} after {attempts} attempts")
        correct = decision == "yes"  # after the last attempt the decision is compared as written
        return Verdict(score=float(correct), correct=correct, extracted=extracted)

    async def _complete(self, messages: list[dict]) -> str | Verdict:
        """One chat completion (transport retries inside); a Verdict with ``error`` when none can be had."""
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature}
        if self.cfg.max_tokens:
            body["max_tokens"] = self.cfg.max_tokens
        body.update(self.cfg.extra_body)
        try:
            resp = await post_with_retries(
                self._clients.get(), "/chat/completions", json=body, headers=self._headers(),
                retries=self.cfg.max_retries, backoff_s=self.cfg.backoff_s, backoff_max_s=self.cfg.backoff_max_s,
                semaphore=self._semaphores.get(), what="judge request",
            )
        except RetriesExhausted as e:
            return judge_error(str(e))
        if resp.status_code >= 400:
            return judge_error(f"HTTP {resp.status_code} from judge (not retried): {resp.text[:200]}")
        try:
            return clean_text(resp.json()["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError, ValueError) as e:
            return judge_error(f"malformed response body ({type(e).__name__}): {resp.text[:200]}")

    async def aclose(self) -> None:
        await self._clients.aclose()
        self.cache.close()
