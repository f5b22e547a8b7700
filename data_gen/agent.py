"""The search-agent loop, the scripted offline agent, and K trajectories per question with judged answers.

``run_trajectory`` drives a policy (an OpenAI-compatible chat model through ``ChatClient``, or the
``ScriptedAgent``) in one tool format (agent_formats.py) against a browser (browser.py) until the policy
answers, ``max_turns`` assistant turns pass, or the conversation exceeds ``max_context_chars`` (then the
policy is asked once for its final answer). The answer is judged with the reward package's outcome judge
(rule judges offline, the LLM judge against any endpoint); every trajectory is stored with its verdict, and
``correct`` marks the ones to keep.

The scripted agent needs no model: it plays the CaRR protocol for a question whose walk it knows. For each
gold page it searches (the entity's name, sometimes with a word of context), opens the gold page (by result
id, or by URL when search missed it), sometimes opens another result it will not cite (a namesake or a page
on the same topic: tier 1), sometimes runs ``find`` on the page, and leaves the other results unopened
(tier 2). It cites the gold pages it opened and answers; with a small probability it gives a near-miss answer
(a year off by one, a confusable name) so that incorrect trajectories exist too. Seeded per (question, sample).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Protocol

from reward.judge import Judge

from .agent_formats import FORMATS, ToolCallError, parse_tool_calls, tool_responses
from .browser import Browser, SearchBackend
from .chat import ChatClient, ChatError, ChatReply
from .questions import display_name
from .trajectory import SCHEMA, stats, url_key

CONTEXT_LIMIT_PROMPT = "You have reached the context limit. Stop using tools and give your final answer now."


@dataclass
class AgentConfig:
    format: str = "carr"
    samples: int = 5  # K trajectories per question
    max_turns: int = 40
    max_context_chars: int = 400_000  # ~100K tokens
    page_chars: int = 10_000
    leak_filter: bool = True  # drop results/pages containing the question text


class Policy(Protocol):
    name: str

    async def complete(self, messages: list[dict]) -> ChatReply: ...


class ModelPolicy:
    def __init__(self, client: ChatClient):
        self.client = client
        self.name = f"llm:{client.cfg.model}"

    def bind(self, browser: Browser, question: dict, sample: int) -> "ModelPolicy":
        return self

    async def complete(self, messages: list[dict]) -> ChatReply:
        return await self.client.complete(messages)


def _context_chars(messages: list[dict]) -> int:
    return sum(len(m.get("content") or "") + len(m.get("reasoning_content") or "") for m in messages)


async def run_trajectory(question: dict, sample: int, policy, backend: SearchBackend, cfg: AgentConfig,
                         judge: Judge) -> dict:
    fmt = FORMATS[cfg.format]()
    forbidden = [question["question"]] if cfg.leak_filter else []
    browser = Browser(backend, forbidden, page_chars=cfg.page_chars)
    policy = policy.bind(browser, question, sample)
    messages = fmt.initial_messages(question["question"])
    termination, final_text, parse_errors, turn, asked_final = "max_turns", "", 0, 0, False
    for turn in range(cfg.max_turns):
        browser.turn = turn
        if _context_chars(messages) > cfg.max_context_chars:
            if asked_final:
                termination = "context_limit"
                break
            messages.append({"role": "user", "content": CONTEXT_LIMIT_PROMPT})
            asked_final = True
        try:
            reply = await policy.complete(messages)
        except ChatError as e:
            termination = "llm_error"
            browser.events.append({"type": "error", "turn": turn, "message": str(e)})
            break
        msg = {"role": "assistant", "content": reply.content}
        if reply.reasoning:
            msg["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            msg["tool_calls"] = reply.tool_calls
        messages.append(msg)
        try:
            calls = parse_tool_calls(reply, first_only=fmt.first_call_only)
        except ToolCallError as e:
            parse_errors += 1
            browser.events.append({"type": "error", "turn": turn, "message": str(e)})
            messages.append({"role": "user", "content": tool_responses([f"Error: {e}"])})
            continue
        if fmt.is_final(reply, calls) or (asked_final and not calls):
            final_text, termination = reply.content, "answer"
            break
        if not calls:
            parse_errors += 1
            err = "no tool call and no <answer>: call a tool or give the final answer in <answer></answer>"
            browser.events.append({"type": "error", "turn": turn, "message": err})
            messages.append({"role": "user", "content": tool_responses([f"Error: {err}"])})
            continue
        outputs = []
        for call in calls:
            try:
                outputs.append(await fmt.execute(call, browser))
            except ToolCallError as e:
                parse_errors += 1
                browser.events.append({"type": "error", "turn": turn, "message": str(e)})
                outputs.append(f"Error: {e}")
        messages.append({"role": "user", "content": tool_responses(outputs)})
    answer, citations = fmt.final(final_text) if final_text else (None, [])
    events = browser.events
    if final_text:
        events.append({"type": "answer", "turn": turn, "text": answer, "citations": [u for _, u in citations]})
        seen = browser.seen_urls()
        for label, url in citations:
            events.append({"type": "cite", "turn": turn, "url": url, "number": label, "seen": url_key(url) in seen})
    verdict = await _judge(judge, question, final_text)
    return {
        "schema": SCHEMA, "trajectory_id": f"{question['question_id']}#{sample}",
        "question_id": question["question_id"], "sample_index": sample, "agent": policy.name, "format": fmt.name,
        "question": question["question"], "gold_answer": question["answer"],
        "gold_urls": [p["url"] for p in question.get("gold_pages", [])],
        "messages": messages, "events": events, "final_text": final_text, "final_answer": answer,
        "citations": [u for _, u in citations], "termination": termination, "turns": turn + 1,
        "parse_errors": parse_errors, "stats": stats(events), "verdict": verdict, "correct": verdict["correct"],
    }


async def _judge(judge: Judge, question: dict, final_text: str) -> dict:
    if not final_text:
        return {"correct": False, "score": 0.0, "extracted": None, "judge": judge.name, "error": None}
    v = await judge.judge(question["question"], question["answer"], final_text)
    return {"correct": bool(v.correct and not v.error), "score": v.score, "extracted": v.extracted,
            "judge": judge.name, "error": v.error}


# ------------------------------------------------------------------------------------------------ scripted
def _tool_call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>"


class ScriptedAgent:
    """An offline policy for the CaRR protocol that knows the question's walk (see the module docstring)."""

    name = "scripted"

    def __init__(self, p_distractor: float = 0.4, p_find: float = 0.25, p_wrong: float = 0.15,
                 p_context_word: float = 0.3, search_k: int = 10):
        self.p_distractor, self.p_find, self.p_wrong = p_distractor, p_find, p_wrong
        self.p_context_word, self.search_k = p_context_word, search_k

    def bind(self, browser: Browser, question: dict, sample: int) -> "_ScriptedRun":
        return _ScriptedRun(self, browser, question, random.Random(f"scripted:{question['question_id']}:{sample}"))


