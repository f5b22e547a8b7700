"""Tool protocols of the search agents: how tools are offered, how calls are parsed, how outputs are rendered.

``carr``   the CaRR / DeepDive-4B-SFT browser protocol: tools ``browser.search{query, num}``,
           ``browser.open{id | url}`` (an integer is an index into the last results, 0-based),
           ``browser.find{pattern}``; results as ``[i] Title: / [i] URL Source: / [i] Description:`` blocks, pages
           as ``Title: / URL Source: / Markdown Content:`` cut to 10,000 characters, find matches as
           ``[Match k]`` blocks. The final turn (no tool call) has "## Explanation with Citations" with inline
           ``[[n](url)]`` citations, "## Exact Answer" and "## References".
``react``  the Tongyi-style protocol of LiteResearcher and DR-Venus: ``<think>`` then one
           ``<tool_call>{"name", "arguments"}</tool_call>`` (``search{query: [...]}``, ``visit{url: [...], goal}``)
           or ``<answer>...</answer>``. Search output is a numbered list of ``[title](url)`` + snippet per query,
           queries joined by ``=======``; visit returns the "useful information ... Evidence in page ... Summary"
           frame around the page's leading text (those agents use an LLM extractor there; this backend returns
           the page excerpt itself, ``text_kind`` = "page_excerpt").

In both, tool calls are accepted as ``<tool_call>`` JSON blocks in the content or as native ``tool_calls``
from servers that parse them; tool outputs go back as one user turn of ``<tool_response>`` blocks.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from reward.rule_judge import extract_answer

from .browser import Browser
from .chat import ChatReply
from .urls import numbered_citations

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass
class ToolCall:
    name: str
    arguments: dict


class ToolCallError(ValueError):
    pass


def _after_think(content: str) -> str:
    return content.rsplit("</think>", 1)[-1]


def parse_tool_calls(reply: ChatReply, first_only: bool = False) -> list[ToolCall]:
    """Native tool calls, else ``<tool_call>`` JSON blocks in the content (after any reasoning)."""
    raw: list[tuple[object, object]] = [(c["name"], c["arguments"]) for c in reply.tool_calls]
    if not raw:
        for block in _TOOL_CALL.findall(_after_think(reply.content)):
            try:
                obj = json.loads(block)
            except json.JSONDecodeError as e:
                raise ToolCallError(f"tool call is not valid JSON ({e.msg}): {block[:200]}") from None
            if not isinstance(obj, dict):
                raise ToolCallError(f"tool call must be a JSON object: {block[:200]}")
            raw.append((obj.get("name"), obj.get("arguments", {})))
    calls = []
    for name, args in raw[:1] if first_only else raw:
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                raise ToolCallError(f"arguments of {name!r} are not valid JSON: {args[:200]}") from None
        if not isinstance(name, str) or not isinstance(args, dict):
            raise ToolCallError(f"a tool call needs a string 'name' and an object 'arguments', got {name!r}, {args!r}")
        calls.append(ToolCall(name, args))
    return calls


def tool_responses(outputs: list[str]) -> str:
    return "".join(f"\n<tool_response>\n{o}\n</tool_response>" for o in outputs).lstrip("\n")


def extract_citations(final_text: str) -> list[tuple[int, str]]:
    """(label, url) citations of the body (everything after the last "## References" is ignored)."""
    body = final_text
    cut = body.rfind("## References")
    if cut >= 0:
        body = body[:cut]
    return numbered_citations(body)


# ------------------------------------------------------------------------------------------------ CaRR
CARR_TOOLS = [
    {"name": "browser.search", "description": "Search the web. Returns a numbered list of results.",
     "parameters": {"type": "object", "properties": {
         "query": {"type": "string", "description": "the search query"},
         "num": {"type": "integer", "description": "number of results (default 10)"}}, "required": ["query"]}},
    {"name": "browser.open", "description": "Open a page: an integer id from the last search results, or a URL.",
     "parameters": {"type": "object", "properties": {
         "id": {"type": ["integer", "string"], "description": "result id or URL"}}, "required": ["id"]}},
    {"name": "browser.find", "description": "Find a keyword in the page opened last.",
     "parameters": {"type": "object", "properties": {
         "pattern": {"type": "string", "description": "text to look for"}}, "required": ["pattern"]}},
]
CARR_ANSWER_SUFFIX = """

