"""Trajectory importers: other search agents' files, as the agents publish them -> the unified trajectory record
(trajectory.py). Checked against excerpts of the published files (tests/fixtures/published, PROVENANCE.md there).

Accepted input formats (``--format``; ``auto`` decides per record):

``carr``            CaRR / DeepDive-4B-SFT slime dumps (CaRR's ``deepsearch_rm_with_rubrics/browsecomp_example.json``):
                    ``history`` (or ``metadata.history``, or ``messages``) with assistant ``reasoning_content`` /
                    ``content`` / ``tool_calls`` (``{name, arguments}`` with arguments as a JSON string, or OpenAI
                    ``{function: {...}}``), ``truncated_content`` / ``aborted_content`` / ``ill_formed_content`` for
                    cut turns, and ``tool`` turns whose content is a list of ``{tool_call_id, output}``; values may be
                    wrapped in one-element lists. Tools ``browser.search{query, num}``, ``browser.open{id | url}``
                    (an integer is a 0-based index into the latest results), ``browser.find{pattern}``. Citations:
                    ``[[n](url)]`` in the final answer before "## References" (parentheses inside the URL balanced,
                    urls.numbered_citations); only URLs that appeared in some tool output count. Verdict: the
                    record's ``rewards``.
``literesearcher``  LiteResearcher inference records (``question``, ``answer``, ``messages``, ``prediction``,
                    ``termination``, ``judge``), also inside ``{"metadata", "records": [...]}``, and its case viewer
                    files (``docs/cases/cases/<Benchmark>.json``: ``{"benchmark", "cases": [{id, question,
                    reference_answer, final_answer, judge_correct, judge_verdict, steps: [...]}]}``, steps of type
                    question / assistant (``think``, parsed ``tool_calls``, ``answer``) / tool_response):
                    ``<tool_call>`` JSON in assistant text, ``<tool_response>`` user turns, ``search{query: [...]}``
                    with Serper-style text results, ``visit{url: [...], goal}`` with the evidence/summary frame.
                    Verdict: ``judge_correct`` or ``judge.correct``; question ids are "<benchmark>:<id>".
``dr-venus``        DR-Venus inference / SFT ``{question, messages, gt}`` / RL ``{request_id, sample_idx, messages,
                    finished}`` records: the same protocol, search results as a JSON list ``[{query,
                    web_page_info_list: [...]}]``. No verdict of its own; RL rollouts carry no gold answer.
``deepresearcher``  DeepResearcher rollouts ``{idx, question, message_str}``: one rendered ChatML string;
                    ``web_search{query: [...]}`` / ``browse_webpage{url_list: [...]}``, outputs as Python-literal
                    lists. Only URLs of the latest search are read by that agent, so others do not count as opened.
                    (The repository publishes no rollout file; its signal/ hand-off buffers show the tool formats.)
``search-r1``       Search-R1 transcripts: ``<search>q</search>`` calls with ``<information>Doc k(Title: t) ...
                    </information>`` results inside one assistant stream, as a rendered string, messages, or a
                    plain ChatML text file of several conversations (its ``example/case.txt``).
``longtrace``       the project's own trajectory records (validated and passed through).

Files (``input_kind``, decided from the content): JSONL (one record a line; rejects name the line), one JSON
document (a list of records, or an object with ``records`` / ``cases`` / ``data`` / ``trajectories`` /
``samples``; rejects name the record's position), or ChatML text (each ``<|im_start|>system`` starts a record;
rejects name its first line).

What is tolerated: a missing ``<think>`` or ``</think>``, relaxed JSON / JSON5 / Python-literal arguments
(tool_text.py), a string where a list is expected, URLs with spaces, several calls in one turn (each paired with
its output by ``tool_call_id`` or by order; calls without output are recorded as errors), outputs in a ``tool``
turn or in ``<tool_response>`` blocks of a user turn, truncated final turns (termination ``truncated``; a
transcript whose last turn closed its ``<answer>`` but shows no end token is finished), unknown tools (recorded as
``tool`` events). Tool names map to search / open / find through ``TOOL_KINDS``. Whether an open showed the agent
a page is decided by tool_text.page_failure from the whole output of that page, the same way for every format:
timeouts, tool errors, HTTP errors, pages that do not exist, blocked pages and empty pages have ``ok: false`` and
an ``error`` "<kind>: <evidence>", and do not count as opened.

Verdicts: a record's own verdict is used when it has one (``_record_verdict``); otherwise import_files judges the
final answer against the gold answer, and a record without a gold answer gets no verdict (``correct`` None,
``verdict.status`` "no_gold"), which is not the same as a wrong answer.

A record that cannot be read (no conversation, no question, not an object, an unknown format, a malformed field)
raises ``ImportFailed`` with a short ``reason`` and the ``field``; the CLI writes it to the rejects file with the
file name and position, and prints the counts per reason.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from reward.normalize import normalize
from reward.rule_judge import extract_answer

from .agent_formats import extract_citations
from .tool_text import (RawCall, ToolTextError, after_think, count_find_matches, normalise_call,
                        parse_call_block, parse_page_outputs, parse_search_output, tool_call_blocks,
                        tool_failure, tool_response_blocks)
from .trajectory import SCHEMA, stats, url_key

INPUT_FORMATS = ("auto", "longtrace", "carr", "literesearcher", "dr-venus", "deepresearcher", "search-r1")
TRAJECTORY_FORMAT = {"carr": "carr", "literesearcher": "react", "dr-venus": "react",
                     "deepresearcher": "deepresearcher", "search-r1": "search-r1"}
CITING_FORMATS = frozenset({"carr"})
TOOL_KINDS = {
    **dict.fromkeys(("browser.search", "search", "web_search", "google_search", "bing_search", "wiki_search",
                     "wikipedia_search", "retrieve", "search_engine", "serper_search"), "search"),
    **dict.fromkeys(("browser.open", "open", "visit", "browse_webpage", "browse", "open_url", "open_page", "fetch",
                     "read_page", "click", "get_document", "web_parser", "jina_read"), "open"),
    **dict.fromkeys(("browser.find", "find", "find_in_page"), "find"),
}
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant", "function": "tool",
                "observation": "tool", "ipython": "tool", "tool_response": "tool"}
MAX_OPEN_TEXT = 20_000  # characters of an opened page kept in the open event (raw pages only)


class ImportFailed(ValueError):
    """A record that cannot be turned into a trajectory. ``reason`` is the short cause the import summary counts
    ("no conversation", "no question", "bad field" ...); ``field`` names the offending field when there is one."""

    def __init__(self, message: str, reason: str | None = None, field: str | None = None):
        super().__init__(message if field is None or field in message else f"field {field!r}: {message}")
        self.reason = reason or message.split(" (")[0].split(":")[0][:60]
        self.field = field


@dataclass
class Turn:
    role: str
    content: str = ""
    reasoning: str = ""
    native_calls: list = field(default_factory=list)
    outputs: list | None = None  # tool turns: [(call_id or None, text)]
    cut: bool = False  # a truncated, aborted or ill-formed assistant turn


# ------------------------------------------------------------------------------------------------ reading files
DOCUMENT_KEYS = ("records", "cases", "data", "trajectories", "samples")


_CONVERSATION_KEYS = ("history", "messages", "conversations", "conversation", "trajectory", "steps", "message_str",
                      "transcript", "response")


def _document_records(doc) -> list | None:
    """The records of a JSON document: the document itself when it is a list, the list under one of
    DOCUMENT_KEYS of an object that is not itself a record, else None."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and not any(k in doc for k in _CONVERSATION_KEYS):
        key = next((k for k in DOCUMENT_KEYS if isinstance(doc.get(k), list)), None)
        if key is not None:
            return doc[key]
    return None


