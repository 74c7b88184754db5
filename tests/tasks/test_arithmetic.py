"""Arithmetic problems: gold answers recomputed here, splits disjoint, determinism, grading."""

import itertools
import re
import time

import pytest

from r1lab.errors import UserError
from r1lab.tasks.arithmetic import ArithmeticTask
from r1lab.tasks.base import LANGS, Problem, split_of

from .reference_eval import evaluate

CONFIGS = [
    dict(digits=4, terms=2, ops="+"),
    dict(digits=2, terms=3, ops="+-"),
    dict(digits=3, terms=4, ops="+-*"),
    dict(digits=2, terms=2, ops="-"),
]


def running_values(key: str) -> list:
    """The value of every prefix of `key` that ends just before a '+' or '-' (and of the whole key)."""
    cuts = [m.start() for m in re.finditer(r"[+-]", key)] + [len(key)]
    return [evaluate(key[:cut]) for cut in cuts]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_problems_are_well_formed_and_gold_is_right(config):
    task = ArithmeticTask(**config)
    for split in ("train", "test"):
        problems = task.problems(split, n=30, seed=1, langs=LANGS)
        assert len({p.key for p in problems}) == 30
        for p in problems:
            operands = [int(x) for x in re.split(r"[-+*]", p.key)]
            assert p.answer == str(evaluate(p.key)) and int(p.answer) >= 0
            assert min(running_values(p.key)) >= 0
            assert operands == p.meta["operands"] and re.findall(r"[-+*]", p.key) == p.meta["ops"]
            assert len(operands) == config["terms"] and all(len(str(x)) == config["digits"] for x in operands)
            assert set(p.meta["ops"]) <= set(config["ops"])
            assert split_of(p.key) == split and p.task == "arithmetic" and p.lang in LANGS
            assert p.prompt.endswith(p.key) and " " not in p.key


def test_operators_are_drawn_uniformly_enough():
    problems = ArithmeticTask(digits=3, terms=3, ops="+*").problems("train", n=500, seed=0)
    ops = [op for p in problems for op in p.meta["ops"]]
    assert 0.4 < ops.count("*") / len(ops) < 0.6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_space_splits_are_disjoint_and_test_is_complete(seed):
    every = {f"{a}+{b}" for a, b in itertools.product(range(10, 100), repeat=2)}
    expected_test = {k for k in every if split_of(k) == "test"}
    task = ArithmeticTask(digits=2, terms=2, ops="+")
    train = {p.key for p in task.problems("train", n=2000, seed=seed)}
    test = {p.key for p in task.problems("test", n=len(expected_test), seed=seed)}
    assert len(train) == 2000 and test == expected_test
    assert not train & test
    with pytest.raises(UserError, match="only"):
        task.problems("test", n=len(expected_test) + 1, seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_splits_are_disjoint(seed):
    task = ArithmeticTask(digits=4, terms=2, ops="+-")
    train = {p.key for p in task.problems("train", n=2000, seed=seed)}
    test = {p.key for p in task.problems("test", n=500, seed=seed)}
    assert len(train) == 2000 and len(test) == 500 and not train & test


@pytest.mark.parametrize("config", [CONFIGS[0], dict(digits=1, terms=2, ops="+-")], ids=str)
def test_deterministic_in_seed_and_prefix_stable(config):
    task = ArithmeticTask(**config)
    first = task.problems("train", n=20, seed=7, langs=LANGS)
    assert first == ArithmeticTask(**config).problems("train", n=20, seed=7, langs=LANGS)
    assert first[:10] == task.problems("train", n=10, seed=7, langs=LANGS)
    assert [p.key for p in first] != [p.key for p in task.problems("train", n=20, seed=8)]
    # The language draw does not change which problems a seed gives.
    assert [p.key for p in first] == [p.key for p in task.problems("train", n=20, seed=7, langs=("en",))]


@pytest.mark.parametrize(
    "extracted, correct",
    [
        ("6200", True),
        ("  6200\n", True),
        ("+6200", True),
        ("6,200", True),
        ("06200", True),
        ("62,00", False),
        ("6,2000", False),
        ("6200.0", False),
        ("6.2e3", False),
        ("6_200", False),
        ("-6200", False),
        ("6201", False),
        ("6200 apples", False),
        ("", False),
        (None, False),
        ("9" * 10_000, False),
    ],
)
def test_grade(extracted, correct):
    problem = Problem(key="4821+1379", prompt="Compute: 4821+1379", answer="6200", task="arithmetic")
    started = time.perf_counter()
    assert ArithmeticTask().grade(extracted, problem) is correct
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("config", [dict(digits=0), dict(terms=1), dict(ops="/"), dict(ops=""), dict(digits="4")])
def test_bad_settings_are_user_errors(config):
    with pytest.raises(UserError):
        ArithmeticTask(**config)


def test_unreachable_settings_give_up_with_user_error():
    # Eleven 1-digit operands joined by '-' always go negative.
    with pytest.raises(UserError):
        ArithmeticTask(digits=1, terms=11, ops="-").problems("train", n=1, seed=0)


def test_unknown_split_or_language_is_a_user_error():
    with pytest.raises(UserError):
        ArithmeticTask().problems("validation", n=1, seed=0)
    with pytest.raises(UserError):
        ArithmeticTask().problems("train", n=1, seed=0, langs=("xx",))
