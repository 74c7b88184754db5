"""Countdown, the task TinyZero used to reproduce R1-Zero's "aha moment" on a small model.

Given a few numbers and a target, write an expression with + - * / and parentheses that uses each
given number at most once and equals the target, e.g. numbers [3, 7, 25], target 46:
"25+7*3". Many answers are right, so grading evaluates the model's expression rather than
comparing it with the gold one.

Generation: draw `n_numbers` numbers from 1..`max_number` (repeats allowed, as in TinyZero), then a
random expression tree over a random subset of two or more of them in random order; keep it if
its value is a whole number in 1..`max_target` that is not itself one of the numbers (that would
make the problem trivial). So every problem is solvable, and the gold `answer` is that expression.

Grading parses the answer with `ast` and evaluates it exactly with `Fraction`; it never calls
eval or exec. Only + - * /, parentheses and integer literals are allowed: no unary minus (the
game combines the given numbers; "-3" is not one of them), no powers, names, calls or floats.
Intermediate fractions are fine: 8/(3/6) = 16 is a correct answer.

Splits: ~10% of all (numbers, target) keys are test problems, by a hash of the key
(`base.split_of`), for every seed.
"""

from __future__ import annotations

import ast
import itertools
import operator
import random
import re
from collections import Counter
from fractions import Fraction

from r1lab.errors import UserError
from r1lab.tasks.base import Problem, check_split, draw_distinct
from r1lab.tasks.prompts import check_langs, countdown_prompt, pick_langs

# An expression tree: a number, or (operator, left, right).
Node = int | tuple[str, "Node", "Node"]

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
AST_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_ANSWER_CHARS = 200
_ANSWER_CHARS = re.compile(r"[0-9+\-*/() ]*")  # anything else (names, dots, quotes, commas) is wrong
_TYPOGRAPHIC = str.maketrans({"×": "*", "÷": "/", "−": "-"})  # what a model writing zh/ja may emit


class InvalidAnswer(Exception):
    """The answer is not an expression the rules allow."""


def key_of(numbers: list[int], target: int) -> str:
    """The canonical text of a problem, numbers sorted: "countdown:3,7,25->46"."""
    return "countdown:" + ",".join(str(x) for x in sorted(numbers)) + f"->{target}"


def parse_key(key: str) -> tuple[list[int], int]:
    """(numbers, target) back from `key_of`; grading reads them here, so `meta` may be lost in transit."""
    numbers, target = key.removeprefix("countdown:").split("->")
    return [int(x) for x in numbers.split(",")], int(target)


def render(node: Node) -> str:
    """The expression with only the parentheses it needs: ("*", ("+", 3, 4), 5) -> "(3+4)*5"."""
    if isinstance(node, int):
        return str(node)
    op, left, right = node
    left_text, right_text = render(left), render(right)
    if not isinstance(left, int) and PRECEDENCE[left[0]] < PRECEDENCE[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int) and (
        PRECEDENCE[right[0]] < PRECEDENCE[op] or (PRECEDENCE[right[0]] == PRECEDENCE[op] and op in "-/")
    ):
        right_text = f"({right_text})"
    return left_text + op + right_text


def value(node: Node) -> Fraction:
    """The exact value of a tree; ZeroDivisionError if it divides by zero."""
    if isinstance(node, int):
        return Fraction(node)
    op, left, right = node
    return OPERATORS[op](value(left), value(right))


def random_tree(numbers: list[int], rng: random.Random) -> Node:
    """A random binary tree with `numbers` as leaves in this order and random operators."""
    if len(numbers) == 1:
        return numbers[0]
    cut = rng.randint(1, len(numbers) - 1)
    return (rng.choice("+-*/"), random_tree(numbers[:cut], rng), random_tree(numbers[cut:], rng))


def solve(numbers: list[int], target: int) -> str | None:
    """An expression over `numbers` (each at most once) equal to `target`, or None if there is none.

    Brute force: repeatedly replace two values by one of their combinations, remembering which
    multisets of values were already explored. Instant for 3-4 numbers; 6 numbers with no
    solution take ~20 s, as every reachable multiset must be tried.
    """
    goal = Fraction(target)
    explored: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, Node]]) -> Node | None:
        for v, node in items:
            if v == goal:
                return node
        state = tuple(sorted(v for v, _ in items))
        if len(items) < 2 or state in explored:
            return None
        explored.add(state)
        for i, j in itertools.combinations(range(len(items)), 2):
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            for combined in _combinations(items[i], items[j]):
                found = search(rest + [combined])
                if found is not None:
                    return found
        return None

    found = search([(Fraction(x), x) for x in numbers])
    return None if found is None else render(found)


def _combinations(a: tuple[Fraction, Node], b: tuple[Fraction, Node]) -> list[tuple[Fraction, Node]]:
    """Every value one operator makes from `a` and `b`, both orders where the order matters."""
    (x, p), (y, q) = a, b
    out = [(x + y, ("+", p, q)), (x * y, ("*", p, q)), (x - y, ("-", p, q)), (y - x, ("-", q, p))]
    if y != 0:
        out.append((x / y, ("/", p, q)))
    if x != 0:
        out.append((y / x, ("/", q, p)))
    return out