def input_kind(path: str | Path) -> str:
    """"jsonl" (one record a line), "json" (one document, over several lines or on one line) or "transcript"
    (rendered ChatML text, e.g. Search-R1's example/case.txt), decided from the content, whatever the extension."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line)
                if len(lines) == 2:
                    break
    first = lines[0] if lines else ""
    head = first.lstrip()
    if head.startswith("<|im_start|>"):
        return "transcript"
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        return "json" if head[:1] in "[{" else "jsonl"
    return "json" if len(lines) == 1 and _document_records(obj) is not None else "jsonl"


_CONVERSATION_START = re.compile(r"^<\|im_start\|>system\b", re.MULTILINE)


def _transcripts(path: Path) -> Iterator[tuple[int, Any]]:
    """One record ``{"transcript": text}`` per conversation of a ChatML text file (a new one starts at each
    ``<|im_start|>system``; without a system turn the whole file is one), positioned by its first line."""
    text = path.read_text(encoding="utf-8")
    starts = [m.start() for m in _CONVERSATION_START.finditer(text)] or [len(text) - len(text.lstrip())]
    if text[:starts[0]].strip():
        starts.insert(0, 0)
    for j, a in enumerate(starts):
        chunk = text[a: starts[j + 1] if j + 1 < len(starts) else len(text)]
        if chunk.strip():
            yield text.count("\n", 0, a) + 1, {"transcript": chunk.strip()}


def iter_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(position, record or exception): JSONL line numbers, 1-based positions inside one JSON document (a list,
    or a list under one of DOCUMENT_KEYS, e.g. LiteResearcher's viewer ``{"benchmark", "cases": [...]}``), or the
    first line of each conversation of a ChatML transcript file."""
    path = Path(path)
    kind = input_kind(path)
    if kind == "transcript":
        yield from _transcripts(path)
        return
    if kind == "jsonl":
        from reward.jsonl import read_jsonl

        yield from read_jsonl(path)
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        yield e.lineno, e
        return
    records = _document_records(doc)
    doc = records if records is not None else [doc] if isinstance(doc, dict) else doc
    if not isinstance(doc, list):
        yield 1, ImportFailed("a JSON document must be a list of records or hold one under "
                              + "/".join(repr(k) for k in DOCUMENT_KEYS), reason="not a list of records")
        return
    yield from enumerate(doc, 1)


