"""Chain questions from walks: an LLM writer (any OpenAI-compatible endpoint) and an offline template writer.

Both produce the LongTraceRL shape: a "Start with ... Move to ..." question that needs every hop of the walk,
a short unique answer (an attribute or the name of the last page's entity), and the rubric: the gold entities
along the chain, in order (the final answer is not a rubric item when it is the last entity's name). Each
record keeps the walk's pages (the gold documents) with their titles and URLs.

Validation (both modes): the answer is not in the question, no page name of the chain is in the question
(names must be paraphrased), every rubric entity occurs in its gold page (the reward package's entity matcher),
the answer occurs in the last page, and length limits hold. The LLM writer is asked again with the problems
listed when a reply fails validation; a walk that never yields a valid question is recorded as a failure.

The template writer needs the typed facts of the synthetic world (``synthetic`` in each record) and is
deterministic for a walk.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from reward.normalize import normalize_bytes
from reward.rubric import Entity, EntityMatcher

from .chat import ChatClient, ChatError
from .store import Store, StoredPage
from .synth_world import century as _century
from .synth_world import decade as _decade

GENERATOR_VERSION = "v1"


class QuestionError(ValueError):
    """No valid question for this walk (the message says why)."""


@dataclass
class QuestionLimits:
    max_question_chars: int = 1500
    min_question_chars: int = 40
    max_answer_chars: int = 120
    min_rubric: int = 3
    allow_names: bool = False  # skip the "no chain page name in the question" check


def display_name(title: str) -> str:
    """"Lars Ekholm (producer)" -> "Lars Ekholm"; "Varholm, Ostland" stays (a comma is part of the name)."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip() or title


def _norm(text: str) -> bytes:
    return b" " + normalize_bytes(text, "unicode") + b" "


def _contains(haystack: bytes, needle: str) -> bool:
    n = normalize_bytes(needle, "unicode")
    return bool(n) and (b" " + n + b" ") in haystack


def page_text(page: StoredPage) -> str:
    return page.title + "\n" + page.text()


def validate(question: str, answer: str, rubric: list[dict], pages: list[StoredPage], limits: QuestionLimits,
             answer_is_last_name: bool = False) -> list[str]:
    """Problems with a candidate question (empty list = valid). ``rubric`` items: {"entity", "page" (0-based)}."""
    problems = []
    if not limits.min_question_chars <= len(question) <= limits.max_question_chars:
        problems.append(f"question length {len(question)} is outside {limits.min_question_chars}-{limits.max_question_chars} characters")
    if not answer.strip() or len(answer) > limits.max_answer_chars:
        problems.append(f"answer must be 1-{limits.max_answer_chars} characters")
    q = _norm(question)
    if answer.strip() and _contains(q, answer):
        problems.append(f"the answer {answer!r} appears in the question")
    if not limits.allow_names:
        for p in pages:
            name = display_name(p.title)
            if len(name) >= 4 and _contains(q, name):
                problems.append(f"the question names a page of the chain ({name!r}); describe it instead")
    last = _norm(page_text(pages[-1]))
    if answer.strip() and not answer_is_last_name and not _contains(last, answer):
        problems.append(f"the answer {answer!r} does not occur in the last page ({pages[-1].title!r})")
    if len(rubric) < min(limits.min_rubric, len(pages)):
        problems.append(f"the rubric needs at least {min(limits.min_rubric, len(pages))} entities, got {len(rubric)}")
    for item in rubric:
        idx, entity = item.get("page"), item.get("entity")
        if not isinstance(idx, int) or not 0 <= idx < len(pages) or not isinstance(entity, str) or not entity.strip():
            problems.append(f"bad rubric item {item!r}")
            continue
        if not EntityMatcher([Entity(entity)], mode="unicode").score_text(page_text(pages[idx])).score:
            problems.append(f"rubric entity {entity!r} does not occur in its page {pages[idx].title!r}")
    return problems


