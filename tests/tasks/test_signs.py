"""The signs task (Countdown with + and - in order): its problems, its grader's case table, and the
candidate/check counter on hand-written completions, lookalikes included."""

from __future__ import annotations

import pytest

from r1lab.errors import UserError
from r1lab.tasks import get_task, make_task
from r1lab.tasks.attempts import attempt_metrics, attempts_of
from r1lab.tasks.signs import evaluate, expression, parse_key, sign_patterns

TASK = make_task("signs")
PROBLEM = TASK.problems("train", 1, seed=0)[0]  # signs:52,23,11->18, gold 52-23-11


def test_problem_shape():
    assert PROBLEM.key == "signs:52,23,11->18" and PROBLEM.answer == "52-23-11"
    assert PROBLEM.prompt.endswith("Numbers: 52 23 11. Target: 18")
    assert "*" not in PROBLEM.prompt and "/" not in PROBLEM.prompt  # the prompt names only + and -


@pytest.mark.parametrize("n_numbers", [2, 3])
def test_every_pattern_stays_two_digit_and_the_answer_is_unique(n_numbers):
    for p in make_task("signs", n_numbers=n_numbers).problems("test", 100, seed=5):
        numbers, target = parse_key(p.key)
        values = []
        for signs in sign_patterns(n_numbers):
            running = numbers[0]
            for s, x in zip(signs, numbers[1:]):
                running += x if s == "+" else -x
                assert 10 <= running <= 99, (p.key, signs)
            values.append(running)
        assert values.count(target) == 1 and evaluate(p.answer) == target


def test_splits_are_disjoint_and_deterministic():
    train = {p.key for p in TASK.problems("train", 2000, seed=0)}
    test = {p.key for p in TASK.problems("test", 200, seed=1)}
    assert not train & test
    assert [p.key for p in TASK.problems("test", 50, seed=1)] == [p.key for p in TASK.problems("test", 50, seed=1)]


@pytest.mark.parametrize("answer, right", [
    ("52-23-11", True),
    (" 52 - 23 - 11 ", True),
    ("52−23−11", True),  # typographic minus
    ("52-23-11 = 18", True),
    ("52-23-11=19", False),  # a wrong right-hand side
    ("52+23-11", False),  # another candidate
    ("52-11-23", False),  # right value, numbers out of order
    ("52-34", False),  # not the given numbers
    ("(52-23)-11", False),  # parentheses are not part of the task
    ("52-23-11-0", False),  # an extra number
    ("-52+23+11+36", False),
    ("18", False),  # the target itself
    ("", False),
    (None, False),
    ("5" * 300, False),
])
def test_grader_case_table(answer, right):
    assert TASK.grade(answer, PROBLEM) is right
    assert get_task("signs").grade(answer, PROBLEM) is right  # a default instance grades the same


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="n_numbers"):
        make_task("signs", n_numbers=4)


# --- the candidate/check counter ------------------------------------------------------------------

EVAL_64 = "52+23,0,00\n2+3+0=05\n05+02,0,50\n5+2+0=07\n00+00,0,75\n75-11,0,00\n5-1-0=04\n07-01,0,40\n" \
          "7-1-0=06\n00-00,0,64"
EVAL_18 = "52-23,0,00\n2-3-0=19\n05-02,1,90\n5-2-1=02\n00-00,0,29\n29-11,0,00\n9-1-0=08\n02-01,0,80\n" \
          "2-1-0=01\n00-00,0,18"
CHECK_64 = "want 18\ncheck 64-18,0,00\n4-8-0=16\n06-01,1,60\n6-1-1=04\n00-00,0,46\nwrong, wait"
CHECK_18 = "want 18\ncheck 18-18,0,00\n8-8-0=00\n01-01,0,00\n1-1-0=00\n00-00,0,00\nright"


def think(body: str, answer: str) -> str:
    return f"<think>\n{body}\n</think>\n<answer>{answer}</answer>"


