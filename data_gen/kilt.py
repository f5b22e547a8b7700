"""KILT knowledge-source records: parsing, page clean-up, titles and URLs.

A KILT record (one JSON object per line of ``kilt_knowledgesource.json``) looks like::

    {"_id": "1101759", "wikipedia_id": "1101759", "wikipedia_title": "Email marketing",
     "text": ["Email marketing\\n", "Email marketing is the act of ...\\n", "Section::::History.\\n", ...],
     "anchors": [{"paragraph_id": 1, "start": 0, "end": 9, "text": "marketing", "href": "Marketing",
                  "wikipedia_title": "Marketing", "wikipedia_id": "18949"}, ...],
     "categories": "Marketing,Email", "history": {...}, "wikidata_info": {...}}

``text[0]`` is the title line; section headings are paragraphs of the form ``Section::::Name.`` (sub-sections
``Section::::Name.:Sub.``, any depth), list items ``BULLET::::- item`` (numbered lists ``BULLET::::2. item``).
Every paragraph ends in "\n"; anchors' ``start``/``end`` are character offsets into ``text[paragraph_id]``.
``href`` is the link target as written, URL-quoted, often with a section fragment and not capitalised
("English%20alphabet%23Letter%20names", "Greek_alphabet%23History", "vowel", "%23Dog-Wolf%20admixture" for a
link inside the page); anchors may lack ``wikipedia_title``/``wikipedia_id`` (the Hugging Face loader defaults
them to ""). Checked on real records: tests/fixtures/kilt/ (see its PROVENANCE.md).

Clean-up (DeepDive's rule, which LongTraceRL's walks follow): the page is cut at the first heading whose
top-level name is one of ``CUT_SECTIONS`` ("See also", "References", "External links", "Further reading",
"Notes", "Bibliography" and a few common variants), and anchors in the cut tail are dropped. Pages are marked
as disambiguation pages by title, category or their "may refer to:" opening.
"""
from __future__ import annotations

import html
import re
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

