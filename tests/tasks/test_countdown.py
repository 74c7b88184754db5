"""Countdown: solvable problems, gold answers checked here, and grading that hostile answers cannot fool."""

import builtins
import time
from collections import Counter

import pytest

from r1lab.errors import UserError
from r1lab.tasks.base import LANGS, split_of
from r1lab.tasks.countdown import CountdownTask, key_of, parse_key, solve

from .reference_eval import evaluate, literals

TASK = CountdownTask()
PROBLEM = TASK.problem([25, 3, 7], 46)  # key "countdown:3,7,25->46"


def uses_given_numbers(expression: str, numbers: list[int]) -> bool:
    return not Counter(literals(expression)) - Counter(numbers)


@pytest.mark.parametrize("split", ["train", "test"])
def test_problems_are_solvable_and_gold_is_right(split):
    for p in TASK.problems(split, n=300, seed=0, langs=LANGS):
        numbers, target = p.meta["numbers"], p.meta["target"]
        assert len(numbers) == 3 and all(1 <= x <= 50 for x in numbers)
        assert 1 <= target <= 200 and target not in numbers
        assert p.key == "countdown:" + ",".join(map(str, sorted(numbers))) + f"->{target}"
        assert split_of(p.key) == split and p.lang in LANGS and p.task == "countdown"
        assert evaluate(p.answer) == target and uses_given_numbers(p.answer, numbers)
        assert TASK.grade(p.answer, p)
        found = solve(numbers, target)
        assert found is not None and evaluate(found) == target and uses_given_numbers(found, numbers)
        assert str(target) in p.prompt and str(numbers[0]) in p.prompt


def test_configured_task_respects_its_settings():
    task = CountdownTask(n_numbers=4, max_number=9, max_target=30)
    for p in task.problems("train", n=100, seed=1):
        assert len(p.meta["numbers"]) == 4 and max(p.meta["numbers"]) <= 9 and p.meta["target"] <= 30
        assert evaluate(p.answer) == p.meta["target"] and task.grade(p.answer, p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_disjoint(seed):
    train = {p.key for p in TASK.problems("train", n=2000, seed=seed)}
    test = {p.key for p in TASK.problems("test", n=300, seed=seed)}
    assert len(train) == 2000 and len(test) == 300 and not train & test


def test_deterministic_in_seed_and_prefix_stable():
    first = TASK.problems("train", n=20, seed=5, langs=LANGS)
    assert first == CountdownTask().problems("train", n=20, seed=5, langs=LANGS)
    assert first[:7] == TASK.problems("train", n=7, seed=5, langs=LANGS)
    assert [p.key for p in first] != [p.key for p in TASK.problems("train", n=20, seed=6)]
    assert [p.answer for p in first] == [p.answer for p in TASK.problems("train", n=20, seed=5)]


@pytest.mark.parametrize(
    "answer",
    [
        "25+7*3",
        "7*3+25",
        " ( 25 + 3 * 7 ) ",
        "25+7×3",
        "25+7*3 = 46",
        "25+7*3=46",
        "((25))+((7*3))",
    ],
)
def test_correct_answers(answer):
    assert TASK.grade(answer, PROBLEM)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "",
        "46",  # not one of the numbers
        "25+21",  # 21 not given
        "25+25-4",  # 25 reused, 4 not given
        "25+7*3 = 47",
        "25+7*3 = 46 = 46",
        "25+7*3 == 46",
        "-3+7*7",  # unary minus
        "+25+7*3",
        "25.0+7*3",
        "46.0",
        "25+7*3.",
        "1e1",
        "25+7**3",
        "2**999999",
        "9**9**9",
        "25//7",
        "x",
        "True",
        "[25, 7, 3]",
        "(25, 7, 3)",
        "()",
        "3 7 25",
        "0x19+7*3",
        "25+7_0",
        "__import__('os').system('x')",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: 46",
        "'46'",
        "25+7*3; 46",
        "25 + 7 * 3 # 46",
        "(" * 10_000 + "46" + ")" * 10_000,
        "(" * 10_000,
        "1" * 10_000,
        "+".join(["25"] * 5000),
    ],
)
def test_hostile_and_invalid_answers_are_wrong_and_quick(answer):
    started = time.perf_counter()
    assert TASK.grade(answer, PROBLEM) is False
    assert time.perf_counter() - started < 0.05


def test_division_by_zero_and_exact_fractions():
    problem = TASK.problem([3, 3, 7], 10)
    assert not TASK.grade("7/(3-3)", problem)
    assert TASK.grade("7+3", problem)
    fractions = TASK.problem([3, 6, 8], 16)
    assert TASK.grade("8/(3/6)", fractions)  # 8 / 0.5, exact
    thirds = TASK.problem([1, 3, 9], 3)
    assert not TASK.grade("9/3+1-1/3", thirds)  # 1 reused
    # In floats 8/(3-8/3) is 23.99999999999999; exact arithmetic gets 24.
    assert TASK.grade("8/(3-8/3)", TASK.problem([3, 3, 8, 8], 24))


def test_grading_never_calls_eval_or_exec(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert TASK.grade("25+7*3", PROBLEM)
    assert not TASK.grade("__import__('os').system('x')", PROBLEM)


def test_grade_reads_the_key_not_meta():
    bare = type(PROBLEM)(key=PROBLEM.key, prompt=PROBLEM.prompt, answer=PROBLEM.answer, task="countdown")
    assert TASK.grade("25+7*3", bare)


@pytest.mark.parametrize(
    "numbers, target, solvable",
    [([3, 7, 25], 46, True), ([4, 6], 24, True), ([3, 6, 8], 16, True), ([1, 1], 5, False), ([2, 2, 2], 9, False),
     ([1, 5, 5, 5], 24, True), ([7], 7, True)],
)
def test_solve(numbers, target, solvable):
    found = solve(numbers, target)
    assert (found is not None) == solvable
    if solvable:
        assert evaluate(found) == target and uses_given_numbers(found, numbers)


def test_solve_uses_fractions():
    # 28 from [1, 2, 3, 8] needs a non-integer step, e.g. 8*(3+1/2) (checked by an integer-only search).
    found = solve([1, 2, 3, 8], 28)
    assert found is not None and evaluate(found) == 28 and uses_given_numbers(found, [1, 2, 3, 8])


def test_key_round_trip_and_problem_helper():
    assert key_of([25, 3, 7], 46) == "countdown:3,7,25->46" == PROBLEM.key
    assert parse_key(PROBLEM.key) == ([3, 7, 25], 46)
    assert TASK.problem([25, 3, 7], 46, lang="ko").lang == "ko"
    with pytest.raises(UserError):
        TASK.problem([1, 1], 5)


@pytest.mark.parametrize("settings", [dict(n_numbers=1), dict(n_numbers=7), dict(max_number=0), dict(max_target=0)])
def test_bad_settings_are_user_errors(settings):
    with pytest.raises(UserError):
        CountdownTask(**settings)


def test_too_small_a_space_gives_up_with_user_error():
    with pytest.raises(UserError):
        CountdownTask(n_numbers=2, max_number=2).problems("train", n=5, seed=0)