def count_records(path: str | Path) -> int | None:
    """Records in a file, cheaply: JSONL lines, transcript conversations; None for a JSON document (unknown)."""
    kind = input_kind(path)
    if kind == "json":
        return None
    if kind == "transcript":
        return max(1, len(_CONVERSATION_START.findall(Path(path).read_text(encoding="utf-8"))))
    from reward.jsonl import count_lines

    return count_lines(path)


def position_label(path: str | Path) -> str:
    """What a record position counts in this file: "line" (JSONL, transcripts) or "record" (a JSON document)."""
    return "record" if input_kind(path) == "json" else "line"


def _unwrap(value):
    """CaRR's example file wraps every value in a one-element list."""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, str, int, float)):
        value = value[0]
    return value


def _text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict):
                parts.append(str(p.get("text", p.get("output", p.get("content", "")))))
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False)


def _message_turns(messages: list, key: str = "messages") -> list[Turn]:
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ImportFailed(f"is a {type(m).__name__}, not an object", reason="bad field", field=f"{key}[{i}]")
        role = str(m.get("role", m.get("from", ""))).lower()
        role = ROLE_ALIASES.get(role, role)
        content = m.get("content", m.get("value"))
        turn = Turn(role, _text(content), str(m.get("reasoning_content") or m.get("reasoning") or ""))
        if role == "assistant":
            if not turn.content.strip() and not m.get("tool_calls"):
                for key in ("truncated_content", "aborted_content", "ill_formed_content"):
                    if m.get(key):
                        turn.content, turn.cut = _text(m[key]), True
                        break
            calls = m.get("tool_calls") or ([m["function_call"]] if m.get("function_call") else [])
            turn.native_calls = list(calls) if isinstance(calls, list) else []
        elif role == "tool":
            if isinstance(content, list) and content and all(isinstance(x, dict) for x in content):
                turn.outputs = [(x.get("tool_call_id"), _text(x.get("output", x.get("content", x.get("text")))))
                                for x in content]
            else:
                blocks = tool_response_blocks(turn.content)
                turn.outputs = [(m.get("tool_call_id"), b) for b in (blocks if blocks is not None else [turn.content])]
        turns.append(turn)
    return turns


_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)", re.DOTALL)


def _chatml_turns(text: str) -> list[Turn]:
    """Turns of a rendered ChatML string. A last assistant turn without ``<|im_end|>`` is cut off, unless it
    closed an ``<answer>``: decoded generations (Search-R1's transcripts) stop at ``</answer>`` and never show
    the end token."""
    turns = [Turn(role, body) for role, body in _CHATML.findall(text)]
    if turns and turns[-1].role == "assistant" and "<|im_end|>" not in text[text.rfind("<|im_start|>"):]:
        turns[-1].cut = "</answer>" not in after_think(turns[-1].content)
    return turns


def _viewer_turns(steps: list) -> list[Turn]:
    """LiteResearcher's case viewer (docs/cases/cases/<Benchmark>.json): ``steps`` of type "question" (the user
    turn), "assistant" (``think``, ``tool_calls`` already parsed as ``{name: "search", queries}`` or ``{name:
    "visit", urls, goal}``, ``answer``) and "tool_response" (``content``: the ``<tool_response>`` block(s))."""
    turns = []
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            raise ImportFailed(f"is a {type(step).__name__}, not an object", reason="bad field", field=where)
        kind = step.get("type")
        if kind in ("question", "user"):
            turns.append(Turn("user", _text(step.get("content"))))
        elif kind in ("tool_response", "tool"):
            content = _text(step.get("content"))
            turns.append(Turn("user", content) if "<tool_response>" in content
                         else Turn("tool", outputs=[(None, content)]))
        elif kind == "assistant":
            calls = step.get("tool_calls") or []
            if not isinstance(calls, list):
                raise ImportFailed("is not a list", reason="bad field", field=f"{where}.tool_calls")
            native = []
            for j, call in enumerate(calls):
                if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                    raise ImportFailed("has no tool name", reason="bad field", field=f"{where}.tool_calls[{j}]")
                args = {k: v for k, v in call.items() if k != "name"}
                for shown, real in (("queries", "query"), ("urls", "url")):  # the viewer's names for the arguments
                    if shown in args and real not in args:
                        args[real] = args.pop(shown)
                native.append({"name": call["name"], "arguments": args})
            think, answer = _text(step.get("think")), step.get("answer")
            content = (f"<think>\n{think}\n</think>\n" if think else "") + (
                f"<answer>{_text(answer)}</answer>" if answer not in (None, "") else _text(step.get("content")))
            turns.append(Turn("assistant", content, native_calls=native))
        else:
            raise ImportFailed(f"is {kind!r}, expected question, assistant or tool_response", reason="bad field",
                               field=f"{where}.type")
    return turns


_INLINE_OUTPUT = re.compile(r"<(information|observation)>(.*?)(?:</\1>|\Z)", re.DOTALL)


