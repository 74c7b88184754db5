"""Multi-step integer arithmetic: "Compute: 4821+1379", answer "6200".

The smallest verifiable task: a tiny model trained on CPU can learn it, the answer is a single
integer, and grading is an exact comparison, so the R1-Zero accuracy reward has no false
positives to exploit.

Every operand has exactly `digits` digits (leading digit non-zero); operators are drawn uniformly
from `ops` and follow the usual precedence ("*" before "+" and "-"). With "-" allowed, only
problems whose running value (the sum so far of the "+"/"-"-separated terms) never goes negative
are kept, so every answer is a non-negative integer.

Splits: the test split is ~10% of ALL possible expressions, chosen by a hash of the expression
text (`base.split_of`), so "4821+1379" is a test problem for every seed and every run, and
training never sees it. Small spaces (e.g. 1-digit sums) are enumerated so that asking for more
problems than exist raises UserError instead of looping.

    >>> task = ArithmeticTask(digits=2, terms=3, ops="+-")
    >>> task.problems("train", n=2, seed=0, langs=("en", "zh"))
"""

from __future__ import annotations

import itertools
import random
import re

from r1lab.errors import UserError
from r1lab.tasks.base import Problem, check_split, draw_distinct, split_of
from r1lab.tasks.prompts import arithmetic_prompt, check_langs, pick_langs

ALLOWED_OPS = "+-*"
ENUMERATE_LIMIT = 20_000  # spaces at most this big are listed in full instead of sampled
_INTEGER = re.compile(r"[0-9]+|[0-9]{1,3}(,[0-9]{3})+")  # ASCII digits, optionally comma-grouped
MAX_ANSWER_CHARS = 4000  # under Python's 4,300-digit int(str) limit: longer answers are wrong, not a crash


def expression_of(operands: list[int], ops: list[str]) -> str:
    """The expression text with no spaces, e.g. "12+345-67"."""
    return str(operands[0]) + "".join(op + str(x) for op, x in zip(ops, operands[1:]))


def value_of(operands: list[int], ops: list[str]) -> tuple[int, int]:
    """(value, lowest running value) of `operands` joined by `ops`, "*" binding tighter.

    The running value is the sum after each "+"/"-"-separated term, left to right.
    """
    total, lowest = 0, 0
    sign, product = 1, operands[0]
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            product *= x
            continue
        total += sign * product
        lowest = min(lowest, total)
        sign, product = (1 if op == "+" else -1), x
    total += sign * product
    return total, min(lowest, total)


def parse_integer(text: str) -> int | None:
    """`text` as an integer after stripping whitespace, a leading '+' and thousands commas; else None."""
    text = text.strip()
    negative = text.startswith("-")
    text = text.removeprefix("-") if negative else text.removeprefix("+")
    if len(text) > MAX_ANSWER_CHARS or not _INTEGER.fullmatch(text):
        return None
    value = int(text.replace(",", ""))
    return -value if negative else value


class ArithmeticTask:
    """Integer expressions of `terms` operands of `digits` digits joined by operators from `ops`."""

    name = "arithmetic"

    def __init__(self, digits: int = 4, terms: int = 2, ops: str = "+"):
        if not isinstance(digits, int) or not 1 <= digits <= 18:
            raise UserError(f"arithmetic: digits must be an integer from 1 to 18, got {digits!r}")
        if not isinstance(terms, int) or terms < 2:
            raise UserError(f"arithmetic: terms must be an integer of at least 2, got {terms!r}")
        if not isinstance(ops, str) or not ops or any(op not in ALLOWED_OPS for op in ops):
            raise UserError(f"arithmetic: ops must be a non-empty string of {ALLOWED_OPS!r}, got {ops!r}")
        self.digits, self.terms = digits, terms
        self.ops = "".join(dict.fromkeys(ops))  # "+-+" would otherwise weight "+" double
        self.low, self.high = 10 ** (digits - 1), 10**digits - 1

    def __repr__(self) -> str:
        return f"ArithmeticTask(digits={self.digits}, terms={self.terms}, ops={self.ops!r})"

    def space_size(self) -> int:
        """How many expressions the settings allow before the non-negativity filter."""
        return (self.high - self.low + 1) ** self.terms * len(self.ops) ** (self.terms - 1)

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """`n` distinct problems of `split`, deterministic in `seed`; languages drawn from `langs`."""
        check_split(split)
        langs = check_langs(langs)
        if self.space_size() <= ENUMERATE_LIMIT:
            expressions = self._listed(split, n, seed)
        else:
            expressions = draw_distinct(self._draw, split, n, seed, max_draws=100 * n + 10_000, what=repr(self))
        chosen_langs = pick_langs(n, seed, langs)
        return [self._problem(operands, ops, lang) for (operands, ops), lang in zip(expressions, chosen_langs)]

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Is `extracted` the gold integer? Whitespace, a leading '+' and thousands commas are ignored."""
        if extracted is None:
            return False
        return parse_integer(extracted) == int(problem.answer)

    def _draw(self, rng: random.Random) -> tuple[str, tuple[list[int], list[str]]] | None:
        """One uniformly drawn expression as (key, (operands, ops)), or None if it goes negative."""
        operands = [rng.randint(self.low, self.high) for _ in range(self.terms)]
        ops = [rng.choice(self.ops) for _ in range(self.terms - 1)]
        if value_of(operands, ops)[1] < 0:
            return None
        return expression_of(operands, ops), (operands, ops)

    def _listed(self, split: str, n: int, seed: int) -> list[tuple[list[int], list[str]]]:
        """All valid expressions of `split` in a seeded order, cut to `n`: for spaces small enough to list."""
        numbers = range(self.low, self.high + 1)
        valid = [
            (list(operands), list(ops))
            for operands in itertools.product(numbers, repeat=self.terms)
            for ops in itertools.product(self.ops, repeat=self.terms - 1)
            if value_of(list(operands), list(ops))[1] >= 0 and split_of(expression_of(operands, ops)) == split
        ]
        if len(valid) < n:
            raise UserError(f"{self!r} has only {len(valid)} {split} problems, {n} were asked for")
        random.Random(seed).shuffle(valid)
        return valid[:n]

    def _problem(self, operands: list[int], ops: list[str], lang: str) -> Problem:
        """The Problem for one expression, phrased in `lang`."""
        key = expression_of(operands, ops)
        return Problem(
            key=key,
            prompt=arithmetic_prompt(key, lang),
            answer=str(value_of(operands, ops)[0]),
            task=self.name,
            lang=lang,
            meta={"operands": list(operands), "ops": list(ops)},
        )
