"""Text normalisation shared by the rubric reward, the rule judges and data_gen's overlap statistics.

Two modes:

``reference``  reproduces the released LongTraceRL reward server exactly: lowercase, keep runs of
               ``[A-Za-z0-9_]`` and single CJK characters (U+4E00..U+9FFF), join with single spaces.
               Every other character is a separator: "Beyoncé" -> "beyonc", "Lady Gaga's" -> "lady gaga s".
``unicode``    casefold + accent folding ("Beyoncé" -> "beyonce"), letters and digits of every script kept,
               underscores are separators, CJK / kana / hangul characters become single tokens.

Both produce single-space-separated tokens, so "entity occurs in text" is a substring test and
"occurs as whole words" is a substring test with spaces (or the ends) on both sides.

Invalid code points never raise: a lone surrogate ("Paris \\ud800 France", e.g. from a JSON ``\\ud800`` escape)
is a separator in both modes, in texts and in entity names. That is what the released server's regex does with it
(it only keeps ``[a-zA-Z0-9_]`` and U+4E00..U+9FFF); internally the text is encoded with ``surrogatepass``, so a
surrogate's three bytes go to spaces like any other separator.

Speed: a response is ~130 KB and a training step scores ~1,000 of them, so neither mode runs a tokenising
regex or a per-character Python loop over the whole text. One ``bytes.translate`` lowercases ASCII and turns
ASCII punctuation into spaces, and numpy collapses runs of spaces (ASCII text: ~600 MB/s on one core).

Reference mode, non-ASCII text: every non-ASCII character is a separator except CJK ideographs U+4E00..U+9FFF
and two characters whose ``lower()`` is ASCII ("İ" -> "i" + a combining dot, the Kelvin sign -> "k"; checked
over every code point in the tests). Those two are replaced in the str first; the translation table maps
every other byte >= 0x80 to a space, except the lead bytes E4..E9 of U+4000..U+9FFF, which it marks. Only when a
mark is present does one ``bytes.replace`` make a space-padded slot for each ideograph and numpy copy its three
bytes into it. The result is identical to the reference regex (tested over every code point and on random Unicode
text, surrogates included).

Unicode mode, non-ASCII text: numpy finds the maximal runs of non-ASCII characters in the UTF-8 bytes and a
cached function rewrites only those (token characters kept, CJK padded to stand alone, the rest spaces).
"""
from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

import numpy as np

MODES = ("reference", "unicode")

_SPACE = 32
_MARK = 1  # translation-table output for the UTF-8 lead bytes E4..E9 (reference mode)
_MARKED_SLOT = b"\x01"  # a lead byte E4..E9, translated
_PADDED_SLOT = b" \x01\x01\x01 "
_THREE = np.arange(3)


def _byte_table(keep_underscore: bool, high: str) -> bytes:
    """ASCII letters lowercased, digits kept, other ASCII -> space. Bytes >= 0x80: ``keep`` (a run callback has
    already reduced non-ASCII text to token characters) or ``space``, except the lead bytes E4..E9, which become
    ``_MARK`` (reference mode: they start the CJK ideographs)."""
    table = bytearray(range(256))
    for b in range(128):
        c = chr(b)
        if c in string.ascii_uppercase:
            table[b] = ord(c.lower())
        elif not (c in string.ascii_lowercase or c in string.digits or (keep_underscore and c == "_")):
            table[b] = _SPACE
    if high == "space":
        for b in range(128, 256):
            table[b] = _MARK if 0xE4 <= b <= 0xE9 else _SPACE
    return bytes(table)


def _encode(text: str) -> bytes:
    """UTF-8, with lone surrogates encoded as their 3 bytes instead of raising (both modes make them separators)."""
    return text.encode("utf-8", "surrogatepass")


def _collapse_array(arr: np.ndarray) -> bytes:
    """Collapse runs of spaces to one and strip the ends (vectorised; ~10x faster than split/join)."""
    if not arr.shape[0]:
        return b""
    space = arr == _SPACE
    keep = np.empty(arr.shape[0], dtype=bool)
    keep[0] = not space[0]
    np.logical_not(space[1:] & space[:-1], out=keep[1:])
    out = arr[keep].tobytes()
    return out[:-1] if out.endswith(b" ") else out


def _collapse_spaces(data: bytes) -> bytes:
    """``data`` (ASCII separators already spaces) with runs of spaces collapsed and the ends stripped."""
    if len(data) < 2048:  # entity names, short answers: split/join beats numpy's fixed cost
        return b" ".join(data.split())
    if b"  " not in data and not data.startswith(b" ") and not data.endswith(b" "):
        return data
    return _collapse_array(np.frombuffer(data, dtype=np.uint8))


