import random
import re

import pytest

from reward.normalize import fold_accents, normalize, normalize_bytes, reference_normalize

# Vectors from the released LongTraceRL reward server's normalize_string (reference mode is exact).
REFERENCE_VECTORS = [
    ("Beyoncé", "beyonc"),
    ("Lady Gaga's", "lady gaga s"),
    ("  The Fame  ", "the fame"),
    ("Poker_Face!", "poker_face"),
    ("R&B / Hip-Hop", "r b hip hop"),
    ("北京大学", "北 京 大 学"),
    ("abc中文def", "abc 中 文 def"),
    ("Zoë — “quoted”", "zo quoted"),
    ("İstanbul", "i stanbul"),  # lower() gives "i" + combining dot: the dot is a separator
    ("\u212aelvin", "kelvin"),  # KELVIN SIGN lowercases to ASCII "k"
    ("ひらがな", ""),  # kana are not in the reference's CJK range
    ("", ""),
    # invalid code points: the reference regex keeps only [a-zA-Z0-9_] and U+4E00..U+9FFF, so they separate
    ("Paris \ud800 France", "paris france"),
    ("Par\udfffis", "par is"),
    ("a\ud83d\ude00b", "a b"),  # a surrogate pair as two code points (not one emoji)
    ("\udc80", ""),
    ("2019年3月x", "2019 年 3 月 x"),  # ideographs glued to ASCII on both sides
    ("\u4dff\u4e00\u9fff\ua000", "\u4e00 \u9fff"),  # the edges of the CJK range
]


@pytest.mark.parametrize("text,expected", REFERENCE_VECTORS)
def test_reference_vectors(text, expected):
    assert reference_normalize(text) == expected
    assert normalize(text, "reference") == expected


def test_fast_reference_path_equals_the_reference_regex_on_random_unicode():
    rng = random.Random(1234)
    alphabet = [chr(c) for c in range(32, 127)] + [
        "é", "ü", "ß", "İ", "ı", "\u212a", "\u0301", "—", "“", "中", "文", "\u4000", "\u4dff", "あ", "Σ",
        "Я", "א", "😀", "Ａ", "\xa0", "\u2028", "Ā", "\n", "\t",
        "\ud800", "\udfff", "\ud83d", "\ude00", "\u4e00", "\u9fff", "\ua000", "年3", "x北", "\x01",
    ]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert normalize(text, "reference") == reference_normalize(text), repr(text)


def test_long_text_fast_path_matches_reference():
    rng = random.Random(7)
    words = ["Lady", "Gaga's", "Beyoncé", "—", "(born", "1986)", "R&B", "naïve", "x_y", "“The", "Fame”"]
    text = " ".join(rng.choice(words) for _ in range(20000))
    assert normalize(text) == reference_normalize(text)
    assert normalize(text + " 北京") == reference_normalize(text + " 北京")  # CJK takes the run-rewriting path


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Beyoncé", "beyonce"),
        ("BEYONCE", "beyonce"),
        ("Straße", "strasse"),
        ("Ørsted & Æther", "orsted aether"),
        ("naïve_x", "naive x"),  # underscores separate words in unicode mode
        ("ＡＢＣ１２", "abc12"),  # NFKD folds full-width forms
        ("Москва", "москва"),  # other scripts are kept
        ("北京大学abc", "北 京 大 学 abc"),
        ("ひらがな", "ひ ら が な"),
        ("Lady Gaga's", "lady gaga s"),
    ],
)
def test_unicode_mode(text, expected):
    assert normalize(text, "unicode") == expected


def test_fold_accents_drops_combining_marks():
    assert fold_accents("e\u0301") == "e"
    assert fold_accents("Crème Brûlée") == "creme brulee"


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown normalisation mode 'fancy'"):
        normalize_bytes("x", "fancy")


def test_every_code_point_matches_the_reference():
    # lower() turns only U+0130 and U+212A into ASCII; the CJK range is unchanged: the whole code space, alone
    # (separated) and glued to its neighbours, normalises as the reference regex does
    every = [chr(c) for c in range(0x80, 0x110000)]
    for text in (" ".join(every), "".join(every), "a".join(every)):
        assert normalize(text) == reference_normalize(text)
    normalize("".join(every[::7]), "unicode")  # must not raise (surrogates included)


def test_many_ideographs_glued_to_ascii():
    # more than 256 ideographs directly followed by an ASCII token character (the numpy insert path)
    text = "中a" * 600 + " 北京x大学 " + "文1" * 300
    assert normalize(text) == reference_normalize(text)


def _unicode_oracle(text: str) -> str:
    """Unicode mode written plainly over the str (the spec the byte-level implementation is tested against):
    each maximal run of non-ASCII characters is accent-folded, then per character: ASCII letters and digits
    lowercased, other ASCII separators; CJK / kana / hangul single tokens; other letters and digits kept."""

    def cjk(c):
        ranges = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF))
        return any(lo <= ord(c) <= hi for lo, hi in ranges)

    out = []
    for run in re.split(r"([^\x00-\x7f]+)", text):
        if not run.isascii():
            folded = fold_accents(run)
            run = "".join(c if c.isascii() else f" {c} " if cjk(c) else c if c.isalnum() else " " for c in folded)
        out.append("".join((c.lower() if c.isalnum() else " ") if c.isascii() else c for c in run))
    return " ".join(t for t in "".join(out).split(" ") if t)


def test_unicode_mode_equals_its_plain_definition_on_random_unicode():
    rng = random.Random(99)
    alphabet = [chr(c) for c in range(32, 127)] + [
        "é", "É", "ü", "ß", "İ", "ı", "\u212a", "\u0301", "\u3099", "—", "中", "が", "か", "한", "Ø", "æ", "Σ", "ς",
        "Я", "😀", "Ａ", "\xa0", "ﬁ", "\ud800", "\udfff", "\ud83d", "\ude00", "_",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        assert normalize(text, "unicode") == _unicode_oracle(text), repr(text)


@pytest.mark.parametrize("mode", ["reference", "unicode"])
def test_lone_surrogates_are_separators_in_every_mode(mode):
    assert normalize("Paris \ud800 France", mode) == "paris france"
    assert normalize("Par\ud800is", mode) == "par is"
    assert normalize_bytes("\udfff" * 5, mode) == b""
    long_text = ("Lady Gaga \ud800 北京 Beyoncé " * 5000).strip()
    assert normalize(long_text, mode) == " ".join([normalize("Lady Gaga 北京 Beyoncé", mode)] * 5000)
