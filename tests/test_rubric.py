import random

import pytest

from reward.normalize import normalize_bytes
from reward.rubric import Entity, EntityMatcher, matcher_for, normalized_rubric_text, parse_entities, rubric_reward

GOLD = ["Lady Gaga", "The Fame", "Poker Face", "Just Dance", "RedOne"]
RESPONSE = (
    "Reasoning: 1. The performer is Lady Gaga. 2. Her debut album was The Fame. 3. Its hits were Poker Face and "
    "LoveGame. 4. Both were produced by RedOne, who is Moroccan-Swedish. Answer: Moroccan-Swedish"
)


def test_worked_example_four_of_five_entities():
    result = rubric_reward(RESPONSE, GOLD)
    assert result.score == pytest.approx(0.8)
    assert result.missing == ("Just Dance",)
    assert set(result.matched) == {"Lady Gaga", "The Fame", "Poker Face", "RedOne"}


def test_empty_rubric_scores_zero():
    assert rubric_reward(RESPONSE, []).score == 0.0


def test_reference_mode_is_plain_substring_containment():
    # "gaga s" in "lady gaga s" etc.: the reference does not look at word boundaries
    assert rubric_reward("Lady Gagas new album", ["Lady Gaga"]).score == 1.0
    assert rubric_reward("Lady Gagas new album", ["Lady Gaga"], whole_word=True).score == 0.0
    assert rubric_reward("Lady Gaga's new album", ["Lady Gaga"], whole_word=True).score == 1.0


def test_reference_mode_does_not_fold_accents_but_unicode_mode_does():
    assert rubric_reward("Beyonce sang", ["Beyoncé"], mode="reference").score == 1.0  # "beyonc" in "beyonce"
    assert rubric_reward("Beyonce sang", ["Beyoncé"], mode="reference", whole_word=True).score == 0.0
    assert rubric_reward("Beyonce sang", ["Beyoncé"], mode="unicode", whole_word=True).score == 1.0
    assert rubric_reward("BEYONCÉ sang", ["Beyonce"], mode="unicode", whole_word=True).score == 1.0


def test_cjk_entities():
    assert rubric_reward("他毕业于北京大学。", ["北京大学"]).score == 1.0
    assert rubric_reward("他毕业于北京。", ["北京大学"]).score == 0.0


def test_aliases_count_once():
    items = [["Beyoncé", "Queen Bey"], {"name": "Jay-Z", "aliases": ["Shawn Carter"]}, "Blue Ivy"]
    result = rubric_reward("Queen Bey married Shawn Carter.", items, mode="unicode")
    assert result.score == pytest.approx(2 / 3)
    assert result.matched == ("Beyoncé", "Jay-Z")


def test_duplicate_normalised_forms_map_to_every_owner():
    matcher = EntityMatcher([Entity("Lady Gaga"), Entity("lady-gaga")], "reference")
    assert matcher.score_text("LADY GAGA").score == 1.0


def test_entity_that_normalises_to_nothing():
    # reference: `"" in text` is True, so such an entity always counts (the released server's behaviour)
    assert rubric_reward("anything", ["—"], mode="reference").score == 1.0
    assert rubric_reward("anything", ["—"], mode="unicode").score == 0.0


def test_overlapping_entities_are_all_found():
    assert rubric_reward("New York City", ["New York", "York City", "New York City"]).score == 1.0


def test_bad_rubric_items_name_the_field():
    with pytest.raises(ValueError, match=r"rubrics\[1\]"):
        parse_entities(["ok", 3])
    with pytest.raises(ValueError, match="aliases"):
        parse_entities([{"name": "x", "aliases": "y"}])


def test_text_source_selection():
    reasoning, content = "Lady Gaga wrote it", "The Fame"
    assert normalized_rubric_text(reasoning, content, "content", "reference") == b"the fame"
    assert normalized_rubric_text(reasoning, content, "reasoning", "reference") == b"lady gaga wrote it"
    both = normalized_rubric_text(reasoning, content, "both", "reference")
    assert both == b"lady gaga wrote it the fame"
    with pytest.raises(ValueError, match="unknown rubric text source"):
        normalized_rubric_text(reasoning, content, "everything", "reference")


def test_matcher_cache_is_shared_by_a_group():
    entities = parse_entities(GOLD)
    assert matcher_for(entities, "reference", False) is matcher_for(entities, "reference", False)
    assert matcher_for(entities, "reference", False) is not matcher_for(entities, "unicode", False)


