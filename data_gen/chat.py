"""An OpenAI-compatible chat client for data generation (walk chooser, question writer, search agent).

Transport retries (timeouts, connection errors, 429, 5xx; exponential backoff with jitter) come from
``reward.http_retry``; other HTTP errors and malformed bodies are not retried. Every failure raises
``ChatError`` with a message that says what happened, so callers can record it (never drop it silently).
The API key is read at call time from the environment variable named in the config and is never logged.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from reward.http_retry import PerLoop, RetriesExhausted, post_with_retries


class ChatError(RuntimeError):
    pass


@dataclass
class ChatConfig:
    base_url: str = ""  # e.g. http://127.0.0.1:30000/v1 (SGLang, vLLM) or a hosted API
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int | None = 2048
    timeout_s: float = 300.0
    retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_concurrency: int = 16
    extra_body: dict = field(default_factory=dict)

    def check(self, what: str) -> "ChatConfig":
        if not self.base_url or not self.model:
            raise ValueError(f"{what} needs --llm-base-url and --llm-model")
        return self


@dataclass
class ChatReply:
    content: str
    tool_calls: list[dict]  # [{"id", "name", "arguments"}] from a native tool-calling server (arguments: dict or str)
    reasoning: str | None = None
    finish_reason: str | None = None


class ChatClient:
    def __init__(self, cfg: ChatConfig):
        self.cfg = cfg
        self.calls = 0
        self._clients = PerLoop(lambda: httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), timeout=cfg.timeout_s))
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(cfg.max_concurrency))

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def complete(self, messages: list[dict], **overrides: Any) -> ChatReply:
        cfg = self.cfg
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature}
        if cfg.top_p is not None:
            body["top_p"] = cfg.top_p
        if cfg.max_tokens:
            body["max_tokens"] = cfg.max_tokens
        body.update(cfg.extra_body)
        body.update({k: v for k, v in overrides.items() if v is not None})
        self.calls += 1
        try:
            resp = await post_with_retries(
                self._clients.get(), "/chat/completions", json=body, headers=self._headers(), retries=cfg.retries,
                backoff_s=cfg.backoff_s, backoff_max_s=cfg.backoff_max_s, semaphore=self._semaphores.get(),
                what="chat request",
            )
        except RetriesExhausted as e:
            raise ChatError(f"chat endpoint failed: {e}") from None
        if resp.status_code >= 400:
            raise ChatError(f"HTTP {resp.status_code} from chat endpoint (not retried): {resp.text[:200]}")
        try:
            choice = resp.json()["choices"][0]
            msg = choice["message"]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ChatError(f"malformed chat response ({type(e).__name__}): {resp.text[:200]}") from None
        calls = []
        for i, tc in enumerate(msg.get("tool_calls") or []):
            fn = tc.get("function", tc)
            calls.append({"id": tc.get("id") or f"call_{i}", "name": fn.get("name"), "arguments": fn.get("arguments")})
        return ChatReply(
            content=msg.get("content") or "", tool_calls=calls,
            reasoning=msg.get("reasoning_content") or msg.get("reasoning"), finish_reason=choice.get("finish_reason"),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


def add_chat_args(parser: argparse.ArgumentParser, what: str, temperature: float) -> None:
    g = parser.add_argument_group(f"LLM endpoint ({what})")
    g.add_argument("--llm-base-url", default="", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:30000/v1")
    g.add_argument("--llm-model", default="", help="model name sent to the endpoint")
    g.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--llm-temperature", type=float, default=temperature, help=f"sampling temperature (default {temperature})")
    g.add_argument("--llm-max-tokens", type=int, default=2048, help="max_tokens per reply (default 2048)")
    g.add_argument("--llm-timeout", type=float, default=300.0, help="per-request timeout in seconds (default 300)")
    g.add_argument("--llm-retries", type=int, default=3, help="transport retries per request (default 3)")
    g.add_argument("--llm-concurrency", type=int, default=16, help="max concurrent requests (default 16)")
    g.add_argument("--llm-extra-body", type=json.loads, default={},
                   help='JSON merged into each request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')


def chat_config_from_args(args: argparse.Namespace) -> ChatConfig:
    return ChatConfig(
        base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_api_key_env,
        temperature=args.llm_temperature, max_tokens=args.llm_max_tokens, timeout_s=args.llm_timeout,
        retries=args.llm_retries, max_concurrency=args.llm_concurrency, extra_body=args.llm_extra_body,
    )
