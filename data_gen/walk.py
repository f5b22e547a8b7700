"""DeepDive-style random walks over the hyperlink graph.

At each node the page's resolved links are shuffled and scanned for up to ``max_candidates`` (5) candidates:
not visited yet, not the current page, more than 3 outgoing links (``min_out`` = 4), not a disambiguation
page. One candidate is taken as is; among several a chooser picks: the heuristic chooser (default, offline)
or an LLM through any OpenAI-compatible endpoint (temperature ~0.2, reply parsed as a number, first candidate
when the reply does not parse or the endpoint fails after its retries; both are recorded in the walk).

The path is cut into subpaths of ``k`` = 8 pages; a subpath is kept when it has >= ``min_unique`` (7) unique
pages. Between subpaths a "mad walk" takes 2-4 uniformly random hops (up to 20 attempts, one more hop after
each failure) to land on an unvisited page with > 3 links, so the next subpath starts in another region.
A dead end discards the current subpath and restarts from a random page visited earlier. Each seed page walks
with its own RNG (``seed``, seed page), so the output is deterministic for a seed whatever ``--workers`` is.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Protocol

from .chat import ChatClient, ChatError
from .kilt import url_for_title
from .store import Store


@dataclass
class WalkConfig:
    k: int = 8  # pages per subpath
    min_unique: int = 7
    max_candidates: int = 5
    min_out: int = 4  # "more than 3 outgoing links"
    mad_min_hops: int = 2
    mad_max_hops: int = 4
    mad_attempts: int = 20
    walks_per_seed: int = 4
    max_steps: int = 4096
    max_visited: int = 4096

    def check(self) -> "WalkConfig":
        if self.k < 2 or not 1 <= self.min_unique <= self.k:
            raise ValueError(f"need k >= 2 and 1 <= min_unique <= k (k={self.k}, min_unique={self.min_unique})")
        if self.max_candidates < 1 or self.mad_min_hops < 1 or self.mad_max_hops < self.mad_min_hops:
            raise ValueError("need max_candidates >= 1 and 1 <= mad_min_hops <= mad_max_hops")
        return self


@dataclass
class Candidate:
    pid: int
    title: str
    anchor: str
    n_out: int


@dataclass
class Choice:
    index: int
    fallback: str | None = None  # why the first candidate was taken instead of a chosen one


class Chooser(Protocol):
    name: str

    async def choose(self, store: Store, current: int, candidates: list[Candidate], rng: random.Random) -> Choice: ...


class HeuristicChooser:
    """Prefers candidates that link back (a typed, two-way relation rather than a passing mention) and have a
    middling number of links (hubs such as countries make vague hops); a seeded random term breaks ties."""

    name = "heuristic"

    async def choose(self, store: Store, current: int, candidates: list[Candidate], rng: random.Random) -> Choice:
        def score(c: Candidate) -> float:
            back = any(dst == current for dst, _ in store.out_links(c.pid))
            return 2.0 * back - 0.5 * abs(math.log(c.n_out) - math.log(12)) + rng.random()

        scores = [score(c) for c in candidates]
        return Choice(max(range(len(candidates)), key=scores.__getitem__))


CHOOSER_SYSTEM = "You choose the next stop of a walk through an encyclopedia. Reply with one number and nothing else."
CHOOSER_PROMPT = """The walk is on this page:

Title: {title}
{text}

Pages it can move to next:
{candidates}

