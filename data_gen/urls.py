"""URL normalisation: one canonical form per document, so that "searched", "opened", "cited" and "gold" can be
compared as sets whatever agent, reader proxy or mobile site produced the URL.

``canonical_url(url)`` applies, in order:

1. whitespace and wrapping ``<...>`` / quotes trimmed; reader and viewer prefixes removed, repeatedly:
   ``https://r.jina.ai/``, ``http://r.jina.ai/``, ``r.jina.ai/``, ``view-source:``;
2. a missing scheme is taken as https (``en.wikipedia.org/wiki/X``, ``//host/x``, ``www.x.org/a``);
3. **Wikipedia** (``<lang>.wikipedia.org`` and the mobile ``<lang>.m.wikipedia.org``, ``/wiki/<Title>`` or
   ``/w/index.php?title=<Title>``): ``https://<lang>.wikipedia.org/wiki/<Title>`` with the title percent-decoded,
   ``_`` for spaces, the first letter upper-cased and re-encoded one way (``data_gen.kilt.url_for_title``); the
   query string (``oldid``, ``action`` ...) and the fragment are dropped. English titles give exactly the
   store's URLs, so the result resolves to a page;
4. **any other URL**: scheme ``https`` (http and https are one document), host lower-cased without ``www.``,
   a trailing dot or a default port; the fragment dropped; tracking parameters dropped (``utm_*``, ``fbclid``,
   ``gclid``, ``dclid``, ``gbraid``, ``wbraid``, ``msclkid``, ``yclid``, ``mc_cid``, ``mc_eid``, ``igshid``,
   ``_ga``, ``_gl``, ``ref_src``, ``spm``, ``srsltid``), the other parameters kept in order; percent-escapes of unreserved
   characters decoded and the rest upper-cased (RFC 3986 normalisation), non-ASCII characters encoded; a
   trailing ``/`` removed from the path (the root becomes no path at all). Path case is kept: paths are
   case-sensitive on most servers.

``canonical_url`` never raises: a string that is not a URL at all comes back trimmed (and is then simply a key
nothing else matches). ``is_wikipedia(url)`` and ``wikipedia_title(url)`` give the page a canonical URL names.

URLs written in text: ``urls_in_text`` finds bare URLs (a closing parenthesis is kept only when it balances an
opening one inside the URL); ``numbered_citations`` reads CaRR-style citations ``[n](url)`` that are followed by
``]`` or ``,`` (``[[4](https://en.wikipedia.org/wiki/UFC_219)]``, ``[[1](u1), [2](u2)]``). The link target runs
to the parenthesis that closes the link, with parentheses inside the URL balanced, so
``[[7](https://en.wikipedia.org/wiki/John_McCarthy_(referee))]`` cites ``.../John_McCarthy_(referee)``; any other
character but white space belongs to the URL (``?``, ``&``, ``%``, ``#``, ``:``, ``'``, ``[``, ``]``, non-ASCII ...).
"""
from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .kilt import title_key