def _normalize_runs(data: bytes, fold_run, table: bytes) -> bytes:
    """Rewrite each maximal run of non-ASCII characters of UTF-8 ``data`` with ``fold_run`` (cached: runs such as
    "é" or "—" repeat), then translate and collapse. In UTF-8 those runs are exactly the runs of bytes >= 0x80;
    numpy finds them, which is several times faster than a regex over the str."""
    arr = np.frombuffer(data, dtype=np.uint8)
    edges = np.diff((arr >= 0x80).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    pieces, prev = [], 0
    for start, end in zip(starts, ends):
        pieces.append(data[prev:start])
        pieces.append(fold_run(data[start:end]))
        prev = end
    pieces.append(data[prev:])
    return _collapse_spaces(b"".join(pieces).translate(table))


# ---------------------------------------------------------------------------------------------------
# reference mode
_REFERENCE_TOKEN = re.compile(r"[a-zA-Z0-9_]+|[\u4e00-\u9fff]")
_REFERENCE_TABLE = _byte_table(keep_underscore=True, high="space")


def reference_normalize(text: str) -> str:
    """The reference definition, verbatim in behaviour (slow; the spec the fast path is tested against)."""
    return " ".join(_REFERENCE_TOKEN.findall(text.lower().strip()))


def _reference_cjk(data: bytes, translated: bytes) -> np.ndarray:
    """``translated`` (bytes >= 0x80 -> space, lead bytes E4..E9 -> _MARK) with the CJK ideographs U+4E00..U+9FFF of
    ``data`` put back, each padded with spaces (not yet collapsed).

    One ``bytes.replace`` (a memchr scan: the needle is one rare byte) turns every mark into "space, mark, mark,
    mark, space": a padded slot for each ideograph, the k-th one 4k + 1 bytes later than its lead byte in ``data``
    (its continuation bytes, now spaces, follow the slot). numpy then copies the three UTF-8 bytes into the slots
    (U+4000..U+4DFF, lead E4 with a second byte below B8, are not in the range: their slots stay spaces)."""
    padded = translated.replace(_MARKED_SLOT, _PADDED_SLOT)
    out = np.frombuffer(padded, dtype=np.uint8).copy()
    slot = np.flatnonzero(out == _MARK)[::3]
    lead = slot - (4 * np.arange(slot.shape[0]) + 1)  # positions in data
    utf8 = np.frombuffer(data, dtype=np.uint8)[lead[:, None] + _THREE]  # (ideographs, 3): their UTF-8 bytes
    not_cjk = (utf8[:, 0] == 0xE4) & (utf8[:, 1] < 0xB8)
    utf8[not_cjk] = _SPACE
    out[slot[:, None] + _THREE] = utf8
    return out


def _reference_bytes(text: str) -> bytes:
    if text.isascii():
        return _collapse_spaces(text.encode("ascii").translate(_REFERENCE_TABLE))
    if "\u0130" in text:
        text = text.replace("\u0130", "i ")
    if "\u212a" in text:
        text = text.replace("\u212a", "k")
    data = _encode(text)
    translated = data.translate(_REFERENCE_TABLE)
    if _MARKED_SLOT not in translated:  # no lead byte E4..E9: every non-ASCII character is a separator
        return _collapse_spaces(translated)
    return _collapse_array(_reference_cjk(data, translated))


# ---------------------------------------------------------------------------------------------------
# unicode mode
_EXTRA_FOLDS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "ı": "i"})
_UNICODE_TABLE = _byte_table(keep_underscore=False, high="keep")


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xAC00 <= o <= 0xD7AF


# Diacritic blocks only: other combining marks (the kana voicing marks, Indic vowel signs ...) are part of
# their letters and are recomposed by NFC instead of being dropped.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold_accents(text: str) -> str:
    """casefold, then drop diacritics after NFKD decomposition ("Beyoncé" -> "beyonce", "が" stays "が")."""
    folded = unicodedata.normalize("NFKD", text.casefold()).translate(_EXTRA_FOLDS)
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFC", _DIACRITICS.sub("", folded))


@lru_cache(maxsize=1 << 16)
def _unicode_run(run: bytes) -> bytes:
    out = []
    for c in fold_accents(run.decode("utf-8", "surrogatepass")):
        if c.isascii():
            out.append(c)  # folded Latin letters; ASCII punctuation is left to the byte table
        elif _is_cjk(c):
            out.append(f" {c} ")
        else:
            out.append(c if c.isalnum() else " ")  # surrogates are not alnum: separators
    return "".join(out).encode("utf-8")


def _unicode_bytes(text: str) -> bytes:
    if text.isascii():
        return _collapse_spaces(text.encode("ascii").translate(_UNICODE_TABLE))
    return _normalize_runs(_encode(text), _unicode_run, _UNICODE_TABLE)


# ---------------------------------------------------------------------------------------------------
_BY_MODE = {"reference": _reference_bytes, "unicode": _unicode_bytes}


def check_mode(mode: str) -> str:
    if mode not in _BY_MODE:
        raise ValueError(f"unknown normalisation mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def normalize_bytes(text: str, mode: str = "reference") -> bytes:
    """Normalised text as UTF-8 bytes (what the matchers scan)."""
    return _BY_MODE[check_mode(mode)](text)


def normalize(text: str, mode: str = "reference") -> str:
    """Normalised text as a str (for display, tests and short strings)."""
    return normalize_bytes(text, mode).decode("utf-8")