def _split_inline_outputs(turns: list[Turn]) -> list[Turn]:
    """Search-R1 / DeepDive streams: ``<information>`` or ``<observation>`` blocks inside one assistant turn
    become tool turns between the assistant segments."""
    out = []
    for t in turns:
        if t.role != "assistant" or not _INLINE_OUTPUT.search(t.content):
            out.append(t)
            continue
        pos = 0
        for m in _INLINE_OUTPUT.finditer(t.content):
            out.append(Turn("assistant", t.content[pos:m.start()]))
            out.append(Turn("tool", outputs=[(None, m.group(2).strip())]))
            pos = m.end()
        rest = t.content[pos:]
        if rest.strip():
            out.append(Turn("assistant", rest, cut=t.cut))
    return out


def conversation(record: dict) -> list[Turn]:
    for key in ("history", "messages", "conversations", "conversation", "trajectory"):
        value = _unwrap(record.get(key))
        if isinstance(value, list) and value:
            return _split_inline_outputs(_message_turns(value, key))
    meta = record.get("metadata")
    if isinstance(meta, dict) and isinstance(_unwrap(meta.get("history")), list):
        return _split_inline_outputs(_message_turns(_unwrap(meta["history"]), "metadata.history"))
    steps = record.get("steps")
    if isinstance(steps, list) and steps:
        return _viewer_turns(steps)
    for key in ("message_str", "transcript", "sequences_str", "full_text"):
        value = _unwrap(record.get(key))
        if isinstance(value, str) and value.strip():
            return _split_inline_outputs(_chatml_turns(value) or [Turn("assistant", value)])
    prompt, response = _unwrap(record.get("prompt")), _unwrap(record.get("response", record.get("output")))
    if isinstance(response, str) and response.strip():
        text = (prompt if isinstance(prompt, str) else "") + response
        if "<|im_start|>" in text:  # a rendered prompt ending in the generation prompt, plus the generation
            return _split_inline_outputs(_chatml_turns(text))
        user = [Turn("user", prompt)] if isinstance(prompt, str) and prompt.strip() else []
        return _split_inline_outputs(user + [Turn("assistant", response)])
    raise ImportFailed("no conversation found (looked for history, messages, conversations, steps, message_str, "
                       "transcript, response)", reason="no conversation")


# ------------------------------------------------------------------------------------------------ fields
def _first(record: dict, *keys):
    for k in keys:
        v = _unwrap(record.get(k))
        if v not in (None, "", []):
            return v
    return None


_CARR_SUFFIX = ("## Explanation with Citations", "Explanation with Citations", "## Exact Answer")


def clean_question(text: str) -> str:
    """The question inside a user turn: after the last "Question:", before an answer-format request."""
    t = text
    i = t.rfind("Question:")
    if i >= 0:
        t = t[i + len("Question:"):]
    for marker in _CARR_SUFFIX:
        j = t.find(marker)
        if j >= 0:
            k = t.rfind("\n\n", 0, j)
            t = t[:k] if k >= 0 else t[:j]
    return t.strip()


def _gold_answer(record: dict) -> str | None:
    v = _first(record, "gold_answer", "answer", "label", "gt", "ground_truth", "golden_answers", "reference_answer",
               "target")
    if v is None and isinstance(record.get("reward_model"), dict):
        gt = record["reward_model"].get("ground_truth")
        v = gt.get("target") if isinstance(gt, dict) else gt
    if isinstance(v, list):
        v = next((x for x in v if isinstance(x, (str, int, float))), None)
    return str(v) if isinstance(v, (str, int, float)) and str(v).strip() else None


def _verdict(correct: bool | None, score: float | None, status: str, judge: str | None = None,
             error: str | None = None, extracted: str | None = None) -> dict:
    """The verdict record: ``status`` is "from_record" (the agent's own judge or reward), "judged" (our judge),
    "no_gold" (nothing to compare with: correct is None, not False), "no_answer" (a gold answer but no final
    answer: wrong), "judge_error" (the judge failed: correct False, ``error`` says why) or "unjudged" (a gold answer
    but no judge to ask: correct None)."""
    return {"correct": correct, "score": score, "extracted": extracted, "judge": judge, "error": error,
            "status": status}


_VERDICT_WORDS = {"correct": True, "yes": True, "true": True, "incorrect": False, "wrong": False, "no": False,
                  "false": False}