def answer_value(text: str, numbers: list[int]) -> Fraction:
    """The exact value of the answer `text`, or InvalidAnswer if the rules forbid it.

    Checks, cheapest first: length, characters, syntax, node types, that the literals are a
    sub-multiset of `numbers`; only then evaluates (ZeroDivisionError becomes InvalidAnswer).
    """
    text = " ".join(text.translate(_TYPOGRAPHIC).split())
    if len(text) > MAX_ANSWER_CHARS or not _ANSWER_CHARS.fullmatch(text):
        raise InvalidAnswer("too long or a character other than digits, + - * / and parentheses")
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise InvalidAnswer("not an expression") from e
    literals = Counter(_literals(tree))
    if literals - Counter(numbers):
        raise InvalidAnswer("uses a number not given, or a given number too often")
    try:
        return _evaluate(tree)
    except ZeroDivisionError as e:
        raise InvalidAnswer("divides by zero") from e


def _literals(node: ast.AST) -> list[int]:
    """The integer literals of an allowed tree; InvalidAnswer at the first node of another kind."""
    if isinstance(node, ast.BinOp) and type(node.op) in AST_OPERATORS:
        return _literals(node.left) + _literals(node.right)
    if isinstance(node, ast.Constant) and type(node.value) is int:  # `type is`, so True is no 1
        return [node.value]
    raise InvalidAnswer(f"{type(node).__name__} is not allowed")


def _evaluate(node: ast.AST) -> Fraction:
    """The exact value of a tree `_literals` has accepted."""
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    return AST_OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))


def _strip_equation(text: str, target: int) -> str | None:
    """The left side of "expr = target", `text` itself without "=", None if the right side is wrong."""
    if "=" not in text:
        return text
    left, _, right = text.partition("=")
    return left if right.strip() == str(target) else None


class CountdownTask:
    """Countdown problems of `n_numbers` numbers in 1..`max_number`, targets in 1..`max_target`."""

    name = "countdown"

    def __init__(self, n_numbers: int = 3, max_number: int = 50, max_target: int = 200):
        if not isinstance(n_numbers, int) or not 2 <= n_numbers <= 6:
            raise UserError(f"countdown: n_numbers must be an integer from 2 to 6, got {n_numbers!r}")
        if not isinstance(max_number, int) or max_number < 1:
            raise UserError(f"countdown: max_number must be a positive integer, got {max_number!r}")
        if not isinstance(max_target, int) or max_target < 1:
            raise UserError(f"countdown: max_target must be a positive integer, got {max_target!r}")
        self.n_numbers, self.max_number, self.max_target = n_numbers, max_number, max_target

    def __repr__(self) -> str:
        return f"CountdownTask(n_numbers={self.n_numbers}, max_number={self.max_number}, max_target={self.max_target})"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """`n` distinct problems of `split`, deterministic in `seed`; languages drawn from `langs`."""
        check_split(split)
        langs = check_langs(langs)
        drawn = draw_distinct(self._draw, split, n, seed, max_draws=200 * n + 10_000, what=repr(self))
        return [
            self._problem(numbers, target, answer, lang)
            for (numbers, target, answer), lang in zip(drawn, pick_langs(n, seed, langs))
        ]

    def problem(self, numbers: list[int], target: int, lang: str = "en") -> Problem:
        """The problem for chosen `numbers` and `target`, with a gold answer found by `solve`."""
        answer = solve(numbers, target)
        if answer is None:
            raise UserError(f"countdown: no expression over {numbers} equals {target}")
        return self._problem(list(numbers), target, answer, check_langs((lang,))[0])

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Does `extracted` ("expr" or "expr = target") follow the rules and equal the target?"""
        if extracted is None:
            return False
        numbers, target = parse_key(problem.key)
        expression = _strip_equation(extracted, target)
        if expression is None:
            return False
        try:
            return answer_value(expression, numbers) == target
        except InvalidAnswer:
            return False

    def _draw(self, rng: random.Random) -> tuple[str, tuple[list[int], int, str]] | None:
        """One problem as (key, (numbers, target, gold expression)), or None if the draw is unusable."""
        numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
        tree = random_tree(rng.sample(numbers, rng.randint(2, self.n_numbers)), rng)
        try:
            v = value(tree)
        except ZeroDivisionError:
            return None
        if v.denominator != 1 or not 1 <= v <= self.max_target or v in numbers:
            return None
        return key_of(numbers, int(v)), (numbers, int(v), render(tree))

    def _problem(self, numbers: list[int], target: int, answer: str, lang: str) -> Problem:
        """The Problem for one (numbers, target), phrased in `lang`."""
        return Problem(
            key=key_of(numbers, target),
            prompt=countdown_prompt(numbers, target, lang),
            answer=answer,
            task=self.name,
            lang=lang,
            meta={"numbers": list(numbers), "target": target},
        )