def question_record(walk: dict, question: str, answer: str, rubric: list[dict], pages: list[StoredPage], mode: str,
                    **extra) -> dict:
    return {
        "question_id": walk["walk_id"], "walk_id": walk["walk_id"], "mode": mode, "question": question,
        "answer": answer, "rubric": [r["entity"] for r in rubric],
        "rubric_pages": [pages[r["page"]].title for r in rubric],
        "gold_pages": [{"pid": p.pid, "title": p.title, "url": p.url} for p in pages],
        "answer_page": pages[-1].title, "generator_version": GENERATOR_VERSION, **extra,
    }


def walk_pages(store: Store, walk: dict) -> list[StoredPage]:
    pages = []
    for node in walk.get("nodes") or []:
        page = store.page(node["pid"]) if isinstance(node.get("pid"), int) else None
        if page is None or page.title != node.get("title"):
            page = store.page_by_title(node.get("title", ""))
        if page is None:
            raise QuestionError(f"walk page {node.get('title')!r} is not in the store")
        pages.append(page)
    if len(pages) < 2:
        raise QuestionError("a walk needs at least two pages")
    return pages


# ------------------------------------------------------------------------------------------------ template
def describe(facts: dict) -> str:
    """An indirect description of a synthetic entity (no name, no exact date)."""
    a, t = facts["attrs"], facts["type"]
    if t == "person":
        return f"a {a['occupation']} born in {_decade(a['born'])}"
    if t == "city":
        return f"a city founded in {_century(a['founded'])} with roughly {round(a['population'], -4) // 1000:,} thousand inhabitants"
    if t == "country":
        return f"a country of about {a['population_m']} million people"
    if t == "university":
        return f"a university founded in {_century(a['founded'])}"
    if t == "company":
        return f"{'a record label' if a['kind'] == 'label' else 'a film production company'} founded in {_decade(a['founded'])}"
    if t == "studio":
        return f"a recording studio established in {_decade(a['founded'])}"
    if t == "band":
        return f"a {a['genre']} band formed in {_decade(a['formed'])}"
    if t == "album":
        return f"a {a['genre']} album released in {_decade(a['released'])}"
    if t == "song":
        return f"a song released in {_decade(a['released'])}"
    if t == "film":
        return f"a film released in {_decade(a['released'])}"
    return f"a {t}"


FORWARD = {
    "in_country": "Move to the country that city lies in.",
    "twinned_with": "Move to the city it is twinned with, {desc}.",
    "located_in": "Move to the city where it is located.",
    "headquartered_in": "Move to the city where that company has its headquarters.",
    "founded_by": "Move to the person who founded it.",
    "owned_by": "Move to the company that owns that studio.",
    "born_in": "Move to the city where that person was born.",
    "studied_at": "Move to the university that person attended.",
    "member_of": "Move to the band that person played in, {desc}.",
    "formed_in": "Move to the city where that band was formed.",
    "signed_to": "Move to the record label that band is signed to.",
    "artist": "Move to the act that recorded that album.",
    "produced_by": "Move to the producer who worked on it.",
    "recorded_at": "Move to the studio where that album was recorded.",
    "label": "Move to the label that released that album.",
    "on_album": "Move to the album that song appears on.",
    "written_by": "Move to the person who wrote that song.",
    "directed_by": "Move to the director of that film.",
    "starring": "Move to one of that film's lead actors, {desc}.",
    "filmed_in": "Move to the city where that film was shot.",
    "soundtrack_by": "Move to the band that wrote that film's soundtrack.",
}
INVERSE = {
    "in_country": "Move to {desc} in that country.",
    "twinned_with": "Move to {desc} that is twinned with it.",
    "located_in": "Move to {desc} located there.",
    "headquartered_in": "Move to {desc} with its headquarters there.",
    "founded_by": "Move to {desc} that this person founded.",
    "owned_by": "Move to {desc} owned by that company.",
    "born_in": "Move to {desc} who was born there.",
    "studied_at": "Move to {desc} who studied there.",
    "member_of": "Move to {desc} who has been a member of that band.",
    "formed_in": "Move to {desc} that was formed there.",
    "signed_to": "Move to {desc} signed to that label.",
    "artist": "Move to {desc} recorded by that act.",
    "produced_by": "Move to {desc} that this person produced.",
    "recorded_at": "Move to {desc} recorded at that studio.",
    "label": "Move to {desc} released on that label.",
    "on_album": "Move to {desc} that appears on that album.",
    "written_by": "Move to {desc} written by that person.",
    "directed_by": "Move to {desc} directed by that person.",
    "starring": "Move to {desc} in which that person acted.",
    "filmed_in": "Move to {desc} that was shot there.",
    "soundtrack_by": "Move to {desc} whose soundtrack that band wrote.",
}
ATTRIBUTE_QUESTION = {
    "person": ("born", "In what year was that person born?"),
    "city": ("founded", "In what year was that city founded?"),
    "university": ("founded", "In what year was that university founded?"),
    "company": ("founded", "In what year was that company founded?"),
    "studio": ("founded", "In what year was that studio established?"),
    "band": ("formed", "In what year was that band formed?"),
    "album": ("released", "In what year was that album released?"),
    "song": ("length", "What is the running time of that song (minutes:seconds)?"),
    "film": ("runtime", "What is the running time of that film, in minutes?"),
}


