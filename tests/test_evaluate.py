"""Evaluation metrics against closed-form values."""

from math import comb

import pytest

from r1lab.evaluate import majority_vote, pass_at_k, style_of


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (8, 0, 1, 0.0),
        (8, 8, 8, 1.0),
        (8, 2, 1, 2 / 8),  # pass@1 is the mean correctness
        (8, 2, 2, 1 - comb(6, 2) / comb(8, 2)),  # 1 - 15/28
        (64, 3, 8, 1 - comb(61, 8) / comb(64, 8)),
        (10, 5, 6, 1.0),  # fewer than k wrong samples: some correct one is always drawn
    ],
)
def test_pass_at_k_unbiased(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_is_not_first_k_hits():
    """nanochat-style "any hit among the first k" would give 0 here (hits at the end)."""
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


@pytest.mark.parametrize(
    "answers, correct, expected",
    [
        (["6200", "06200", "6201"], [True, True, False], True),  # equivalent strings vote together
        (["1/2", "0.5", "\\frac{1}{2}", "3", "3"], [False] * 3 + [True] * 2, False),  # 3 equivalent beat 2
        (["3", "3", "1/2", "0.5", "\\frac{1}{2}"], [True, True, False, False, False], False),
        (["7", "8"], [False, True], False),  # tie: the class seen first wins
        ([None, None, "5"], [False, False, True], True),  # unextracted answers do not vote
        ([None, None], [False, False], False),
    ],
)
def test_majority_vote_groups_by_equivalence(answers, correct, expected):
    assert majority_vote(answers, correct) is expected


@pytest.mark.parametrize(
    "completion, style",
    [
        ("<think>\n4821+1379,0,00000\n1+9+0=10\n</think>\n<answer>6200</answer>", "reasoning"),
        ("<think>\n</think>\n<answer>6200</answer>", "direct"),
        (" 6200", "unformatted"),
        ("<think> ok </think><answer>1</answer>", "direct"),
    ],
)
def test_style_of(completion, style):
    assert style_of(completion) == style
