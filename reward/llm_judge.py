"""LLM-as-judge outcome reward through any OpenAI-compatible chat endpoint (SGLang, vLLM, hosted APIs).

The judge sees the bare question, the gold answer and the response's final content, and must reply with
the answer it extracted, a short reasoning and ``correct: yes|no``.

Failure behaviour:
  * transport errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff and jitter;
  * other HTTP errors (401, 404, 400 ...) are not retried;
  * a reply without a parseable ``correct:`` line is asked again (``parse_retries``);
  * when all attempts fail the verdict carries ``error`` (never a silent 0).
The API key is read from the environment variable named in the config at call time; it is never stored
in the config, logged or put in an error message.
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
    def __init__(self, cfg: "LLMJudgeConfig", cache: JudgeCache | None = None):
        if not cfg.base_url or not cfg.model:
            raise ValueError("the llm judge needs --judge-base-url and --judge-model")
        self.cfg = cfg
        self.name = f"llm:{cfg.model}"
        self.cache = cache if cache is not None else JudgeCache(cfg.cache_path)
        self._identity = f"{cfg.model}|{PROMPT_VERSION}"
        self._clients = PerLoop(lambda: httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), timeout=cfg.timeout_s))
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(cfg.max_concurrency))

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def judge(self, question: str, answer: str, content: str) -> Verdict:
        key = cache_key(self._identity, question, answer, content)
        hit = self.cache.get(key)
        if hit is not None:
            return Verdict(hit.score, hit.correct, hit.extracted, hit.reasoning, cached=True)
        messages = [{"role": "user", "content": GRADER_PROMPT.format(question=question, answer=answer, response=content)}]
        problem = "no reply"
        for _ in range(1 + self.cfg.parse_retries):
            reply = await self._complete(messages)
            if isinstance(reply, Verdict):  # the request itself failed
                return reply
            verdict = parse_judgement(reply)
            if verdict is not None:
                self.cache.put(key, verdict)
                return verdict
            problem = f"unparseable reply {reply[:120]!r}"
        return judge_error(f"{problem} after {1 + self.cfg.parse_retries} attempts")

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
            return resp.json()["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError, ValueError) as e:
            return judge_error(f"malformed response body ({type(e).__name__}): {resp.text[:200]}")

    async def aclose(self) -> None:
        await self._clients.aclose()
        self.cache.close()