CASES = [  # (name, completion, candidates, checks, rejected wrong, first right)
    ("bare wrong guess", think("", "52+23-11"), 1, 0, 0, False),
    ("bare right guess", think("", "52-23-11"), 1, 0, 0, True),
    ("evaluated, not compared", think("try 52+23-11\n" + EVAL_64, "52+23-11"), 1, 0, 0, False),
    ("checked and retried", think("try 52+23-11\n" + EVAL_64 + "\n" + CHECK_64 + "\ntry 52-23-11\n" + EVAL_18
                                  + "\n" + CHECK_18, "52-23-11"), 2, 2, 1, False),
    ("checked first time", think("try 52-23-11\n" + EVAL_18 + "\n" + CHECK_18, "52-23-11"), 1, 1, 0, True),
    # lookalikes that are not checks
    ("a copied prompt", think("Numbers: 52 23 11. Target: 18", "52-23-11"), 1, 0, 0, True),
    ("a number equal to the target", think("try 52-23-11\n18\nright", "52-23-11"), 1, 0, 0, True),
    ("a phrase without an evaluation", think("wait, let me check\ntry 52+23-11\nwrong, wait", "52+23-11"),
     1, 0, 0, False),
    ("a comparison without an evaluation", think("try 52+23-11\n" + CHECK_64, "52+23-11"), 1, 0, 0, False),
    ("a comparison with another target", think("try 52+23-11\n" + EVAL_64 + "\ncheck 64-64,0,00\n00-00,0,00\nright",
                                              "52+23-11"), 1, 0, 0, False),
    ("a comparison of a value the evaluation did not reach",
     think("try 52+23-11\n" + EVAL_64 + "\n" + CHECK_18, "52+23-11"), 1, 0, 0, False),
    ("a candidate that is not one", think("try 52*23-11\n" + EVAL_64 + "\n" + CHECK_64, "52-23-11"), 1, 0, 0, True),
    ("rejecting a right candidate is a check, not a wrong one rejected",
     think("try 52-23-11\n" + EVAL_18 + "\n" + CHECK_18.replace("right", "wrong, wait"), "52-23-11"), 1, 1, 0, True),
    ("no answer at all", "52 23 11", 1, 0, 0, False),
]


@pytest.mark.parametrize("name, text, candidates, checks, rejected, first_right", CASES, ids=[c[0] for c in CASES])
def test_attempt_counter(name, text, candidates, checks, rejected, first_right):
    (a,) = attempts_of([text], [PROBLEM])
    assert (a.candidates, a.checks, a.rejected_wrong, a.first_right) == (candidates, checks, rejected, first_right)


def test_evaluations_are_counted_once_and_judged_against_the_candidate():
    text = think("try 52+23-11\n" + EVAL_64 + "\n" + CHECK_64 + "\ntry 52-23-11\n" + EVAL_64, "52-23-11")
    (a,) = attempts_of([text], [PROBLEM])
    assert (a.evaluated, a.evaluated_right) == (2, 1)  # the second evaluation reached 64, not 18


def test_attempt_metrics():
    texts = [c[1] for c in CASES[:5]]
    per = attempts_of(texts, [PROBLEM] * 5)
    styles = ["direct", "direct", "reasoning", "reasoning", "reasoning"]
    m = attempt_metrics(per, styles, [False, True, False, True, True])
    assert m["self_check_rate"] == pytest.approx(2 / 5)
    assert m["self_check_rate_reasoning"] == pytest.approx(2 / 3)
    assert m["attempts_mean"] == pytest.approx(6 / 5)
    assert m["first_candidate_accuracy"] == pytest.approx(2 / 5)
    assert m["rejection_rate"] == pytest.approx(1 / 5) and m["rejected_accuracy"] == 1.0
    assert m["unrejected_accuracy"] == pytest.approx(2 / 4)


def test_other_tasks_have_no_attempt_metrics():
    arithmetic = make_task("arithmetic").problems("test", 1, seed=0)[0]
    (a,) = attempts_of(["<think>\nwait\n</think>\n<answer>1</answer>"], [arithmetic])
    assert a is None
    assert set(attempt_metrics([a], ["reasoning"]).values()) == {None}


def test_expression():
    assert expression([52, 23, 11], ("-", "+")) == "52-23+11" and evaluate("52-23+11") == 40