Write your final reply in three Markdown sections:
## Explanation with Citations
(how you reached the answer; cite the pages you rely on inline as [[n](url)])
## Exact Answer
(the answer alone, as short as possible)
## References
(the cited pages in numerical order)"""


def qwen_tool_preamble(tools: list[dict]) -> str:
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            f"{lines}\n</tools>\n\nFor each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>")


class CarrFormat:
    name = "carr"
    first_call_only = False
    page_chars = 10_000

    def initial_messages(self, question: str) -> list[dict]:
        return [{"role": "system", "content": qwen_tool_preamble(CARR_TOOLS)},
                {"role": "user", "content": question + CARR_ANSWER_SUFFIX}]

    @staticmethod
    def render_search(results: list[dict]) -> str:
        if not results:
            return "No results found."
        return "\n\n".join(f"[{i}] Title: {r['title']}\n[{i}] URL Source: {r['url']}\n[{i}] Description: {r['snippet']}"
                           for i, r in enumerate(results))

    async def execute(self, call: ToolCall, browser: Browser) -> str:
        a = call.arguments
        if call.name == "browser.search":
            if not isinstance(a.get("query"), str) or not a["query"].strip():
                raise ToolCallError("browser.search needs a non-empty string 'query'")
            num = a.get("num", 10)
            num = num if isinstance(num, int) and 1 <= num <= 50 else 10
            return self.render_search(await browser.search(a["query"], num))
        if call.name == "browser.open":
            target = a.get("id", a.get("url"))
            if isinstance(target, str) and target.strip().isdigit():
                target = int(target)
            if not isinstance(target, (int, str)) or isinstance(target, bool):
                raise ToolCallError("browser.open needs 'id' (a result number or a URL)")
            page = await browser.open(target)
            if not page["ok"]:
                return f"Failed to open the page: {page['error']}"
            head = f"Title: {page['title']}\nURL Source: {page['url']}\nMarkdown Content:\n"
            return (head + page["text"])[: self.page_chars]
        if call.name == "browser.find":
            if not isinstance(a.get("pattern"), str):
                raise ToolCallError("browser.find needs a string 'pattern'")
            return "\n\n".join(f"[Match {k}]\n{m}" for k, m in enumerate(browser.find(a["pattern"]), 1))
        raise ToolCallError(f"unknown tool {call.name!r}; the tools are browser.search, browser.open, browser.find")

    @staticmethod
    def final(content: str) -> tuple[str | None, list[tuple[int, str]]]:
        text = _after_think(content)
        return extract_answer(text), extract_citations(text)

    @staticmethod
    def is_final(reply: ChatReply, calls: list[ToolCall]) -> bool:
        return not calls


# ------------------------------------------------------------------------------------------------ ReAct
REACT_TOOLS = [
    {"type": "function", "function": {"name": "search", "description": "Web search; accepts several queries.",
     "parameters": {"type": "object", "properties": {"query": {"type": "array", "items": {"type": "string"},
                    "minItems": 1, "description": "queries to run"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "visit", "description": "Read web pages and report what serves the goal.",
     "parameters": {"type": "object", "properties": {
         "url": {"type": "array", "items": {"type": "string"}, "description": "URLs to read"},
         "goal": {"type": "string", "description": "what to look for"}}, "required": ["url", "goal"]}}},
]
REACT_SYSTEM = """You are a research assistant who answers hard questions by searching the web and reading pages.
Think inside <think></think> first. Then do exactly one of two things:
- call one tool: <tool_call>{{"name": ..., "arguments": ...}}</tool_call>
- or give the final answer: <answer>...</answer> (only the answer: a few words, a name, a date or a number).

""" + "{preamble}"


class ReactFormat:
    name = "react"
    first_call_only = True
    visit_chars = 6_000

    def initial_messages(self, question: str) -> list[dict]:
        preamble = qwen_tool_preamble(REACT_TOOLS)
        return [{"role": "system", "content": REACT_SYSTEM.format(preamble=preamble)},
                {"role": "user", "content": question}]

    @staticmethod
    def render_search(query: str, results: list[dict]) -> str:
        items = "\n\n".join(f"{i}. [{r['title']}]({r['url']})\n{r['snippet']}" for i, r in enumerate(results, 1))
        return f"A search for '{query}' found {len(results)} results:\n\n## Web Results\n{items}"

    async def execute(self, call: ToolCall, browser: Browser) -> str:
        a = call.arguments
        if call.name == "search":
            queries = a.get("query")
            queries = [queries] if isinstance(queries, str) else queries
            if not isinstance(queries, list) or not queries or not all(isinstance(q, str) for q in queries):
                raise ToolCallError("search needs 'query': a list of strings")
            return "\n=======\n".join([self.render_search(q, await browser.search(q, 10)) for q in queries[:5]])
        if call.name == "visit":
            urls, goal = a.get("url"), a.get("goal", "")
            urls = [urls] if isinstance(urls, str) else urls
            if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
                raise ToolCallError("visit needs 'url': a list of URLs")
            out = []
            for url in urls[:5]:
                page = await browser.open(url, text_kind="page_excerpt", chars=self.visit_chars)
                head = f"The useful information in {url} for user goal {goal} as follows: \n\n"
                if not page["ok"]:
                    out.append(head + "Evidence in page: \nThe provided webpage content could not be accessed."
                               f" ({page['error']})\n\nSummary: \nThe webpage content could not be processed.\n\n")
                    continue
                first = next((p for p in page["text"].split("\n") if p.strip() and not p.startswith("#")), "")
                out.append(f"{head}Evidence in page: \n{page['shown']}\n\nSummary: \n{page['title']}: {first[:300]}\n\n")
            return "\n=======\n".join(out)
        raise ToolCallError(f"unknown tool {call.name!r}; the tools are search and visit")

    @staticmethod
    def final(content: str) -> tuple[str | None, list[tuple[int, str]]]:
        found = _ANSWER_TAG.findall(_after_think(content))
        return (found[-1].strip() if found else None), []

    @staticmethod
    def is_final(reply: ChatReply, calls: list[ToolCall]) -> bool:
        return not calls and "<answer>" in _after_think(reply.content)


FORMATS = {"carr": CarrFormat, "react": ReactFormat}