def _record_verdict(record: dict) -> dict | None:
    """The verdict the record already carries, or None. Looked for, in order: a boolean ``correct`` /
    ``is_correct`` / ``judge_correct`` (LiteResearcher's viewer), ``judge.correct`` / ``verdict.correct``
    (LiteResearcher inference files), a ``judge_verdict`` word ("CORRECT", "INCORRECT"), a numeric
    ``outcome_reward`` / ``acc`` / ``accuracy``, then CaRR's ``rewards`` (the reward server's value: outcome reward,
    or (1 - λ)·outcome + λ·rubric with λ <= 0.5, so above 0.5 is a correct answer, below is a wrong one and exactly
    0.5 decides nothing)."""
    def found(correct: bool, score: float, source: str) -> dict:
        return _verdict(bool(correct), float(score), "from_record", judge=f"record:{source}")

    for key in ("correct", "is_correct", "judge_correct"):
        v = _unwrap(record.get(key))
        if isinstance(v, bool):
            return found(v, float(v), key)
    for key in ("judge", "verdict"):
        v = record.get(key)
        if isinstance(v, dict) and isinstance(v.get("correct"), bool):
            return found(v["correct"], float(v["correct"]), f"{key}.correct")
    word = _unwrap(record.get("judge_verdict"))
    if isinstance(word, str) and word.strip().lower() in _VERDICT_WORDS:
        ok = _VERDICT_WORDS[word.strip().lower()]
        return found(ok, float(ok), "judge_verdict")
    for key in ("outcome_reward", "acc", "accuracy", "rewards", "reward"):
        v = _unwrap(record.get(key))
        source = key
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict):
            v = v[0]
        if isinstance(v, dict) and isinstance(v.get("outcome_reward"), (int, float)):
            v, source = v["outcome_reward"], f"{key}.outcome_reward"
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0.5:
            return found(v > 0.5, float(v), source)
    return None


def _termination(record: dict, final_found: bool, last_cut: bool) -> str:
    t = _first(record, "termination", "finish_reason", "status")
    if isinstance(t, str):
        return t
    if record.get("task_unfinished") in (True, [True]) or record.get("finished") is False or last_cut:
        return "truncated"
    return "answer" if final_found else "truncated"


# ------------------------------------------------------------------------------------------------ detection
def detect_format(record: dict, turns: list[Turn]) -> str:
    if record.get("schema") == SCHEMA:
        return "longtrace"
    names, blob = set(), []
    for t in turns:
        for c in t.native_calls:
            if isinstance(c, dict):
                names.add(str(c.get("name") or (c.get("function") or {}).get("name") or ""))
        if t.role == "assistant":
            for b in tool_call_blocks(t.content)[:4]:
                m = re.search(r"[\"']name[\"']\s*:\s*[\"']([^\"']+)", b)
                if m:
                    names.add(m.group(1))
            blob.append(t.content[-4000:])
        if t.outputs:
            blob.extend(o[:2000] for _, o in t.outputs[:2])
        elif t.role in ("user", "tool"):
            blob.append(t.content[:2000])
    text = "\n".join(blob)
    if any(n.startswith("browser.") for n in names):
        return "carr"
    if names & {"web_search", "browse_webpage"}:
        return "deepresearcher"
    if "<search>" in text:
        return "search-r1"
    if "web_page_info_list" in text:
        return "dr-venus"
    if names & {"search", "visit"} or "<tool_call>" in text:
        return "literesearcher"
    raise ImportFailed("format not recognised (no browser.*, web_search, search/visit tool calls or <search> tags)",
                       reason="format not recognised")


# ------------------------------------------------------------------------------------------------ the walk
def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") and s.endswith("]"):  # a list written as a string
            try:
                from .tool_text import parse_relaxed

                parsed = parse_relaxed(s)
                if isinstance(parsed, list):
                    return parsed
            except ToolTextError:
                pass
    return [value]