def _shared(a: dict, b: dict, relation: str) -> bool:
    targets = {r["target"] for r in a["relations"] if r["rel"] == relation}
    return any(r["rel"] == relation and r["target"] in targets for r in b["relations"])


def template_question(walk: dict, pages: list[StoredPage], limits: QuestionLimits | None = None) -> dict:
    """A deterministic multi-hop question from the typed facts of synthetic-world pages."""
    limits = limits or QuestionLimits()
    facts = []
    for p in pages:
        f = p.meta.get("synthetic")
        if not isinstance(f, dict):
            raise QuestionError(f"page {p.title!r} has no synthetic facts: template mode needs a synthetic world "
                                "(use --mode llm for other corpora)")
        facts.append(f)
    rng = random.Random(f"template:{walk['walk_id']}")
    clauses = [f"Start with {describe(facts[0])}."]
    hops = []
    for i in range(len(pages) - 1):
        a, b = pages[i], pages[i + 1]
        fwd = [r["rel"] for r in facts[i]["relations"] if r["target"] == b.title]
        inv = [r["rel"] for r in facts[i + 1]["relations"] if r["target"] == a.title]
        if fwd:
            clauses.append(FORWARD[fwd[0]].format(desc=describe(facts[i + 1])))
            hops.append({"from": a.title, "to": b.title, "relation": fwd[0], "direction": "forward"})
        elif inv:
            clauses.append(INVERSE[inv[0]].format(desc=describe(facts[i + 1])))
            hops.append({"from": a.title, "to": b.title, "relation": inv[0], "direction": "inverse"})
        elif _shared(facts[i], facts[i + 1], "member_of"):
            clauses.append(f"Move to {describe(facts[i + 1])} who played in the same band.")
            hops.append({"from": a.title, "to": b.title, "relation": "bandmate", "direction": "both"})
        else:
            raise QuestionError(f"no typed relation between {a.title!r} and {b.title!r}")
    last = facts[-1]
    options = []
    if last["type"] in ATTRIBUTE_QUESTION:
        attr, q = ATTRIBUTE_QUESTION[last["type"]]
        options.append((q, str(last["attrs"][attr]), False))
    options.append((f"What is the name of that {last['type']}?", last["name"], True))
    if rng.random() < 0.4:
        options.reverse()
    problems: list[str] = []
    for final_q, answer, is_name in options:
        question = " ".join(clauses + [final_q])
        rubric = [{"entity": f["name"], "page": i} for i, f in enumerate(facts) if not (is_name and i == len(facts) - 1)]
        seen, unique = set(), []
        for r in rubric:  # one rubric item per distinct name
            if r["entity"] not in seen:
                seen.add(r["entity"])
                unique.append(r)
        problems = validate(question, answer, unique, pages, limits, answer_is_last_name=is_name)
        if not problems:
            return question_record(walk, question, answer, unique, pages, "template", hops=hops)
    raise QuestionError("; ".join(problems))