READER_PREFIXES = ("https://r.jina.ai/", "http://r.jina.ai/", "r.jina.ai/", "view-source:")
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid", "_ga", "_gl",
    "ref_src", "spm", "srsltid",
})
_WIKI_HOST = re.compile(r"^([a-z][a-z0-9-]*)\.(?:m\.)?wikipedia\.org$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# characters left as they are when a path or query is re-encoded (RFC 3986 reserved + unreserved + '%')
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"
_WIKI_TITLE_SAFE = "_()',!-.:;@&=+$*~/"


def _strip_wrappers(url: str) -> str:
    u = url.strip()
    while len(u) >= 2 and (u[0], u[-1]) in (("<", ">"), ('"', '"'), ("'", "'")):
        u = u[1:-1].strip()
    changed = True
    while changed:
        changed = False
        for prefix in READER_PREFIXES:
            if u[: len(prefix)].lower() == prefix:
                u, changed = u[len(prefix):].strip(), True
    return u


def _normalise_escapes(part: str, safe: str) -> str:
    """Decode %XX of unreserved characters, upper-case the other escapes, encode non-ASCII and spaces."""
    def fix(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return quote(_ESCAPE.sub(fix, part), safe=safe)


def _wiki_url(lang: str, title: str) -> str | None:
    title = unquote(title).strip()
    if not title:
        return None
    return f"https://{lang}.wikipedia.org/wiki/" + quote(title_key(title).replace(" ", "_"), safe=_WIKI_TITLE_SAFE)


def _is_tracking(name: str) -> bool:
    n = name.lower()
    return n.startswith("utm_") or n in TRACKING_PARAMS


@lru_cache(maxsize=1 << 17)
def canonical_url(url: str) -> str:
    u = _strip_wrappers(url)
    if not u:
        return u
    if u.startswith("//"):
        u = "https:" + u
    elif not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", u):
        if re.match(r"^[\w-]+(\.[\w-]+)+(:\d+)?(/|$)", u):  # a bare host: "en.wikipedia.org/wiki/X"
            u = "https://" + u
        else:
            return u
    try:
        parts = urlsplit(u)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return u
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return u
    m = _WIKI_HOST.match(host)
    if m:
        lang = m.group(1)
        if parts.path.startswith("/wiki/"):
            wiki = _wiki_url(lang, parts.path[len("/wiki/"):])
            if wiki:
                return wiki
        elif parts.path in ("/w/index.php", "/index.php"):
            title = dict(parse_qsl(parts.query)).get("title")
            wiki = _wiki_url(lang, title) if title else None
            if wiki:
                return wiki
    if host.startswith("www."):
        host = host[4:]
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = _normalise_escapes(parts.path, _SAFE_PATH).rstrip("/")
    query = ""
    if parts.query:
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
        query = _normalise_escapes(urlencode(kept, doseq=True, safe=_SAFE_QUERY), _SAFE_QUERY) if kept else ""
    return urlunsplit(("https", netloc, path, query, ""))


def wikipedia_title(url: str) -> str | None:
    """The (English or other) Wikipedia page title a URL names, or None."""
    c = canonical_url(url)
    m = re.match(r"^https://[a-z][a-z0-9-]*\.wikipedia\.org/wiki/(.+)$", c)
    return title_key(unquote(m.group(1))) if m else None


def is_wikipedia(url: str) -> bool:
    return wikipedia_title(url) is not None


_URL_IN_TEXT = re.compile(r"(?:view-source:)?(?:https?://|r\.jina\.ai/|www\.)[^\s<>\"'\]\[{}|\\^`]+")


def urls_in_text(text: str) -> list[str]:
    """URLs written in free text (markdown links included), trailing punctuation trimmed, in order of first use."""
    out: dict[str, None] = {}
    for m in _URL_IN_TEXT.finditer(text):
        u = m.group(0)
        # a closing parenthesis belongs to the URL only when it balances an opening one inside it
        while u and (u[-1] in ".,;:!?*" or (u[-1] == ")" and u.count("(") < u.count(")"))):
            u = u[:-1]
        if u:
            out.setdefault(u, None)
    return list(out)


_CITATION_START = re.compile(r"\[(\d+)\]\((?:view-source:)?(?=https?://)")


def _link_target_end(text: str, start: int) -> int | None:
    """Index of the ``)`` that closes a citation's link target starting at ``start``, or None. The target ends at
    the parenthesis that balances the link's own ``(`` and is followed by ``]`` or ``,``; when the URL's
    parentheses are unbalanced (``.../a_(b)]``), the first ``)`` followed by ``]`` or ``,`` ends it. White space
    ends the search."""
    depth, fallback = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if ch.isspace():
            break
        if ch == "(":
            depth += 1
        elif ch == ")":
            closes = text[i + 1: i + 2] in ("]", ",")
            if depth == 0:
                return i if closes else fallback
            depth -= 1
            if closes and fallback is None:
                fallback = i
    return fallback


def numbered_citations(text: str) -> list[tuple[int, str]]:
    """(number, url) of each ``[n](url)`` link followed by ``]`` or ``,``, in order, first use of each URL only."""
    out, seen = [], set()
    for m in _CITATION_START.finditer(text):
        end = _link_target_end(text, m.end())
        if end is None:
            continue
        url = text[m.end():end]
        if url not in seen:
            seen.add(url)
            out.append((int(m.group(1)), url))
    return out
