"""The unified trajectory record: one search-agent attempt at one question, whatever agent or format produced it.

Field by field (docs/data_gen.md has the same list):

    schema            "longtrace.trajectory/v1"
    trajectory_id     "<question_id>#<sample_index>"
    question_id, sample_index
    agent             who acted: "scripted", or "llm:<model>"
    format            tool protocol: "carr" (browser.search/open/find, citations) or "react" (search/visit, <answer>)
    question, gold_answer, gold_urls (the walk's pages)
    messages          the chat as the model saw it ({"role", "content"} dicts; assistant turns may carry
                      "reasoning_content" and "tool_calls")
    events            normalised actions, in order (below)
    final_text        the last assistant content; final_answer: the extracted short answer (or null)
    citations         cited URLs in order of first citation (CaRR format; empty for formats without citations)
    termination       answer | max_turns | context_limit | llm_error
    turns, parse_errors
    verdict           {"correct", "score", "extracted", "judge", "error"} from the reward package's outcome judge;
                      imports add "status": from_record (the agent's own verdict), judged, no_gold, no_answer,
                      judge_error
    correct           verdict.correct: false when the judge failed (verdict.error says why), None when there is
                      no gold answer to compare with (imports: verdict.status "no_gold"), which is not "wrong"

Events (each has "type" and "turn", the 0-based assistant turn that caused it):

    search  query, results: [{"rank", "title", "url", "snippet"}], error (when the backend failed)
    open    url, title, requested_as ("id" | "url"), ok, text_kind ("page_markdown" | "page_excerpt"),
            chars (length shown to the agent), error
    find    pattern, url (the page searched), matches (count)
    answer  text (final answer), citations
    cite    url, number (the citation's label), seen (whether the URL appeared in a search result or an open);
            an unseen citation does not count as cited
    error   message (a tool call that could not be parsed or run)
    tool    name (imports only: a tool that is neither search, open nor find, e.g. a code interpreter)

Imported trajectories (importers.py) add ``source_format`` (the input format), ``has_citations`` (whether the
agent writes citations; when false, tiers.py infers them), ``text`` in successful open events (the page or
summary the agent saw, at most 20,000 characters) and ``unsearched`` on opens of URLs no search returned.

Tier candidates (issue 5 computes final tiers from these records): tier 1 = opened (ok) and not cited,
tier 2 = seen in search results, never opened, not cited; both exclude the gold pages. ``tier_candidates``
pools them over a question's (correct) trajectories.
"""
from __future__ import annotations

from typing import Iterable

from .urls import canonical_url

SCHEMA = "longtrace.trajectory/v1"


def url_key(url: str) -> str:
    """Canonical form for set operations (urls.canonical_url): Wikipedia URLs by title, reader prefixes,
    fragments, tracking parameters, http/https, mobile hosts and trailing slashes normalised away."""
    return canonical_url(url)


def document_roles(traj: dict) -> dict[str, list[str]]:
    """Canonical URLs the agent saw in results, opened successfully, and cited (each in order of first use)."""
    roles: dict[str, list[str]] = {"searched": [], "opened": [], "cited": []}
    seen: dict[str, set] = {k: set() for k in roles}

    def add(role: str, url: str) -> None:
        key = url_key(url)
        if key not in seen[role]:
            seen[role].add(key)
            roles[role].append(key)

    for e in traj.get("events", []):
        if e["type"] == "search":
            for r in e.get("results", []):
                add("searched", r["url"])
        elif e["type"] == "open" and e.get("ok"):
            add("opened", e["url"])
        elif e["type"] == "cite" and e.get("seen", True):  # a URL no tool output showed is not a citation
            add("cited", e["url"])
    return roles


def tier_candidates(trajectories: Iterable[dict], gold_urls: Iterable[str] = (), correct_only: bool = True) -> dict:
    """Pooled tier-1 (opened, not cited) and tier-2 (searched, never opened, not cited) URLs, gold excluded."""
    gold = {url_key(u) for u in gold_urls}
    searched, opened, cited = [], [], set()
    for t in trajectories:
        if correct_only and not t.get("correct"):
            continue
        roles = document_roles(t)
        searched += roles["searched"]
        opened += roles["opened"]
        cited.update(roles["cited"])
    opened_set = set(opened)
    tier1 = list(dict.fromkeys(u for u in opened if u not in cited and u not in gold))
    tier2 = list(dict.fromkeys(u for u in searched if u not in opened_set and u not in cited and u not in gold))
    return {"tier1": tier1, "tier2": tier2, "cited": sorted(cited)}


def stats(events: list[dict]) -> dict:
    count = lambda kind: sum(1 for e in events if e["type"] == kind)  # noqa: E731
    return {"searches": count("search"), "opens": count("open"),
            "opens_ok": sum(1 for e in events if e["type"] == "open" and e.get("ok")),
            "finds": count("find"), "cites": count("cite"), "errors": count("error")}
