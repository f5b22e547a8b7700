import pytest

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