Which one has the most specific, meaningful connection to the current page (a relation a reader could \
follow, not a passing mention)? Reply with its number only."""
_NUMBER = re.compile(r"\d+")


class LLMChooser:
    name = "llm"

    def __init__(self, client: ChatClient, current_chars: int = 600, candidate_chars: int = 200):
        self.client, self.current_chars, self.candidate_chars = client, current_chars, candidate_chars

    def prompt(self, store: Store, current: int, candidates: list[Candidate]) -> list[dict]:
        page = store.page(current)
        lines = []
        for i, c in enumerate(candidates, 1):
            cp = store.page(c.pid)
            first = next((p for p in cp.paragraphs[1:] if p and not p.startswith("Section::::")), "")
            lines.append(f"{i}. {c.anchor} ({c.title}): {first[: self.candidate_chars]}")
        text = page.text()[: self.current_chars]
        return [{"role": "system", "content": CHOOSER_SYSTEM},
                {"role": "user", "content": CHOOSER_PROMPT.format(title=page.title, text=text, candidates="\n".join(lines))}]

    async def choose(self, store: Store, current: int, candidates: list[Candidate], rng: random.Random) -> Choice:
        try:
            reply = await self.client.complete(self.prompt(store, current, candidates))
        except ChatError as e:
            return Choice(0, f"llm error: {e}")
        found = _NUMBER.search(reply.content.rsplit("</think>", 1)[-1])
        if found and 1 <= int(found.group()) <= len(candidates):
            return Choice(int(found.group()) - 1)
        return Choice(0, f"unparseable reply {reply.content[:80]!r}")


@dataclass
class _State:
    visited: set = field(default_factory=set)
    order: list = field(default_factory=list)

    def visit(self, pid: int) -> None:
        if pid not in self.visited:
            self.visited.add(pid)
            self.order.append(pid)


def candidates_for(store: Store, current: int, state: _State, cfg: WalkConfig, rng: random.Random) -> list[Candidate]:
    links, seen = [], set()
    for dst, anchor in store.out_links(current):
        if dst not in seen:
            seen.add(dst)
            links.append((dst, anchor))
    rng.shuffle(links)
    found = []
    for dst, anchor in links:
        if dst == current or dst in state.visited:
            continue
        node = store.node(dst)
        if node is None or node[2] or node[1] < cfg.min_out:
            continue
        found.append(Candidate(dst, node[0], anchor, node[1]))
        if len(found) >= cfg.max_candidates:
            break
    return found


def mad_walk(store: Store, start: int, state: _State, cfg: WalkConfig, rng: random.Random) -> tuple[int | None, int]:
    """(landing page, hops) after random hops to an unvisited page with enough links; (None, 0) on failure."""
    hops = rng.randint(cfg.mad_min_hops, cfg.mad_max_hops)
    for _ in range(cfg.mad_attempts):
        cur, path = start, []
        for _ in range(hops):
            options = [d for d, _ in store.out_links(cur) if d not in state.visited and d not in path and d != cur
                       and not (store.node(d) or ("", 0, True))[2]]
            if not options:
                break
            cur = rng.choice(options)
            path.append(cur)
        if len(path) == hops and store.node(cur)[1] >= cfg.min_out:
            for p in path:
                state.visit(p)
            return cur, hops
        hops += 1
    return None, 0


def _node_record(store: Store, pid: int, anchor: str | None) -> dict:
    title = store.node(pid)[0]
    return {"pid": pid, "title": title, "url": url_for_title(title), "anchor": anchor}


async def walk_from_seed(store: Store, seed_pid: int, cfg: WalkConfig, chooser: Chooser, seed: int) -> list[dict]:
    """Up to ``cfg.walks_per_seed`` subpaths starting from one seed page."""
    rng = random.Random(f"walk:{seed}:{seed_pid}")
    state = _State()
    state.visit(seed_pid)
    walks: list[dict] = []
    current, path, choices, mad_hops, steps, fallbacks = seed_pid, [(seed_pid, None)], [], 0, 0, 0
    while len(walks) < cfg.walks_per_seed and steps < cfg.max_steps and len(state.visited) < cfg.max_visited:
        steps += 1
        cands = candidates_for(store, current, state, cfg, rng)
        if not cands:  # dead end: drop this subpath, restart from a random page seen earlier
            restart = rng.choice(state.order)
            current, path, choices, mad_hops = restart, [(restart, None)], [], 0
            continue
        choice = Choice(0) if len(cands) == 1 else await chooser.choose(store, current, cands, rng)
        fallbacks += choice.fallback is not None
        picked = cands[choice.index]
        choices.append({"step": len(path), "candidates": len(cands), "picked": choice.index,
                        "fallback": choice.fallback})
        state.visit(picked.pid)
        path.append((picked.pid, picked.anchor))
        current = picked.pid
        if len(path) < cfg.k:
            continue
        unique = len({p for p, _ in path})
        if unique >= cfg.min_unique:
            walks.append({
                "walk_id": f"w{seed}-{seed_pid}-{len(walks)}", "seed_page": store.node(seed_pid)[0],
                "chooser": chooser.name, "nodes": [_node_record(store, p, a) for p, a in path],
                "unique_pages": unique, "choices": choices, "mad_walk_hops_before": mad_hops,
            })
        landing, hops = mad_walk(store, current, state, cfg, rng)
        if landing is None:
            landing, hops = rng.choice(state.order), 0
        current, path, choices, mad_hops = landing, [(landing, None)], [], hops
    return walks


def pick_seeds(store: Store, n: int, seed: int, titles: list[str] | None = None, min_out: int = 4) -> list[int]:
    """Seed pages: the named titles (resolved; unknown ones raise), else ``n`` random walkable pages."""
    if titles:
        pids = []
        for t in titles:
            pid = store.resolve_title(t)
            if pid is None:
                raise ValueError(f"seed page not found in the store: {t!r}")
            pids.append(pid)
        return pids
    pool = store.walkable_pids(min_out)
    if not pool:
        raise ValueError("the store has no page with enough outgoing links to walk from")
    random.Random(f"seeds:{seed}").shuffle(pool)  # a prefix of the same order for any n: more seeds extend a run
    return pool[:n]