WIKI_URL_PREFIX = "https://en.wikipedia.org/wiki/"
SECTION_PREFIX = "Section::::"
BULLET_PREFIX = "BULLET::::"
CUT_SECTIONS = frozenset(s.casefold() for s in (
    "See also", "References", "External links", "Further reading", "Notes", "Bibliography",
    "Notes and references", "References and notes", "Footnotes", "Citations", "Sources",
))
_DISAMBIG_OPENING = re.compile(r"\b(?:may|might|can) (?:also )?refer to\s*:?\s*$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_NUMBERED = re.compile(r"\d+\. ")


class KiltFormatError(ValueError):
    """A record that does not have the KILT knowledge-source shape (the message names the field)."""


@dataclass
class Anchor:
    paragraph_id: int
    start: int
    end: int
    text: str
    target_title: str  # resolved title (KILT's wikipedia_title), else the unquoted href
    target_wiki_id: str | None = None
    href_title: str | None = None  # the link as written (may be a redirect name)


@dataclass
class Page:
    wiki_id: str
    title: str
    paragraphs: list[str]  # cleaned: trailing newlines stripped, cut tail removed; paragraphs[0] is the title line
    anchors: list[Anchor]
    categories: list[str] = field(default_factory=list)
    is_disambiguation: bool = False
    cut_at: int | None = None  # index of the first dropped paragraph, None when nothing was cut
    meta: dict = field(default_factory=dict)  # other record fields kept verbatim (wikidata_info, synthetic, ...)

    @property
    def url(self) -> str:
        return url_for_title(self.title)

    def body_text(self) -> str:
        """Plain text without the title line, headings rendered as plain lines."""
        return "\n".join(render_paragraph(p, markdown=False) for p in self.paragraphs[1:])


@lru_cache(maxsize=1 << 16)
def title_key(title: str) -> str:
    """Lookup key for a title: underscores and runs of spaces -> one space, first letter upper-cased
    (Wikipedia titles are case-insensitive in their first character only)."""
    t = title.replace("_", " ")
    if "  " in t or not t.isprintable() or t != t.strip():
        t = _SPACES.sub(" ", t).strip()
    first = t[:1].upper()
    if len(first) > 1:  # "ß" -> "SS", "ẚ" -> "Aʾ": MediaWiki leaves such a first letter as it is
        first = t[:1]
    return first + t[1:]


def url_for_title(title: str) -> str:
    return WIKI_URL_PREFIX + quote(title_key(title).replace(" ", "_"), safe="_()',!-.:;@&=+$*~/")


def title_from_url(url: str) -> str | None:
    """The title a Wikipedia-style URL points at (mobile host, fragments and query strings tolerated)."""
    u = url.strip()
    for prefix in ("https://r.jina.ai/", "http://r.jina.ai/", "view-source:"):
        if u.startswith(prefix):
            u = u[len(prefix):]
    m = re.match(r"^(?:https?://)?(?:[a-z]+\.)?(?:m\.)?wikipedia\.org/wiki/([^#?]+)", u, re.IGNORECASE)
    if not m:
        return None
    return title_key(unquote(m.group(1)))


def _href_title(href: str) -> str:
    """The page an href names: URL-unquoted, HTML entities decoded, the "#section" fragment dropped;
    "" for a link to a section of the same page ("%23History")."""
    if "%" in href:
        plain = href.replace("%20", " ")
        href = unquote(plain) if "%" in plain else plain
    if "&" in href and ";" in href:
        href = html.unescape(href)
    return title_key(href.split("#", 1)[0])


def heading_name(paragraph: str) -> str | None:
    """Top-level section name of a heading paragraph ("Section::::Career.:Early years." -> "Career")."""
    if not paragraph.startswith(SECTION_PREFIX):
        return None
    rest = paragraph[len(SECTION_PREFIX):].strip()
    top = rest.split(".:", 1)[0]
    return top[:-1] if top.endswith(".") else top


def render_paragraph(paragraph: str, markdown: bool = True) -> str:
    """A KILT paragraph as display text: headings become "## Name" (or "Name"), bullets "- item"."""
    if paragraph.startswith(SECTION_PREFIX):
        parts = [p.rstrip(".") for p in paragraph[len(SECTION_PREFIX):].strip().split(".:")]
        name = parts[-1]
        return f"{'#' * (len(parts) + 1)} {name}" if markdown else name
    if paragraph.startswith(BULLET_PREFIX):
        item = paragraph[len(BULLET_PREFIX):].strip()
        return item if item.startswith("- ") or _NUMBERED.match(item) else f"- {item}"
    return paragraph


def _as_int(value: Any, where: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise KiltFormatError(f"{where} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise KiltFormatError(f"{where} must be an integer, got {value!r}") from None


def _categories(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [c.strip() for c in raw.split(",") if c.strip()]
    if isinstance(raw, list):
        return [str(c).strip() for c in raw if str(c).strip()]
    raise KiltFormatError(f"categories must be a comma-separated string or a list, got {type(raw).__name__}")


def is_disambiguation(title: str, categories: list[str], paragraphs: list[str]) -> bool:
    if title.endswith("(disambiguation)"):
        return True
    if any("disambiguation" in c.casefold() for c in categories):
        return True
    opening = next((p for p in paragraphs[1:3] if p and not p.startswith(SECTION_PREFIX)), "")
    return bool(_DISAMBIG_OPENING.search(opening))


_KNOWN_FIELDS = {"_id", "wikipedia_id", "wikipedia_title", "text", "anchors", "categories"}


def parse_record(record: Any) -> Page:
    """One KILT knowledge-source record -> a cleaned ``Page``. Raises KiltFormatError on a bad record."""
    if not isinstance(record, dict):
        raise KiltFormatError(f"a record must be a JSON object, got {type(record).__name__}")
    title = record.get("wikipedia_title")
    if not isinstance(title, str) or not title.strip():
        raise KiltFormatError("wikipedia_title must be a non-empty string")
    wiki_id = record.get("wikipedia_id", record.get("_id"))
    if wiki_id is None or isinstance(wiki_id, (dict, list, bool)) or str(wiki_id).strip() == "":
        raise KiltFormatError("wikipedia_id (or _id) is missing")
    text = record.get("text")
    if not isinstance(text, list) or not text or not all(isinstance(p, str) for p in text):
        raise KiltFormatError("text must be a non-empty list of paragraph strings")
    paragraphs = [p.rstrip("\n") for p in text]

    cut_at = None
    for i, p in enumerate(paragraphs[1:], 1):
        name = heading_name(p)
        if name is not None and name.strip().casefold() in CUT_SECTIONS:
            cut_at = i
            break
    if cut_at is not None:
        paragraphs = paragraphs[:cut_at]

    page_title = title_key(title)
    raw_anchors = record.get("anchors") or []
    if not isinstance(raw_anchors, list):
        raise KiltFormatError("anchors must be a list")
    anchors = []
    for j, a in enumerate(raw_anchors):
        where = f"anchors[{j}]"
        if not isinstance(a, dict):
            raise KiltFormatError(f"{where} must be an object")
        pid = _as_int(a.get("paragraph_id"), f"{where}.paragraph_id")
        if pid < 0 or pid >= len(text):
            raise KiltFormatError(f"{where}.paragraph_id={pid} is outside the page's {len(text)} paragraphs")
        if cut_at is not None and pid >= cut_at:
            continue  # in the cut tail
        href = a.get("href")
        href_title = _href_title(href) if isinstance(href, str) and href.strip() else None
        if href_title == "":
            href_title = page_title  # "#Section": a link into this page
        target = a.get("wikipedia_title")
        target = title_key(target) if isinstance(target, str) and target.strip() else href_title
        if not target:
            continue  # an anchor to nowhere (external or red link): not an edge
        tid = a.get("wikipedia_id")
        anchors.append(Anchor(
            paragraph_id=pid,
            start=_as_int(a.get("start", 0), f"{where}.start"),
            end=_as_int(a.get("end", 0), f"{where}.end"),
            text=str(a.get("text", "")),
            target_title=target,
            target_wiki_id=str(tid) if tid not in (None, "") else None,
            href_title=href_title,
        ))
    categories = _categories(record.get("categories"))
    meta = {k: v for k, v in record.items() if k not in _KNOWN_FIELDS}
    return Page(
        wiki_id=str(wiki_id).strip(), title=page_title, paragraphs=paragraphs, anchors=anchors,
        categories=categories, is_disambiguation=is_disambiguation(title, categories, paragraphs),
        cut_at=cut_at, meta=meta,
    )