# ------------------------------------------------------------------------------------------------ LLM
WRITER_SYSTEM = "You write hard multi-hop research questions from encyclopedia pages. You answer with one JSON object."
WRITER_PROMPT = """Below are {n} encyclopedia pages that form a chain: each page links to the next one.

{pages}

Write ONE question that can only be answered by following the whole chain in order:
- Open with "Start with" and an indirect description of the entity of page 1. Then add one "Move to ..." clue per \
following page, each describing how that page's entity relates to the previous one. Every page must be needed.
- Never write the real names, titles, exact dates, or places that appear in the pages. Describe them indirectly \
(roles, periods, kinds of things) so that searching for words of the question does not find the pages.
- End by asking for one short fact about the entity of page {n} (a name, a place, a date or a number) that is \
stated in page {n}. The answer must be unique and at most a few words, and must not appear in the question.
- Keep the question under {max_chars} characters.

Also list the rubric: for each page in order, the name of its entity exactly as it is written in that page's \
text. Leave out the answer itself if it is the name of the last entity.

Reply with this JSON object only:
{{"question": "...", "answer": "...", "rubric": [{{"entity": "...", "page": 1}}, ...]}}"""


def _extract_json(text: str) -> dict | None:
    text = text.rsplit("</think>", 1)[-1]
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        candidates.append(text[start: end + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


class LLMQuestionWriter:
    def __init__(self, client: ChatClient, limits: QuestionLimits | None = None, page_chars: int = 1500,
                 attempts: int = 3):
        self.client, self.limits, self.page_chars, self.attempts = client, limits or QuestionLimits(), page_chars, attempts

    def prompt(self, pages: list[StoredPage]) -> list[dict]:
        blocks = [f"[Page {i}] {p.title}\n{p.text()[: self.page_chars]}" for i, p in enumerate(pages, 1)]
        user = WRITER_PROMPT.format(n=len(pages), pages="\n\n".join(blocks), max_chars=self.limits.max_question_chars)
        return [{"role": "system", "content": WRITER_SYSTEM}, {"role": "user", "content": user}]

    def check(self, reply: str, pages: list[StoredPage]) -> tuple[dict | None, list[str]]:
        obj = _extract_json(reply)
        if obj is None:
            return None, ["the reply is not a JSON object"]
        q, a, rub = obj.get("question"), obj.get("answer"), obj.get("rubric")
        if not isinstance(q, str) or not isinstance(a, (str, int, float)) or not isinstance(rub, list):
            return None, ["the JSON needs 'question' (string), 'answer' (string) and 'rubric' (list)"]
        a = str(a).strip()
        rubric = []
        for item in rub:
            if isinstance(item, dict) and isinstance(item.get("page"), int):
                rubric.append({"entity": str(item.get("entity", "")).strip(), "page": item["page"] - 1})
            else:
                rubric.append({"entity": item, "page": None})
        is_name = display_name(pages[-1].title).casefold() == a.casefold()
        problems = validate(q.strip(), a, rubric, pages, self.limits, answer_is_last_name=is_name)
        return {"question": q.strip(), "answer": a, "rubric": rubric}, problems

    async def write(self, walk: dict, pages: list[StoredPage]) -> dict:
        messages = self.prompt(pages)
        problems: list[str] = []
        for attempt in range(1, self.attempts + 1):
            try:
                reply = await self.client.complete(messages)
            except ChatError as e:
                raise QuestionError(f"attempt {attempt}: {e}") from None
            parsed, problems = self.check(reply.content, pages)
            if not problems:
                return question_record(walk, parsed["question"], parsed["answer"], parsed["rubric"], pages, "llm",
                                       attempts=attempt, model=self.client.cfg.model)
            messages = messages + [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": "That reply was rejected: " + "; ".join(problems)
                 + ". Fix these problems and reply with the JSON object only."},
            ]
        raise QuestionError(f"no valid question after {self.attempts} attempts: " + "; ".join(problems))