class _ScriptedRun:
    name = "scripted"

    def __init__(self, agent: ScriptedAgent, browser: Browser, question: dict, rng: random.Random):
        self.a, self.browser, self.q, self.rng = agent, browser, question, rng
        self.gold = question.get("gold_pages") or []
        self.steps = self._plan()

    def _plan(self):
        """A generator of assistant contents; it reads the browser's state between steps."""
        rng, a = self.rng, self.a
        opened_gold: list[tuple[str, str]] = []  # (title, url) in citation order
        distracted = False
        words = [w for w in self.q["question"].replace(".", " ").split() if len(w) > 5]
        for i, page in enumerate(self.gold):
            name = display_name(page["title"])
            query = name if rng.random() >= a.p_context_word or not words else f"{name} {rng.choice(words).lower()}"
            yield f"<think>\nStep {i + 1}: I need the entity for this clue; searching for it.\n</think>\n\n" + _tool_call(
                "browser.search", query=query, num=a.search_k)
            results = self.browser.results
            gold_rank = next((r for r, h in enumerate(results) if url_key(h["url"]) == url_key(page["url"])), None)
            others = [r for r in range(len(results)) if r != gold_rank]
            want_distractor = others and (rng.random() < a.p_distractor
                                          or (not distracted and i == len(self.gold) - 1))
            distractor = None
            if want_distractor:
                similar = [r for r in others if name.split()[0].casefold() in results[r]["title"].casefold()]
                distractor = rng.choice(similar or others[:5])
            if distractor is not None and rng.random() < 0.5:  # look at the wrong page first
                yield "<think>\nThis result looks relevant; let me check it.\n</think>\n\n" + _tool_call(
                    "browser.open", id=distractor)
                distracted, distractor = True, None
            target = gold_rank if gold_rank is not None else page["url"]
            yield "<think>\nOpening the page that matches the clue.\n</think>\n\n" + _tool_call("browser.open", id=target)
            if self.browser.page is not None and url_key(self.browser.page["url"]) == url_key(page["url"]):
                opened_gold.append((self.browser.page["title"], self.browser.page["url"]))
            if distractor is not None:
                yield "<think>\nLet me also check this other result to be sure.\n</think>\n\n" + _tool_call(
                    "browser.open", id=distractor)
                distracted = True
            if rng.random() < a.p_find and i + 1 < len(self.gold):
                nxt = display_name(self.gold[i + 1]["title"])
                yield "<think>\nLooking for the next link on this page.\n</think>\n\n" + _tool_call(
                    "browser.find", pattern=nxt.split()[0])
        yield self._final(opened_gold)

    def _wrong_answer(self, answer: str) -> str:
        if answer.isdigit():
            return str(int(answer) + self.rng.choice((-1, 1)))
        return answer + " " + self.rng.choice(("II", "Revisited", "(album)")) if self.rng.random() < 0.5 else answer[::-1]

    def _final(self, opened_gold: list[tuple[str, str]]) -> str:
        answer = self.q["answer"]
        if self.rng.random() < self.a.p_wrong:
            answer = self._wrong_answer(answer)
        lines = ["<think>\nI have followed every hop; writing the answer.\n</think>\n", "## Explanation with Citations"]
        for n, (title, url) in enumerate(opened_gold, 1):
            lines.append(f"- Step {n}: {display_name(title)} [[{n}]({url})]")
        lines += ["", "## Exact Answer", answer, "", "## References"]
        lines += [f"[{n}] {title}: {url}" for n, (title, url) in enumerate(opened_gold, 1)]
        return "\n".join(lines)

    async def complete(self, messages: list[dict]) -> ChatReply:
        try:
            return ChatReply(content=next(self.steps), tool_calls=[])
        except StopIteration:
            raise ChatError("the scripted agent has nothing more to say") from None

