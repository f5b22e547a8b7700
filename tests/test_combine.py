import pytest

from reward.combine import CombineConfig, ScoreParts, combine_group, combine_sample


def parts(*specs):
    """(correct, rubric) pairs -> ScoreParts with binary outcomes."""
    return [ScoreParts(float(c), bool(c), r) for c, r in specs]


def test_worked_example_094_without_group_normalisation():
    cfg = CombineConfig(group_normalize=False)
    group = combine_group(parts((1, 0.8)), cfg)
    assert group.rewards == [pytest.approx(0.94)]  # 0.7 * 1 + 0.3 * 0.8


def test_group_normalisation_uses_the_max_over_all_samples_including_wrong_ones():
    g = combine_group(parts((1, 0.4), (1, 0.2), (0, 0.8), (0, 0.0)), CombineConfig())
    assert g.rubric_max == 0.8
    assert g.rubric_hat == pytest.approx([0.5, 0.25, 1.0, 0.0])
    assert g.rewards == pytest.approx([0.7 + 0.3 * 0.5, 0.7 + 0.3 * 0.25, 0.0, 0.0])


def test_group_normalisation_with_zero_max_keeps_raw_zero():
    g = combine_group(parts((1, 0.0), (0, 0.0)), CombineConfig())
    assert g.rubric_hat == [0.0, 0.0]
    assert g.rewards == pytest.approx([0.7, 0.0])


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("positive_only", [0.7 + 0.3 * 1.0, 0.0]),
        ("negative_only", [1.0, 0.3 * 0.5]),
        ("both", [0.7 + 0.3 * 1.0, 0.3 * 0.5]),
        ("outcome_only", [1.0, 0.0]),
    ],
)
def test_modes(mode, expected):
    g = combine_group(parts((1, 0.6), (0, 0.3)), CombineConfig(mode=mode))
    assert g.rewards == pytest.approx(expected)


def test_evaluation_forces_eta_zero():
    g = combine_group(parts((1, 0.6), (0, 0.9)), CombineConfig(mode="both"), evaluation=True)
    assert g.rewards == pytest.approx([1.0, 0.0])


def test_eta_override_per_request():
    g = combine_group(parts((1, 0.5)), CombineConfig(group_normalize=False), eta=0.5)
    assert g.rewards == pytest.approx([0.75])


def test_judge_error_drops_the_group_by_default():
    ps = parts((1, 0.5)) + [ScoreParts(0.0, False, 0.5, judge_error="timeout after 3 attempts")]
    g = combine_group(ps, CombineConfig())
    assert g.dropped is not None and "timeout" in g.dropped


def test_judge_error_can_count_as_wrong():
    ps = parts((1, 0.5)) + [ScoreParts(0.0, False, 1.0, judge_error="HTTP 500")]
    g = combine_group(ps, CombineConfig(on_judge_error="zero", mode="both"))
    assert g.dropped is None
    assert g.rewards == pytest.approx([0.7 + 0.3 * 0.5, 0.0])  # failed sample: 0, but its rubric still sets the max


def test_longrlvr_formula():
    eta, r_ans, f = 0.3, 1.0, 0.5
    assert combine_sample(r_ans, True, f, "positive_only", eta, longrlvr=True) == pytest.approx(
        r_ans + eta * f + (1 - eta) * r_ans * f
    )
    assert combine_sample(0.0, False, f, "positive_only", eta, longrlvr=True) == pytest.approx(eta * f)


def test_graded_outcomes_scale_the_correct_branch():
    assert combine_sample(0.6, True, 1.0, "positive_only", 0.3) == pytest.approx(0.7 * 0.6 + 0.3)
    assert combine_sample(0.4, False, 1.0, "positive_only", 0.3) == 0.0


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown combination mode"):
        combine_sample(1.0, True, 1.0, "sometimes", 0.3)


def test_reference_branches_on_the_outcome_value():
    # f1-judge outcomes: 0.4 is wrong for us (below the threshold) but != 0 for LongTraceRL's positive-only branch
    ps = [ScoreParts(0.4, False, 0.5), ScoreParts(0.8, True, 1.0), ScoreParts(0.0, False, 1.0)]
    ours = combine_group(ps, CombineConfig())
    ref = combine_group(ps, CombineConfig(), reference=True)
    assert ours.rewards == pytest.approx([0.0, 0.7 * 0.8 + 0.3, 0.0])
    assert ref.rewards == pytest.approx([0.7 * 0.4 + 0.3 * 0.5, 0.7 * 0.8 + 0.3, 0.0])
    neg = combine_group(ps, CombineConfig(mode="negative_only"), reference=True)
    assert neg.rewards == pytest.approx([0.4, 0.8, 0.3])  # any outcome > 0 is kept
    assert combine_group(ps, CombineConfig(mode="negative_only")).rewards == pytest.approx([0.15, 0.8, 0.3])


def test_reference_and_default_agree_on_binary_outcomes():
    ps = parts((1, 0.4), (1, 0.2), (0, 0.8), (0, 0.0))
    for mode in ("positive_only", "negative_only", "both"):
        cfg = CombineConfig(mode=mode)
        assert combine_group(ps, cfg, reference=True).rewards == combine_group(ps, cfg).rewards