def test_many_entities_single_pass():
    entities = [f"entity number {i}" for i in range(2000)]
    text = " ".join(entities[::2])
    assert rubric_reward(text, entities, whole_word=True).score == pytest.approx(0.5)


# --- equivalence with the plain definition, and invalid code points ---------------------------------------------

def _oracle_found(entities, normalised: bytes, mode: str, whole_word: bool) -> set[int]:
    """The rubric's definition, one substring test per surface form (what the matcher must reproduce exactly): an
    entity is found when any of its normalised forms occurs in the normalised text (between spaces or the ends
    with whole_word); a form that normalises to nothing counts as found in reference mode only."""
    found, padded = set(), b" " + normalised + b" "
    for i, entity in enumerate(entities):
        for form in entity.surface_forms:
            key = normalize_bytes(form, mode)
            if not key:
                if mode == "reference":
                    found.add(i)
            elif (b" " + key + b" " in padded) if whole_word else (key in normalised):
                found.add(i)
    return found


# small alphabets: forms overlap, contain each other and repeat, which is where a leftmost search steps over matches
_ALPHABETS = [
    list("ab "), list("abc -"), list("aab b"), ["a", "b", " ", "中", "文", "é", "x"], ["ab", "ba", " ", "a", "abab"],
]


def _random_entities(rng, alphabet, n):
    entities = []
    for _ in range(n):
        forms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(rng.randint(1, 3))]
        entities.append(Entity(forms[0], tuple(forms[1:])))
    return entities


def test_matcher_equals_the_definition_on_random_overlapping_entities():
    rng = random.Random(2024)
    for _ in range(1500):
        alphabet = rng.choice(_ALPHABETS)
        entities = _random_entities(rng, alphabet, rng.randint(1, 12))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        for mode in ("reference", "unicode"):
            normalised = normalize_bytes(text, mode)
            for whole_word in (False, True):
                got = EntityMatcher(entities, mode, whole_word).found(normalised)
                assert got == _oracle_found(entities, normalised, mode, whole_word), (entities, text, mode, whole_word)


def test_matcher_equals_the_definition_on_long_texts():
    # > 2 x 16 KB with many matches: the first chunk is dense, the rest is scanned for the missing forms only
    # (forms that first occur after the cut, or straddle it, must still be found)
    rng, dense_runs = random.Random(7), 0
    for trial in range(40):
        head_vocab = ["ab", "ba", "a", "b", "abc", "c", "xy"]
        tail_vocab = head_vocab + ["zq", "qz", "zzq", "q"]
        entities = _random_entities(rng, [w + " " for w in tail_vocab] + tail_vocab, rng.randint(5, 25))
        cut = 16384 + rng.randint(-40, 40)
        head = " ".join(rng.choice(head_vocab) for _ in range(cut // 2))[:cut]
        tail = " ".join(rng.choice(tail_vocab if trial % 2 else head_vocab) for _ in range(rng.randint(9000, 30000)))
        normalised = normalize_bytes(head + tail)
        matcher = EntityMatcher(entities, "reference")
        assert matcher.found(normalised) == _oracle_found(entities, normalised, "reference", False), trial
        assert matcher.found(normalised) == _oracle_found(entities, normalised, "reference", False)  # cached automata
        dense_runs += bool(matcher._missing_automata)
    assert dense_runs >= 10  # the test reaches the per-missing-forms automata


@pytest.mark.parametrize("mode", ["reference", "unicode"])
@pytest.mark.parametrize("whole_word", [False, True])
def test_lone_surrogates_never_crash(mode, whole_word):
    # a surrogate is a separator, in the text and in entity names, as the reference regex treats it
    assert rubric_reward("Paris \ud800 France", ["Paris France"], mode, whole_word).score == 1.0
    assert rubric_reward("Paris France", ["Paris\udfff France"], mode, whole_word).score == 1.0
    assert rubric_reward("Par\ud800is", ["Paris"], mode, whole_word).score == 0.0
    text = "Lady\ud83d\ude00Gaga " * 20000  # 240 KB: the long-text paths
    result = rubric_reward(text, ["Lady Gaga", ["\ud800x", "Gaga"], "Akon"], mode, whole_word)
    assert result.matched == ("Lady Gaga", "\ud800x") and result.missing == ("Akon",)
    # an entity that is nothing but surrogates normalises to nothing (found in reference mode, as "" in text)
    assert rubric_reward("anything", ["\ud800\udc00"], mode, whole_word).score == (1.0 if mode == "reference" else 0.0)
