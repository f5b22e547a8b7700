"""The text search agents write and read: tool-call blocks with relaxed JSON, and the outputs of search and page
tools in each agent family's format. Used by the trajectory importers (importers.py).

Tool calls
    ``<tool_call>{"name", "arguments"}</tool_call>`` blocks (an unclosed last block, as a truncated turn leaves it,
    is still read); ``arguments`` may be an object or a JSON string; the JSON may be strict JSON, JSON5-like
    (single quotes, trailing commas, unquoted keys, comments) or a Python literal (``True``, ``None``, tuples);
    ``{"function": {"name", "arguments"}}`` wrappers are unwrapped; a ``<code>`` body (DR-Venus's
    PythonInterpreter) becomes the ``code`` argument.

Search outputs (``parse_search_output``), tried in this order:
    JSON / Python-literal lists   DR-Venus ``[{"query", "web_page_info_list": [{"title", "url", "snippet"}]}]``,
                                  DeepResearcher ``[{'search_query', 'web_page_info_list': [{'title', 'url',
                                  'quick_summary'}]}]``, and a bare list of ``{"title", "url", ...}`` hits
    CaRR browser blocks           ``[i] Title: ...`` / ``[i] URL Source: ...`` / ``[i] Description: ...`` /
                                  ``[i] Date: ...`` (0-based i), blocks separated by blank lines
    Serper / Tongyi text          per query "A Google search for 'q' found N results: ## Web Results" then
                                  ``k. [title](url)`` items (optional "Date published:" / "Source:" lines, then
                                  the snippet); queries joined by ``=======``
    DeepDive text                 ``【k】title`` / url / snippet
    Search-R1 passages            ``Doc k(Title: t) text`` (no URL: the Wikipedia URL of the title is used)

Page outputs (``parse_page_outputs``): Jina Reader text (``Title:`` / ``URL Source:`` / ``Markdown Content:``),
the Tongyi visit frame ("The useful information in URL for user goal G as follows: Evidence in page: ...
Summary: ...", pages joined by ``=======``; the URL may contain spaces), DeepResearcher's ``[{'url',
'information': [{'page_number', 'page_summary'}]}]``. ``page_failure`` decides, the same way for every format and
from the whole output of each page, whether the agent was shown the page (timeouts, tool errors, HTTP errors,
pages that do not exist, blocked pages, empty pages all count as not opened).
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

from .kilt import url_for_title


class ToolTextError(ValueError):
    pass


# ------------------------------------------------------------------------------------------------ relaxed JSON
_FENCE = re.compile(r"^\s*```(?:json|python|json5)?\s*(.*?)\s*```\s*$", re.DOTALL)
_PY_CONSTANTS = re.compile(r"\b(true|false|null)\b")


def _python_literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    # JSON constants inside an otherwise Python-looking literal (strings are left alone: literal_eval would
    # otherwise fail on them first)
    swapped = _PY_CONSTANTS.sub(lambda m: {"true": "True", "false": "False", "null": "None"}[m.group(1)], text)
    return ast.literal_eval(swapped)


def _close_truncated(text: str) -> str:
    """Append the closing quotes/brackets a cut-off JSON text is missing."""
    stack, in_str, esc, quote = [], False, False, ""
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                in_str = False
        elif ch in "\"'":
            in_str, quote = True, ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    tail = (quote if in_str else "") + "".join(reversed(stack))
    return text.rstrip().rstrip(",") + tail if tail else text


def parse_relaxed(text: str):
    """Strict JSON, then JSON5, then a Python literal, then the same with a cut-off tail closed."""
    t = text.strip()
    m = _FENCE.match(t)
    if m:
        t = m.group(1)
    if not t:
        raise ToolTextError("empty text")
    errors = []
    for candidate in (t, _close_truncated(t)):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as e:
            errors.append(f"json: {e.msg}")
        try:
            import json5

            return json5.loads(candidate)
        except ImportError:
            pass
        except Exception as e:  # json5 raises ValueError subclasses and sometimes others on odd input
            errors.append(f"json5: {e}")
        try:
            return _python_literal(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            errors.append(f"python literal: {type(e).__name__}")
    raise ToolTextError("not JSON, JSON5 or a Python literal (" + "; ".join(errors[:3]) + ")")


# ------------------------------------------------------------------------------------------------ tool calls
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
_CODE = re.compile(r"<code>(.*?)(?:</code>|\Z)", re.DOTALL)


@dataclass
class RawCall:
    name: str
    arguments: dict
    call_id: str | None = None


def after_think(content: str) -> str:
    """The part of an assistant content after its reasoning (``</think>``), or all of it when there is none."""
    return content.rsplit("</think>", 1)[-1]


def tool_call_blocks(content: str) -> list[str]:
    """Bodies of the ``<tool_call>`` blocks after the reasoning; an unclosed last block is included."""
    return [b.strip() for b in _TOOL_CALL_BLOCK.findall(after_think(content)) if b.strip()]


def normalise_call(obj, where: str = "tool call") -> RawCall:
    """{"name", "arguments"} (arguments possibly a JSON string), or {"function": {...}} -> RawCall."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict) and "name" not in obj:
        call_id = obj.get("id") or obj.get("tool_call_id")
        obj = {**obj["function"], "id": call_id}
    if not isinstance(obj, dict):
        raise ToolTextError(f"{where} is not an object: {str(obj)[:120]}")
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str) or not name.strip():
        raise ToolTextError(f"{where} has no tool name: {str(obj)[:120]}")
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        args = parse_relaxed(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolTextError(f"arguments of {name!r} are not an object: {str(args)[:120]}")
    call_id = obj.get("id") or obj.get("tool_call_id")
    return RawCall(name.strip(), args, str(call_id) if call_id else None)


def parse_call_block(block: str) -> RawCall:
    code = _CODE.search(block)
    head = block[: code.start()] if code else block
    try:
        obj = parse_relaxed(head)
    except ToolTextError:
        if code is None:
            raise
        obj = {"name": "PythonInterpreter", "arguments": {}}
    call = normalise_call(obj)
    if code is not None:
        call.arguments.setdefault("code", code.group(1).strip())
    return call


# ------------------------------------------------------------------------------------------------ outputs
_TOOL_RESPONSE = re.compile(r"<tool_response>(.*?)(?:</tool_response>|(?=<tool_response>)|\Z)", re.DOTALL)


def tool_response_blocks(content: str) -> list[str] | None:
    """Bodies of ``<tool_response>`` blocks in a user turn, or None when the turn has none."""
    if "<tool_response>" not in content:
        return None
    return [b.strip("\n") for b in _TOOL_RESPONSE.findall(content)]


# ------------------------------------------------------------------------------------------------ failed fetches
# Whether a page-opening call (CaRR browser.open, LiteResearcher / DR-Venus visit, DeepResearcher browse_webpage,
# any open/visit of an imported log) really showed the agent a page is decided here, for every format, from the
# whole output of that page: tool servers report a failure in their own words, reader proxies prepend a warning,
# and the Tongyi summariser states it anywhere in its evidence or, often, only in its closing "Summary:" (a
# Wikipedia page that does not exist comes back as 7,000 characters of the wiki's "no article" page, followed by a
# summary saying "the page returns a 404 error"). Each rule names the state of the fetched page itself (a status
# code next to "error"/"forbidden", "does not exist" about the page, "you've been blocked", "content is empty"),
# never a topic word alone, so a page *about* blocked deals or HTTP errors still counts as read.
_FAILURE_PATTERNS: dict[str, tuple[str, ...]] = {  # kind -> alternatives (regular expressions, case-insensitive)
    "timeout": (
        r"tool execution timed out", r"timed out after \d+ ?(?:s\b|sec|seconds)",
        r"(?:request|read|connection) timed out", r"timeout error"),
    "http error": (
        r"target url returned error \d{3}", r"\b(?:error|status(?: code)?)\s*:?\s*[45]\d\d\b",
        r"\b[45]\d\d\s*(?:error|forbidden|not found|unauthorized|too many requests|gone\b|bad gateway"
        r"|service unavailable|internal server error)",
        r"\bcustom ?404\b", r"[45]\d\d\s*错误"),
    "not found": (
        r"view the content page \(page does not exist\)", r"does not have an article with this exact name",
        r"there is currently no text in this page", r"wikipedia error message",
        r"浏览条目正文（页面不存在）", r"没有与上述标题相同的条目", r"条目不存在",
        r"\bno (?:wikipedia )?(?:article|page|entry) (?:exists|titled|named|for|under|with)\b",
        # "the page ... does not exist", but not a red link's "Foo (page does not exist)"
        r"(?<!\()\b(?:page|article|webpage|entry)\b[^.\n]{0,120}?\b(?:does not|doesn't|did not|no longer) exists?\b",
        r"\bmarked as non-existent", r"\bpage (?:was |could )?not (?:be )?found", r"page cannot be found"),
    "blocked": (
        r"you(?:'ve| have) been blocked", r"blocked by network security", r"\baccess denied\b",
        r"access to\b[^.\n]{0,80}?\b(?:has been|is|was) (?:blocked|denied)",
        r"verif(?:y|ication of) (?:that )?(?:you are )?(?:a )?human", r"\bcaptcha\b",
        r"attention required! \| cloudflare", r"checking your browser", r"enable javascript and cookies to continue",
        r"are you a robot", r"unusual traffic from your",
        # a wall instead of the page, as the summariser describes it
        r"\b(?:page|webpage|content|it) (?:is|serves as) (?:only |merely )?an? (?:privacy |cookie )?"
        r"(?:login|sign-in|consent|paywall)\b[\w ,-]{0,40}?\b(?:interface|page|banner|wall|screen|form|notice)"),
    "tool error": (
        r"failed to extract", r"(?:page |webpage |file )?content could not be (?:processed|accessed)",
        r"could not be accessed", r"file parsing failed", r"summary failed", r"failed to parse url content",
        r"\[visit\] failed to read page", r"no url found for the given id", r"no result with id",
        r"invalid (?:link )?id", r"too short or could not be fully loaded", r"server_error", r"length_limit_error",
        r"failed to (?:open|fetch)", r"error fetching", r"forbidden string found"),
    "empty page": (
        r"\bcontent (?:field )?(?:is|was|appears to be) (?:empty|blank|missing)", r"no webpage content was provided",
        r"content was not provided", r"\b(?:page|webpage) (?:is|was|appears to be) (?:empty|blank)",
        r"improperly loaded", r"lack of loaded content", r"\"content\"\s*:\s*\"\""),
}
_FAILURE_RULES = tuple((kind, re.compile("|".join(alternatives), re.IGNORECASE))
                       for kind, alternatives in _FAILURE_PATTERNS.items())


def find_page_failure(text: str) -> tuple[str, re.Match] | None:
    """(kind, match) of the first failure rule that the text matches, or None."""
    for kind, pattern in _FAILURE_RULES:
        m = pattern.search(text)
        if m:
            return kind, m
    return None


def page_failure(text: str) -> str | None:
    """Why the fetch of one page failed, judged from its whole output ("<kind>: <evidence>", kinds: timeout, http
    error, not found, blocked, tool error, empty page), or None when the agent was shown the page."""
    body = text.strip()
    if not body:
        return "empty page: no output"
    found = find_page_failure(body)
    return f"{found[0]}: {found[1].group(0).strip()[:80]}" if found else None


def tool_failure(text: str) -> str | None:
    """A tool output that is itself an error message (a search that returned no results block, an unknown id)."""
    head = text.strip()[:400]
    if head.casefold().startswith(("error:", "error -", "[error]")):
        return "tool error: " + head[:120]
    return page_failure(text)


def _hit(rank: int, title, url, snippet, date=None) -> dict | None:
    if not isinstance(url, str) or not url.strip():
        return None
    hit = {"rank": rank, "title": str(title or "").strip(), "url": url.strip(), "snippet": str(snippet or "").strip()}
    if date:
        hit["date"] = str(date).strip()
    return hit


def _from_structured(obj) -> list[tuple[str | None, list[dict]]] | None:
    """DR-Venus / DeepResearcher per-query lists, or one bare list of hits."""
    if isinstance(obj, dict):
        for key in ("results", "result", "organic", "web_page_info_list", "data"):
            if isinstance(obj.get(key), list):
                query = obj.get("query") or obj.get("search_query")
                inner = _from_structured(obj[key])
                if inner is None:
                    return None
                return [(query if isinstance(query, str) else q, hits) for q, hits in inner]
        return None
    if not isinstance(obj, list):
        return None
    if all(isinstance(x, dict) and isinstance(x.get("web_page_info_list"), list) for x in obj) and obj:
        groups = []
        for x in obj:
            q = x.get("query", x.get("search_query"))
            hits = [_hit(i, h.get("title"), h.get("url") or h.get("link"), h.get("snippet") or h.get("quick_summary")
                         or h.get("description") or h.get("content"), h.get("date"))
                    for i, h in enumerate(x["web_page_info_list"]) if isinstance(h, dict)]
            groups.append((q if isinstance(q, str) else None, [h for h in hits if h]))
        return groups
    if all(isinstance(x, dict) for x in obj):
        hits = [_hit(i, h.get("title"), h.get("url") or h.get("link"), h.get("snippet") or h.get("quick_summary")
                     or h.get("description") or h.get("contents") or h.get("text"), h.get("date"))
                for i, h in enumerate(obj)]
        hits = [h for h in hits if h]
        return [(None, hits)] if hits or not obj else None
    if all(isinstance(x, list) for x in obj):  # one list of hits per query
        groups = [_from_structured(x) for x in obj]
        if all(g is not None for g in groups):
            return [g[0] if g else (None, []) for g in groups]
    return None


_CARR_LINE = re.compile(r"^\[(\d+)\]\s*(Title|URL Source|URL|Description|Snippet|Date|Published Time):\s?(.*)$")


def _from_carr_blocks(text: str) -> list[dict] | None:
    entries: dict[int, dict] = {}
    last = None
    for line in text.splitlines():
        m = _CARR_LINE.match(line.strip())
        if m:
            i, field, value = int(m.group(1)), m.group(2), m.group(3)
            entry = entries.setdefault(i, {})
            key = {"URL Source": "url", "URL": "url", "Description": "snippet", "Snippet": "snippet",
                   "Published Time": "date"}.get(field, field.lower())
            entry[key] = value.strip()
            last = (i, key)
        elif last and line.strip() and last[1] == "snippet":
            entries[last[0]]["snippet"] += " " + line.strip()
    if not entries:
        return None
    hits = [_hit(i, e.get("title"), e.get("url"), e.get("snippet"), e.get("date")) for i, e in sorted(entries.items())]
    return [h for h in hits if h]


_QUERY_HEADER = re.compile(r"(?:A (?:Google |Bing |web )?search for|Search results for|Query:)\s*['\"‘“]?(.*?)['\"’”]?"
                           r"\s*(?:found \d+ results?|returned|:|\n)", re.IGNORECASE)
_MD_ITEM = re.compile(r"^\s*(\d+)\.\s*\[(.*?)\]\((\S+?)\)\s*$", re.MULTILINE)


def _from_markdown(text: str) -> list[tuple[str | None, list[dict]]] | None:
    groups = []
    for chunk in re.split(r"\n\s*={5,}\s*\n", text):
        items = list(_MD_ITEM.finditer(chunk))
        header = _QUERY_HEADER.search(chunk[: items[0].start()] if items else chunk[:300])
        query = header.group(1).strip() if header else None
        hits = []
        for j, m in enumerate(items):
            body = chunk[m.end(): items[j + 1].start() if j + 1 < len(items) else len(chunk)]
            date, snippet_lines = None, []
            for line in body.strip().splitlines():
                low = line.strip().lower()
                if low.startswith("date published:"):
                    date = line.split(":", 1)[1].strip()
                elif low.startswith("source:"):
                    continue
                elif line.strip():
                    snippet_lines.append(line.strip())
            h = _hit(int(m.group(1)) - 1, m.group(2), m.group(3), " ".join(snippet_lines), date)
            if h:
                hits.append(h)
        if items or header:
            groups.append((query, hits))
    return groups or None


_DEEPDIVE_ITEM = re.compile(r"【(\d+)】\s*(.*?)\n\s*(https?://\S+)\s*\n(.*?)(?=\n\s*【\d+】|\Z)", re.DOTALL)
_SEARCH_R1_DOC = re.compile(r"Doc\s*(\d+)\s*\(Title:\s*(.*?)\)\s*(.*?)(?=\n?\s*Doc\s*\d+\s*\(Title:|\Z)", re.DOTALL)


def _from_deepdive(text: str) -> list[dict] | None:
    items = [_hit(int(m.group(1)) - 1, m.group(2), m.group(3), m.group(4)) for m in _DEEPDIVE_ITEM.finditer(text)]
    items = [h for h in items if h]
    return items or None


def search_r1_passages(text: str) -> list[dict] | None:
    """``Doc k(Title: t) text`` passages; the URL is the Wikipedia URL of the title (the corpus is Wikipedia)."""
    out = []
    for m in _SEARCH_R1_DOC.finditer(text):
        title = m.group(2).strip().strip('"')
        if title:
            out.append({"rank": int(m.group(1)) - 1, "title": title, "url": url_for_title(title),
                        "snippet": m.group(3).strip()[:400]})
    return out or None


def parse_search_output(text: str) -> list[tuple[str | None, list[dict]]]:
    """[(query or None, hits)] per query block of a search tool's output; [] when nothing parses."""
    body = text.strip()
    if body[:1] in "[{":
        try:
            groups = _from_structured(parse_relaxed(body))
        except ToolTextError:
            groups = None
        if groups is not None:
            return groups
    hits = _from_carr_blocks(body)
    if hits is not None:
        return [(None, hits)]
    groups = _from_markdown(body)
    if groups and any(h for _, h in groups):
        return groups
    hits = _from_deepdive(body)
    if hits:
        return [(None, hits)]
    hits = search_r1_passages(body)
    if hits:
        return [(None, hits)]
    return groups or []


# ------------------------------------------------------------------------------------------------ pages
@dataclass
class PageOutput:
    url: str | None
    title: str | None
    text: str
    text_kind: str  # page_markdown | llm_summary | page_summaries | passage
    error: str | None = None


_JINA_FIELD = re.compile(r"^(Title|URL Source|Published Time|Warning):\s?(.*)$", re.MULTILINE)
# the URL is everything up to " for user goal": agents pass URLs with spaces in them ("Global_Health_ Estimates")
_VISIT_HEAD = re.compile(r"The useful information in\s+(.+?)\s+for user goal(.*?)as follows:", re.DOTALL)


def _jina_page(text: str) -> PageOutput | None:
    if "URL Source:" not in text[:2000] and "Markdown Content:" not in text[:2000]:
        return None
    fields = {m.group(1): m.group(2).strip() for m in _JINA_FIELD.finditer(text[:2000])}
    cut = text.find("Markdown Content:")
    body = text[cut + len("Markdown Content:"):].strip() if cut >= 0 else text
    failure = page_failure(text) if body.strip() else "empty page: no Markdown Content"
    return PageOutput(fields.get("URL Source"), fields.get("Title"), body, "page_markdown", failure)


def _visit_frames(text: str) -> list[PageOutput] | None:
    heads = list(_VISIT_HEAD.finditer(text))
    if not heads:
        return None
    out = []
    for j, m in enumerate(heads):
        body = text[m.end(): heads[j + 1].start() if j + 1 < len(heads) else len(text)]
        body = re.sub(r"\n\s*={5,}\s*$", "", body.strip()).strip()
        content = re.sub(r"(?im)^\s*(?:Evidence in page|Summary):\s*", "", body).strip()
        out.append(PageOutput(m.group(1).strip(), None, body, "llm_summary",
                              page_failure(body) if content else "empty page: no evidence and no summary"))
    return out


def _deepresearcher_pages(obj) -> list[PageOutput] | None:
    """DeepResearcher's browse output: ``[{url, information: [{page_number, page_summary}]}]``; the reading agent
    may list a URL more than once (one entry per pass), so entries of one URL are merged, in first-seen order."""
    if not (isinstance(obj, list) and obj and all(isinstance(x, dict) and "url" in x for x in obj)):
        return None
    merged: dict[str, dict] = {}
    for x in obj:
        info = x.get("information") or []
        parts = ([str(p.get("page_summary", "")) for p in info if isinstance(p, dict)] if isinstance(info, list)
                 else [str(info)])
        entry = merged.setdefault(str(x["url"]), {"title": x.get("title"), "parts": [], "errors": []})
        entry["parts"] += [p for p in parts if p]
        if x.get("error"):
            entry["errors"].append(str(x["error"]))
    out = []
    for url, e in merged.items():
        text = "\n".join(e["parts"])
        # an empty information list is a page read before (the reading agent does not repeat itself) or one with
        # nothing relevant: opened either way; only a reported error or a failure statement makes it unread
        failure = (f"tool error: {e['errors'][0]}" if e["errors"] and not text else
                   page_failure(text) if text.strip() else None)
        out.append(PageOutput(url, e["title"], text, "page_summaries", failure))
    return out


def parse_page_outputs(text: str) -> list[PageOutput]:
    """The page(s) an open/visit/browse output shows, in order; one error page when it failed outright."""
    body = text.strip()
    if body[:1] == "[":
        try:
            pages = _deepresearcher_pages(parse_relaxed(body))
        except ToolTextError:
            pages = None
        if pages is not None:
            return pages
    frames = _visit_frames(body)
    if frames is not None:
        return frames
    jina = _jina_page(body)
    if jina is not None:
        return [jina]
    return [PageOutput(None, None, body, "passage", page_failure(body))]


_MATCH = re.compile(r"^\[Match \d+\]", re.MULTILINE)


def count_find_matches(text: str) -> int:
    return len(_MATCH.findall(text))