class _Walk:
    """Replays a conversation's tool calls against their outputs and records the unified events."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.events: list[dict] = []
        self.results: list[dict] = []  # hits of the latest search call
        self.page: tuple[str, str] | None = None  # (url, text) open now
        self.searched: set[str] = set()
        self.seen: set[str] = set()  # URLs that appeared in any tool output (results or opened pages)
        self.parse_errors = 0

    def error(self, turn: int, message: str) -> None:
        self.events.append({"type": "error", "turn": turn, "message": message})

    def calls(self, turn_no: int, turn: Turn) -> list[RawCall]:
        calls = []
        for raw in turn.native_calls:
            try:
                calls.append(normalise_call(raw))
            except ToolTextError as e:
                self.parse_errors += 1
                self.error(turn_no, f"unparseable tool call: {e}")
        if not turn.native_calls:
            for block in tool_call_blocks(turn.content):
                try:
                    calls.append(parse_call_block(block))
                except ToolTextError as e:
                    self.parse_errors += 1
                    self.error(turn_no, f"unparseable tool call: {e}: {block[:160]}")
            for q in re.findall(r"<search>(.*?)</search>", after_think(turn.content), re.DOTALL):
                calls.append(RawCall("search", {"query": q.strip()}))
        return calls

    def apply(self, turn: int, call: RawCall, output: str | None) -> None:
        kind = TOOL_KINDS.get(call.name.lower().removeprefix("functions."))
        if kind is None:
            self.events.append({"type": "tool", "turn": turn, "name": call.name})
            return
        if output is None:
            self.error(turn, f"{call.name} call has no tool output (not executed or cut off)")
            return
        getattr(self, f"_{kind}")(turn, call, output)

    def _search(self, turn: int, call: RawCall, output: str) -> None:
        a = call.arguments
        queries = [str(q) for q in _as_list(a.get("query", a.get("queries", a.get("q", a.get("keywords")))))]
        groups = parse_search_output(output)
        err = None if groups else (tool_failure(output) or "search output not understood")
        if len(groups) != len(queries) and queries and groups:
            labelled = {normalize(g[0] or "", "unicode"): g for g in groups}
            groups = [labelled.get(normalize(q, "unicode"), (q, [])) for q in queries] if all(
                g[0] for g in groups) else groups + [(None, [])] * (len(queries) - len(groups))
        pairs = list(zip(queries, groups)) if queries else [(g[0] or "", g) for g in groups]
        if not pairs:
            pairs = [(q, (q, [])) for q in queries] or [("", ("", []))]
        self.results = []
        for query, (_, hits) in pairs:
            event = {"type": "search", "turn": turn, "query": query,
                     "results": [{k: h[k] for k in ("rank", "title", "url", "snippet")} for h in hits]}
            if err:
                event["error"] = err
            self.events.append(event)
            self.results.extend(hits)
            for h in hits:
                key = url_key(h["url"])
                self.searched.add(key)
                self.seen.add(key)

    def _open(self, turn: int, call: RawCall, output: str) -> None:
        a = call.arguments
        key = next((k for k in ("id", "url", "urls", "url_list", "link_id", "link", "docid") if k in a), None)
        targets = []
        for x in _as_list(a.get(key)) if key else []:
            if isinstance(x, bool):
                continue
            if isinstance(x, int) or (isinstance(x, str) and x.strip().isdigit() and key in ("id", "link_id")):
                idx = int(x) - (1 if key == "link_id" else 0)
                if 0 <= idx < len(self.results):
                    targets.append((self.results[idx]["url"], "id", self.results[idx].get("title")))
                else:
                    targets.append((None, "id", f"no result with id {x} in the latest search"))
            elif isinstance(x, str) and x.strip():
                targets.append((x.strip(), "url", None))
        if not targets:
            self.error(turn, f"{call.name} call names no page")
            return
        pages = parse_page_outputs(output)
        by_url = {url_key(p.url): p for p in pages if p.url}
        latest = {url_key(h["url"]) for h in self.results}
        for j, (url, requested_as, note) in enumerate(targets):
            if url is None:
                self.events.append({"type": "open", "turn": turn, "url": "", "title": None, "requested_as": requested_as,
                                    "ok": False, "text_kind": None, "chars": 0, "error": note})
                continue
            key_u = url_key(url)
            page = by_url.get(key_u)
            if page is None:  # pair by order; one output without a URL (a timeout, an error) answers every target
                page = (pages[j] if len(pages) == len(targets) else pages[0] if len(targets) == 1
                        or (len(pages) == 1 and pages[0].url is None) else None)
            error = page.error if page else "no output for this page"
            if page is not None and not error and not page.text.strip() and page.text_kind != "page_summaries":
                error = "empty page"
            if self.fmt == "deepresearcher" and key_u not in latest:
                error = "not in the latest search results (the agent only reads those)"
            event = {"type": "open", "turn": turn, "url": url,
                     "title": (page.title if page and page.title else note if requested_as == "id" else None),
                     "requested_as": requested_as, "ok": error is None,
                     "text_kind": page.text_kind if page else None, "chars": len(page.text) if page else 0,
                     "error": error}
            if key_u not in self.searched:
                event["unsearched"] = True
            if error is None:
                event["text"] = page.text[:MAX_OPEN_TEXT]
                self.page = (url, page.text)
                self.seen.add(key_u)
            self.events.append(event)

    def _find(self, turn: int, call: RawCall, output: str) -> None:
        a = call.arguments
        pattern = a.get("pattern", a.get("query", a.get("keyword", "")))
        self.events.append({"type": "find", "turn": turn, "pattern": str(pattern),
                            "url": self.page[0] if self.page else None, "matches": count_find_matches(output)})


def _final_answer(final_text: str) -> str | None:
    body = after_think(final_text)
    tags = re.findall(r"<answer>(.*?)(?:</answer>|\Z)", body, re.DOTALL)
    if tags and tags[-1].strip():
        answer = tags[-1].strip()
        bold = re.fullmatch(r"(\*\*|__)([^*_\n]+)\1", answer)  # "<answer>**2018**</answer>" (DR-Venus)
        return bold.group(2).strip() if bold else answer
    return extract_answer(body)


def _question_id(record: dict, question: str, known: dict | None) -> tuple[str, dict | None]:
    rid = _first(record, "question_id", "qid", "id", "idx", "index", "request_id", "uid")
    if known is not None:
        if rid is not None and str(rid) in known["by_id"]:
            return str(rid), known["by_id"][str(rid)]
        q = known["by_text"].get(normalize(question, "unicode"))
        if q is not None:
            return q["question_id"], q
    if rid is not None:
        bench = record.get("benchmark")  # LiteResearcher's viewer numbers cases per benchmark
        return (f"{bench}:{rid}" if isinstance(bench, str) and bench.strip() else str(rid)), None
    return "q-" + hashlib.sha1(normalize(question, "unicode").encode()).hexdigest()[:12], None


def load_known_questions(path: str | Path) -> dict:
    """Question records (questions.jsonl) indexed by id and by normalised text, to attach imports to them."""
    from reward.jsonl import read_jsonl

    by_id, by_text = {}, {}
    for _, q in read_jsonl(path):
        if isinstance(q, dict) and isinstance(q.get("question_id"), str) and isinstance(q.get("question"), str):
            by_id[q["question_id"]] = q
            by_text[normalize(q["question"], "unicode")] = q
    return {"by_id": by_id, "by_text": by_text}


def import_record(record: Any, fmt: str = "auto", agent: str | None = None, known: dict | None = None,
                  source: str = "input", counters: dict | None = None) -> dict:
    """One input record -> a unified trajectory. ``verdict`` (and ``correct``) is the record's own when it has one,
    else None (import_files judges the final answer, or records "no_gold"). Raises ImportFailed."""
    if not isinstance(record, dict):
        raise ImportFailed(f"a record must be a JSON object, got {type(record).__name__}", reason="not an object")
    if fmt == "longtrace" or (fmt == "auto" and record.get("schema") == SCHEMA):
        return _own_record(record)
    turns = conversation(record)
    if fmt == "auto":
        fmt = detect_format(record, turns)
    if fmt not in TRAJECTORY_FORMAT:
        raise ImportFailed(f"unknown format {fmt!r}", reason="unknown format")
    question = _first(record, "question", "query", "problem")
    if not isinstance(question, str):
        user = next((t.content for t in turns if t.role == "user" and tool_response_blocks(t.content) is None), None)
        question = clean_question(user) if user else None
    if not question:
        raise ImportFailed("no question found (no 'question' field and no user turn)", reason="no question")
    question = clean_question(question) if "Question:" in question or "Explanation with Citations" in question else question.strip()
    qid, known_q = _question_id(record, question, known)

    walk, messages = _Walk(fmt), []
    pending: list[list] = []  # [call, output or None] of the latest assistant turn, applied in call order

    def flush() -> None:
        for call, output in pending:
            walk.apply(turn_no, call, output)
        pending.clear()

    turn_no, last_assistant = -1, None
    for t in turns:
        if t.role == "assistant":
            flush()
            turn_no += 1
            pending.extend([c, None] for c in walk.calls(turn_no, t))
            last_assistant = (t, bool(pending))
            msg = {"role": "assistant", "content": t.content}
            if t.reasoning:
                msg["reasoning_content"] = t.reasoning
            if t.native_calls:
                msg["tool_calls"] = t.native_calls
            messages.append(msg)
            continue
        blocks = tool_response_blocks(t.content) if t.role != "tool" else None
        outputs = t.outputs if t.role == "tool" else ([(None, b) for b in blocks] if blocks is not None else None)
        if outputs is None:
            messages.append({"role": t.role, "content": t.content})
            continue
        messages.append({"role": "user", "content": "\n".join(f"<tool_response>\n{o}\n</tool_response>" for _, o in outputs)})
        for call_id, text in outputs:
            waiting = [p for p in pending if p[1] is None]
            if not waiting:
                walk.error(max(turn_no, 0), "tool output without a pending call")
                continue
            slot = next((p for p in waiting if call_id and p[0].call_id == call_id), waiting[0])
            slot[1] = text
    flush()

    final_text, final_found = "", False
    if last_assistant is not None and not last_assistant[1] and not last_assistant[0].cut:
        final_text = last_assistant[0].content
        final_found = True
    answer = _final_answer(final_text) if final_text else None
    if answer is None:
        pred = _first(record, "prediction", "final_answer", "pred")
        answer = str(pred).strip() if isinstance(pred, (str, int, float)) and str(pred).strip() else None
    events = walk.events
    citations = extract_citations(after_think(final_text)) if final_text else []
    if final_found or answer is not None:
        events.append({"type": "answer", "turn": max(turn_no, 0), "text": answer, "citations": [u for _, u in citations]})
    for label, url in citations:
        events.append({"type": "cite", "turn": max(turn_no, 0), "url": url, "number": label,
                       "seen": url_key(url) in walk.seen})

    gold = _gold_answer(record) or (known_q or {}).get("answer")
    if counters is None:
        counters = {}
    sample = _first(record, "sample_index", "sample_idx", "sample_id")
    if not isinstance(sample, int):
        sample = counters.get((qid, source), 0)
        counters[(qid, source)] = sample + 1
    agent = agent or fmt
    own_verdict = _record_verdict(record)
    return {
        "schema": SCHEMA, "trajectory_id": f"{qid}#{agent}@{source}:{sample}", "question_id": qid,
        "sample_index": sample, "agent": agent, "format": TRAJECTORY_FORMAT[fmt], "source_format": fmt,
        "question": question, "gold_answer": gold,
        "gold_urls": [p["url"] for p in (known_q or {}).get("gold_pages", [])],
        "messages": messages, "events": events, "final_text": final_text, "final_answer": answer,
        "citations": [u for _, u in citations], "has_citations": fmt in CITING_FORMATS,
        "termination": _termination(record, final_found, bool(last_assistant and last_assistant[0].cut)),
        "turns": turn_no + 1, "parse_errors": walk.parse_errors, "stats": stats(events),
        "verdict": own_verdict, "correct": own_verdict["correct"] if own_verdict else None,
    }


_REQUIRED = ("trajectory_id", "question_id", "question", "events")


def _own_record(record: dict) -> dict:
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ImportFailed(f"a {SCHEMA} record needs {', '.join(missing)}", reason="incomplete longtrace record",
                           field=missing[0])
    if not isinstance(record["events"], list) or not all(isinstance(e, dict) and "type" in e for e in record["events"]):
        raise ImportFailed("must be a list of objects with a 'type'", reason="incomplete longtrace record",
                           field="events")
    return record


# ------------------------------------------------------------------------------------------------ files
def _position(path: Path, label: str, pos: int) -> str:
    return f"{path.name} {label} {pos}"


async def import_files(inputs: list[Path], output: Path, fmt: str = "auto", agent: str | None = None,
                       known: dict | None = None, judge=None, rejects_path: Path | None = None, resume: bool = True,
                       on_record=lambda: None, workers: int = 8) -> dict:
    """Import records from ``inputs`` into the trajectory JSONL ``output`` (append-only, keyed by trajectory_id;
    finished ids are skipped on a rerun). A record keeps its own verdict when it has one (``_record_verdict``);
    otherwise ``judge`` compares its final answer with the gold answer. Without a gold answer there is no verdict:
    ``correct`` is None and ``verdict.status`` "no_gold" (it is not counted as wrong). Unreadable records go to the
    rejects file (``{line, error, raw}``; the error names the file, the line or record position and the field).

    Returns counts: imported, skipped, rejected, correct / wrong / no_gold / judge_errors, judged, by_format,
    ``reasons`` ({reason: count} of the rejects) and ``examples`` ({reason: first "file line|record N: error"})."""
    import asyncio

    from reward.jsonl import Rejects, ResumableOutput

    out = ResumableOutput(output, key_field="trajectory_id", resume=resume)
    counts = {"imported": 0, "skipped": 0, "rejected": 0, "correct": 0, "wrong": 0, "no_gold": 0, "judge_errors": 0,
              "judged": 0, "by_format": {}, "reasons": {}, "examples": {}}
    sem = asyncio.Semaphore(max(1, workers))

    async def finish(t: dict) -> None:
        v = t.get("verdict")
        if v is None:
            if not t.get("gold_answer"):
                v = _verdict(None, None, "no_gold", error="no gold answer")
            elif t.get("final_answer") is None or not (t.get("final_text") or t.get("final_answer")):
                v = _verdict(False, 0.0, "no_answer", error="no final answer")
            elif judge is None:
                v = _verdict(None, None, "unjudged", error="no judge given")
            else:
                async with sem:
                    j = await judge.judge(t["question"], t["gold_answer"], t["final_text"] or t["final_answer"])
                v = _verdict(bool(j.correct and not j.error), j.score, "judge_error" if j.error else "judged",
                             judge=judge.name, error=j.error, extracted=j.extracted)
                counts["judged"] += 1
            t["verdict"] = v
        t["correct"] = v.get("correct")
        out.write(t)
        counts["imported"] += 1
        key = {True: "correct", False: "wrong", None: "no_gold"}[t["correct"]]
        counts[key] += 1  # "unjudged" (no judge given) is counted with no_gold: no verdict either way
        counts["judge_errors"] += v.get("status") == "judge_error"
        name = t.get("source_format", t.get("format"))
        counts["by_format"][name] = counts["by_format"].get(name, 0) + 1

    def reject(where: str, reason: str, message: str, raw) -> None:
        rejects.add(pos, f"{where}: {message}", raw)
        counts["rejected"] += 1
        counts["reasons"][reason] = counts["reasons"].get(reason, 0) + 1
        counts["examples"].setdefault(reason, f"{where}: {message}")

    rejects = Rejects(rejects_path or output.with_suffix(".rejects.jsonl"), ", ".join(str(p) for p in inputs))
    for path in inputs:
        counters: dict = {}
        pending: set = set()
        label = position_label(path)
        for pos, rec in iter_records(path):
            on_record()
            where = _position(path, label, pos)
            if isinstance(rec, json.JSONDecodeError):  # in a JSON document, the position is the line of the error
                reject(_position(path, "line", pos), "invalid JSON", f"not valid JSON: {rec.msg} at column {rec.colno}",
                       rec.doc if label == "line" else "")
                continue
            if isinstance(rec, ImportFailed):
                reject(where, rec.reason, str(rec), "")
                continue
            try:
                t = import_record(rec, fmt, agent, known, source=path.stem, counters=counters)
            except ImportFailed as e:
                reject(where, e.reason, str(e), rec)
                continue
            except ToolTextError as e:
                reject(where, "unreadable tool text", str(e), rec)
                continue
            if t["trajectory_id"] in out.done:
                counts["skipped"] += 1
                continue
            pending.add(asyncio.create_task(finish(t)))
            if len(pending) >= 4 * max(1, workers):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.gather(*pending)
    out.close()
    rejects.close()
    counts["rejects_file"] = str(rejects.path) if counts["rejected"] else None
    return counts
