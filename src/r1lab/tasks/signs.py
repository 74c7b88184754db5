"""Countdown with + and − only, in the given order: "Numbers: 47 17 12. Target: 42" → "47-17+12".

The task of r1lab's "aha moment" (issue 17; DeepSeek-R1 §2.2.4): a first attempt is usually wrong
and checking it can fix it. A candidate is a sign pattern, so there are 2^(n-1) of them and one is
right; checking a candidate is evaluating it left to right with the same digit-by-digit
scratchpad the base model uses for arithmetic (model/corpus.py), then comparing the value with
the target. A model that cannot find the signs in one step (at this scale none can: that would be
multi-digit sums in one step) is right 1/2^(n-1) of the time by guessing, and nearly always by
trying candidates until one checks out.

Generation keeps every running value of every sign pattern a two-digit number (10..99), so the
scratchpad never needs a third digit or a negative number: the first number is at least 10 more
than the sum of the others and at most 99 minus it; the others are distinct numbers in 10..39.
All sign patterns then give different values, so the answer is unique. Splits by a hash of the
problem's canonical text, as every task (`base.split_of`).

Grading: the answer (optionally "expr = target") must be the given numbers in the given order
joined by + and -, and equal the target. `attempts` reads a completion's candidates and checks
(the self-verification metrics of eval/metrics.py and the GRPO step records).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from r1lab.errors import UserError
from r1lab.tasks.base import Problem, check_split, draw_distinct
from r1lab.tasks.prompts import check_langs, pick_langs, signs_prompt

_EXPRESSION = re.compile(r"[0-9]+(?:[+-][0-9]+)*")
_TYPOGRAPHIC = str.maketrans({"−": "-", "＋": "+", "－": "-"})
MAX_ANSWER_CHARS = 200

# The lines of a checked attempt, as the pretraining corpus writes them (model/corpus.py):
#   try 47+17-12                     a candidate
#   47+17,0,00 / 7+7+0=14 / ...      its evaluation (register lines and digit facts), ending at 00+00,0,64... 52
#   check 52-42,0,00 / ... 00-00,0,10  the comparison: the target subtracted from the value reached
#   wrong, wait                      the verdict ("right" when the difference is 00)
TRY_RE = re.compile(r"^\s*try\s+(\S+)\s*$")
REGISTER_RE = re.compile(r"^\s*[0-9]+[+-][0-9]+,[0-9],([0-9]+)\s*$")
CHECK_RE = re.compile(r"^\s*check\s+([0-9]+)-([0-9]+),[0-9],[0-9]+\s*$")
VERDICT_RE = re.compile(r"^\s*(right|wrong)\b")


def key_of(numbers: list[int], target: int) -> str:
    """The canonical text of a problem, numbers in order: "signs:47,17,12->42"."""
    return "signs:" + ",".join(str(x) for x in numbers) + f"->{target}"


def parse_key(key: str) -> tuple[list[int], int]:
    numbers, target = key.removeprefix("signs:").split("->")
    return [int(x) for x in numbers.split(",")], int(target)


def expression(numbers: list[int], signs: tuple[str, ...]) -> str:
    """`numbers` joined by `signs`: ([47, 17, 12], ("-", "+")) -> "47-17+12"."""
    return str(numbers[0]) + "".join(s + str(x) for s, x in zip(signs, numbers[1:]))


def evaluate(text: str) -> int:
    """The value of "47-17+12", left to right."""
    total, sign, number = 0, 1, ""
    for ch in text + "+":
        if ch.isdigit():
            number += ch
        else:
            total, sign, number = total + sign * int(number), (1 if ch == "+" else -1), ""
    return total


def numbers_of(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"[0-9]+", text)]


def is_candidate(text: str, numbers: list[int]) -> bool:
    """Is `text` the numbers, in order, joined by + and -?"""
    return _EXPRESSION.fullmatch(text) is not None and numbers_of(text) == numbers


@dataclass(frozen=True)
class Attempts:
    """What one completion did, read off its text (see `SignsTask.attempts`)."""

    candidates: int  # candidates tried: `try` lines, or 1 for an answer with none
    checks: int  # candidates evaluated (register lines) and then compared with the target
    rejected_wrong: int  # checks that called a candidate wrong that is wrong
    first_right: bool  # the first candidate (or the answer, with no `try`) equals the target
    evaluated: int = 0  # candidates whose evaluation was written out (register lines)
    evaluated_right: int = 0  # of those, the ones whose last register holds the candidate's true value


class SignsTask:
    """Put + or − between `n_numbers` two-digit numbers, in their order, to reach a target."""

    name = "signs"
    langs = ("en",)  # the prompt languages `r1lab eval --data task:signs` and the built-in corpus use

    def __init__(self, n_numbers: int = 3):
        if not isinstance(n_numbers, int) or not 2 <= n_numbers <= 3:  # 4 two-digit numbers leave too few problems
            raise UserError(f"signs: n_numbers must be 2 or 3, got {n_numbers!r}")
        self.n_numbers = n_numbers

    def __repr__(self) -> str:
        return f"SignsTask(n_numbers={self.n_numbers})"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        check_split(split)
        langs = check_langs(langs)
        drawn = draw_distinct(self._draw, split, n, seed, max_draws=200 * n + 10_000, what=repr(self))
        return [self._problem(numbers, signs, lang) for (numbers, signs), lang in zip(drawn, pick_langs(n, seed, langs))]

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Is `extracted` ("expr" or "expr = target") the numbers in order, joined by + and -, equal to the target?"""
        if extracted is None or len(extracted) > MAX_ANSWER_CHARS:
            return False
        numbers, target = parse_key(problem.key)
        text = "".join(extracted.translate(_TYPOGRAPHIC).split())
        left, eq, right = text.partition("=")
        if eq and right != str(target):
            return False
        return is_candidate(left, numbers) and evaluate(left) == target

    def attempts(self, completion: str, problem: Problem, answer: str | None) -> Attempts:
        """Candidates, checks and rejections in `completion`; `answer` is its extracted answer.

        A check is a `try` line with a candidate, at least one register line evaluating it, then a
        `check V-T` line whose V is the value that evaluation arrived at (its last register) and
        whose T is this problem's target, then a verdict line. A verdict without an evaluation or
        a comparison, a copied prompt, a number that happens to equal the target, or "wait" on
        its own is not a check.
        """
        numbers, target = parse_key(problem.key)
        tried: list[str] = []
        checks = rejected = evaluated = evaluated_right = 0
        current, result, comparing = None, None, False  # the candidate, the value its registers reached

        def close() -> None:  # the end of one candidate's evaluation
            nonlocal evaluated, evaluated_right
            if current and result is not None:
                evaluated += 1
                evaluated_right += result == evaluate(current)

        for line in completion.splitlines():
            if m := TRY_RE.match(line):
                close()
                current = m.group(1) if is_candidate(m.group(1), numbers) else None
                result, comparing = None, False
                if current:
                    tried.append(current)
            elif m := CHECK_RE.match(line):
                comparing = bool(current and result is not None and int(m.group(1)) == result
                                 and int(m.group(2)) == target)
                close()
                result = None  # counted once; the comparison's own registers are not the candidate's
                if not comparing:
                    current = None
            elif (m := REGISTER_RE.match(line)) and current and not comparing:
                result = int(m.group(1))
            elif (m := VERDICT_RE.match(line)) and current and comparing:
                checks += 1
                rejected += m.group(1) == "wrong" and evaluate(current) != target
                current, result, comparing = None, None, False
        close()
        if not tried and answer is not None:
            text = "".join(answer.translate(_TYPOGRAPHIC).split())
            tried = [text] if is_candidate(text, numbers) else []
        first_right = bool(tried) and evaluate(tried[0]) == target
        return Attempts(max(len(tried), 1), checks, rejected, first_right, evaluated, evaluated_right)

    def _draw(self, rng: random.Random) -> tuple[str, tuple[list[int], tuple[str, ...]]] | None:
        rest = rng.sample(range(10, 40), self.n_numbers - 1)
        s = sum(rest)
        if s + 10 > 99 - s:
            return None
        numbers = [rng.randint(s + 10, 99 - s)] + rest
        values = [evaluate(expression(numbers, p)) for p in sign_patterns(self.n_numbers)]
        if len(set(values)) < len(values):  # two sign patterns reach the same value: not unique
            return None
        signs = tuple(rng.choice("+-") for _ in rest)
        target = evaluate(expression(numbers, signs))
        return key_of(numbers, target), (numbers, signs)

    def _problem(self, numbers: list[int], signs: tuple[str, ...], lang: str) -> Problem:
        target = evaluate(expression(numbers, signs))
        return Problem(
            key=key_of(numbers, target),
            prompt=signs_prompt(numbers, target, lang),
            answer=expression(numbers, signs),
            task=self.name,
            lang=lang,
            meta={"numbers": list(numbers), "target": target},
        )


def sign_patterns(n_numbers: int) -> list[tuple[str, ...]]:
    """Every candidate's signs, in a fixed order."""
    return list(itertools.product("+-", repeat=n_numbers - 1))
