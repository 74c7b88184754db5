"""Splits by hash: stable across runs, the right proportion, and no silent infinite loops."""

import pytest

from r1lab.errors import UserError
from r1lab.tasks.base import check_split, draw_distinct, split_of


def test_split_of_is_pinned():
    # Pinned: a change here would silently move problems between train and test.
    assert [split_of(k) for k in ["1000+1005", "1002+1000", "1002+1003"]] == ["test"] * 3
    assert [split_of(k) for k in ["4821+1379", "countdown:3,7,25->46", "1000+1000"]] == ["train"] * 3
    assert split_of("What is 2+2?", 50) == "test"


def test_split_of_proportion_and_extremes():
    keys = [f"key-{i}" for i in range(20_000)]
    share = sum(split_of(k) == "test" for k in keys) / len(keys)
    assert 0.09 < share < 0.11
    assert {split_of(k, 0) for k in keys[:500]} == {"train"}
    assert {split_of(k, 100) for k in keys[:500]} == {"test"}


def test_check_split():
    assert check_split("train") == "train"
    with pytest.raises(UserError, match="'dev'"):
        check_split("dev")


def test_draw_distinct_gives_up_with_user_error():
    draw = lambda rng: ("same-key-every-time", 1)  # noqa: E731
    with pytest.raises(UserError, match="found only"):
        draw_distinct(draw, split_of("same-key-every-time"), n=2, seed=0, max_draws=100, what="a constant")
