"""The "code" task: write a Python function; graded by running its tests in r1lab.grading.sandbox.

Built-in problems come from 18 templates of small functions (`TEMPLATES`), each with settings
from a fixed grid, e.g. "Write a Python function `poly(x)` that returns 3*x**2 - 4*x + 7":
7,636 problems in all; a draw picks the template first, then its settings. Each problem has five
tests, `assert f(args) == expected`, whose inputs are drawn with a generator seeded by the
problem's key (so a problem always has the same tests) and whose expected values come from the
template's reference solution (the problem's `answer`). Splits: ~10% of all keys are test
problems, by a hash of the key (`base.split_of`), for every seed. Prompts are in English only
(`langs`).

Benchmark files load here too (`code_problem`, called by r1lab.eval.benchmarks and `r1lab grade`):
  * MBPP: `tests` or `test_list`, a list of assert statements, and `test_setup_code`, run after
    the program. The prompt is the problem text followed by its tests, as MBPP's paper prompts;
  * HumanEval: `test`, a module defining `check(candidate)`, and `entry_point`. Each top-level
    statement of check's body that asserts something (not `assert True`) is one test, with the
    statements before it, so that the reward counts asserts; the rest of the module and
    `candidate = <entry_point>` are the setup. The prompt (`prompt`) is a function header with
    a docstring: a completion that defines the entry point runs after it (the header's helper
    functions and imports stay), one that does not is taken as the body that continues it.

The code graded (`extract_code`) is the last ```python (or untagged) fenced block, else the
content of the last `<answer>` tag, else nothing (wrong). Reward = the share of tests passed
(`score`; rewards.code_reward runs a batch in parallel); `grade` = all tests passed, the
verdict pass@k counts.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from r1lab.errors import UserError
from r1lab.grading import sandbox
from r1lab.tasks.base import Problem, draw_distinct

CODE_INSTRUCTION = "Write your solution as one ```python code block."
TESTS_PER_PROBLEM = 5

# --------------------------------------------------------------------------------------------
# Extraction

_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = ("python", "py", "python3", "")


def extract_code(completion: str) -> str | None:
    """The last complete ```python (or untagged) fenced block; else the last `<answer>` tag's
    content (itself fenced or not); else None."""
    blocks = [m.group(2) for m in _FENCE.finditer(completion) if m.group(1).lower() in _PYTHON_TAGS]
    if blocks:
        return blocks[-1]
    close = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, close) if close != -1 else -1
    if start == -1:
        return None
    content = completion[start + len("<answer>") : close]
    return content if content.strip() else None


# --------------------------------------------------------------------------------------------
# Tests of a problem, and the program they run against


@dataclass(frozen=True)
class CodeTests:
    tests: tuple[str, ...]  # statements, one counted test each
    setup: str = ""  # run after the program, before the tests
    prefix: str = ""  # HumanEval's prompt: the program is assembled from it (`assemble`)
    entry_point: str = ""

    def as_meta(self) -> dict:
        return {"tests": list(self.tests), "setup": self.setup, "prefix": self.prefix, "entry_point": self.entry_point}


def problem_tests(problem: Problem) -> CodeTests:
    m = problem.meta
    return CodeTests(tuple(m["tests"]), m.get("setup", ""), m.get("prefix", ""), m.get("entry_point", ""))


def assemble(code: str, prefix: str = "", entry_point: str = "") -> str:
    """The program to run: `code` after `prefix` if it defines `entry_point` itself, else `code`
    as the continuation of `prefix` (a HumanEval completion of the function body)."""
    if not prefix:
        return code
    try:
        defines = any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point
                      for node in ast.parse(code).body)
    except (SyntaxError, ValueError):
        defines = False
    return prefix + "\n" + code if defines else prefix + code


def split_check(test: str, entry_point: str) -> tuple[str, list[str]]:
    """HumanEval's `test` module as (setup, tests); see the module docstring. A module that does
    not have the usual shape is one test: `check(entry_point)`."""
    whole = (test, [f"check({entry_point})"])
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return whole
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or len(check.args.args) != 1:
        return whole
    if any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom, ast.Nonlocal)) for stmt in check.body
           for n in _walk_same_scope(stmt)):
        return whole  # would mean something else outside the function
    rest = ast.Module(body=[n for n in tree.body if n is not check], type_ignores=[])
    setup = ast.unparse(rest) + f"\n{check.args.args[0].arg} = {entry_point}\n"
    tests, pending = [], []
    for stmt in check.body:
        pending.append(stmt)
        if any(isinstance(n, ast.Assert) and not isinstance(n.test, ast.Constant) for n in ast.walk(stmt)):
            tests.append(ast.unparse(ast.Module(body=pending, type_ignores=[])))
            pending = []
    if not tests:
        return whole
    if pending:
        tests[-1] += "\n" + ast.unparse(ast.Module(body=pending, type_ignores=[]))
    return setup, tests


def _walk_same_scope(node: ast.AST):
    """ast.walk, not entering nested functions, lambdas or classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield from _walk_same_scope(child)


def record_tests(record: dict, where: str) -> CodeTests:
    """The tests of a JSON record: `tests`/`test_list` (+ `test_setup_code`), or HumanEval's
    `test` + `entry_point` (+ `prompt`). UserError `where: ...` otherwise."""
    listed = next((record[f] for f in ("tests", "test_list") if f in record), None)
    if listed is not None:
        if not isinstance(listed, list) or not listed or not all(isinstance(t, str) for t in listed):
            raise UserError(f"{where}: field 'tests' must be a non-empty list of strings (assert statements)")
        setup = record.get("test_setup_code") or ""
        if not isinstance(setup, str):
            raise UserError(f"{where}: field 'test_setup_code' must be a string")
        return CodeTests(tuple(listed), setup, entry_point=function_under_test(tuple(listed)))
    if "test" in record and "entry_point" in record:
        test, entry = record["test"], record["entry_point"]
        if not isinstance(test, str) or not isinstance(entry, str) or not entry.isidentifier():
            raise UserError(f"{where}: fields 'test' and 'entry_point' must be a string and a function name")
        setup, tests = split_check(test, entry)
        prefix = record.get("prompt") or ""
        return CodeTests(tuple(tests), setup, prefix if isinstance(prefix, str) else "", entry)
    fields = ", ".join(repr(k) for k in record) or "none"
    raise UserError(f"{where}: no tests: expected a 'tests' (or 'test_list') list of assert statements, "
                    f"or HumanEval's 'test' and 'entry_point' (fields: {fields})")


def checked_record_tests(record: dict, where: str) -> CodeTests:
    """`record_tests`, with every test and the setup checked to be valid Python (UserError if not)."""
    spec = record_tests(record, where)
    for i, test in enumerate(spec.tests):
        _check_python(test, f"{where}: test {i + 1}")
    _check_python(spec.setup, f"{where}: the test setup")
    return spec


def code_problem(record: dict, question: str, answer: str, id_: str, where: str) -> Problem:
    """A benchmark record (MBPP or HumanEval shape) as a "code" Problem."""
    spec = checked_record_tests(record, where)
    if spec.prefix:  # HumanEval: the question is the function to complete
        prompt = f"Complete the following Python function:\n```python\n{question.rstrip()}\n```"
    else:  # MBPP: the task, then its tests, so that the model knows the function's name and shape
        prompt = f"{question.strip()}\nYour code should pass these tests:\n" + "\n".join(spec.tests)
    return Problem(key=question, prompt=prompt, answer=answer, task="code", meta={"id": id_, **spec.as_meta()})


def function_under_test(tests: tuple[str, ...]) -> str:
    """The function MBPP-style `tests` test: the first name they call that is not a built-in
    (`assert abs(f(x) - 1) < 1e-9` -> f), or, where they call only built-ins, the first of those
    (MBPP-126's `assert sum(10, 15) == 25`: the program defines `sum`); "" if they call nothing.
    Read from the tests alone, so a program cannot choose it. The sandbox lets the tests call it
    even where it has a built-in's name; a program's other such names stay the built-ins."""
    called = []
    for test in tests:
        try:
            tree = ast.parse(test)
        except (SyntaxError, ValueError):
            continue
        called += [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return next((name for name in called if name not in vars(builtins)), called[0] if called else "")


def _check_python(source: str, where: str) -> None:
    try:
        compile(source, "<test>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        raise UserError(f"{where} is not valid Python ({getattr(e, 'msg', e)})") from None


# --------------------------------------------------------------------------------------------
# Grading


def run_codes(codes: list[str | None], specs: list[CodeTests], workers: int | None = None) -> list:
    """One sandbox.Result per (code, tests), run in parallel; no code is a zero without a run."""
    rows = [i for i, code in enumerate(codes) if code is not None]
    ran = sandbox.run_many([sandbox.Program(assemble(codes[i], specs[i].prefix, specs[i].entry_point), specs[i].tests,
                                            specs[i].setup, (specs[i].entry_point,) if specs[i].entry_point else ())
                            for i in rows], workers=workers)
    results = [sandbox.Result(0, len(spec.tests), "error", "no code found in the completion",
                              ["not run"] * len(spec.tests)) for spec in specs]
    for i, result in zip(rows, ran):
        results[i] = result
    return results


class CodeTask:
    """Small Python functions from TEMPLATES; grades any "code" problem (built-in or benchmark)."""

    name = "code"
    langs = ("en",)

    def __repr__(self) -> str:
        return "CodeTask()"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """`n` distinct problems of `split`, deterministic in `seed` (English prompts only). A draw
        picks a template uniformly, then its settings, so that `poly`'s 6,498 settings do not make
        nearly every problem a polynomial."""
        if set(langs) != {"en"}:
            raise UserError(f"task 'code' has English prompts only; got langs {list(langs)}")
        grids = [(template, template.settings()) for template in TEMPLATES]

        def draw(rng: random.Random):
            template, settings = rng.choice(grids)
            chosen = rng.choice(settings)
            return template.key(chosen), (template, chosen)

        drawn = draw_distinct(draw, split, n, seed, max_draws=100 * n + 10_000, what="task 'code'")
        return [template.problem(settings) for template, settings in drawn]

    def code_of(self, extracted: str | None) -> str | None:
        """The code to run from an extracted answer (verify.extract_answer's, or a whole completion)."""
        if extracted is None:
            return None
        return extract_code(extracted) or (extracted if extracted.strip() else None)

    def score(self, extracted: str | None, problem: Problem) -> float:
        """The share of the problem's tests that the code passes (0 for no code)."""
        return run_codes([self.code_of(extracted)], [problem_tests(problem)])[0].fraction

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Does the code pass every test? (pass@k's verdict)."""
        return self.score(extracted, problem) == 1.0


# --------------------------------------------------------------------------------------------
# Built-in problems


@dataclass(frozen=True)
class Template:
    name: str  # the function's name
    args: str  # its parameters, e.g. "xs"
    grid: dict  # setting -> the values it takes
    describe: Callable[[dict], str]  # settings -> "returns ..." (what the function must do)
    solution: Callable[[dict], str]  # settings -> the reference function's source
    draw: Callable[[random.Random], tuple]  # a random argument tuple
    valid: Callable[[dict], bool] = lambda s: True

    def settings(self) -> list[dict]:
        names = list(self.grid)
        combos = (dict(zip(names, values)) for values in itertools.product(*self.grid.values()))
        return [s for s in combos if self.valid(s)]

    def key(self, settings: dict) -> str:
        return f"code:{self.name}:" + ",".join(f"{k}={settings[k]}" for k in sorted(settings))

    def problem(self, settings: dict) -> Problem:
        key = self.key(settings)
        source = self.solution(settings)
        namespace: dict = {}
        exec(source, namespace)  # noqa: S102 -- our own reference solution, to compute expected values
        fn = namespace[self.name]
        call = lambda args: f"{self.name}({', '.join(repr(a) for a in args)})"
        example = self.draw(random.Random(f"{key}:example"))
        rng = random.Random(key)
        tests = [f"assert {call(args)} == {fn(*args)!r}" for args in (self.draw(rng) for _ in range(TESTS_PER_PROBLEM))]
        prompt = (f"Write a Python function `{self.name}({self.args})` that {self.describe(settings)}. "
                  f"For example, {call(example)} returns {fn(*example)!r}")
        meta = {**CodeTests(tuple(tests)).as_meta(), "template": self.name, "settings": dict(settings)}
        return Problem(key=key, prompt=prompt, answer=source, task="code", meta=meta)


def _ints(rng: random.Random, low: int = -50, high: int = 50, max_len: int = 8) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(0, max_len))]


def _text(rng: random.Random, alphabet: str, max_len: int = 20) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


_WORDS = ("Fizz", "Buzz", "Foo", "Bar", "Zip", "Zap")
_ORDINALS = {1: "largest", 2: "second largest", 3: "third largest", 4: "fourth largest", 5: "fifth largest"}
_MIXED = "abcdeABCDE xyz!"


def _affine(s: dict) -> str:
    return f"{s['k']}*x {'+' if s['c'] > 0 else '-'} {abs(s['c'])}"


def _poly_text(s: dict) -> str:
    terms = [(s["a"], "*x**2"), (s["b"], "*x"), (s["c"], "")]
    text = ""
    for coef, power in terms:
        if coef == 0:
            continue
        sign = "-" if coef < 0 else "+"
        text += (f"-{abs(coef)}" if coef < 0 else str(coef)) if not text else f" {sign} {abs(coef)}"
        text += power
    return text


TEMPLATES = (
    Template("transform", "xs", {"k": range(2, 10), "c": range(-9, 10)},
             lambda s: f"returns a new list in which every integer x of the list xs is replaced by {_affine(s)}",
             lambda s: f"def transform(xs):\n    return [{_affine(s)} for x in xs]\n",
             lambda r: (_ints(r),), lambda s: s["c"] != 0),
    Template("count_char", "s", {"ch": "abcdefghijklmnopqrstuvwxyz", "fold": (0, 1)},
             lambda s: f"returns how many times the letter '{s['ch']}' occurs in the string s"
                       + (", upper or lower case" if s["fold"] else " (lowercase only; uppercase does not count)"),
             lambda s: f"def count_char(s):\n    return s{'.lower()' if s['fold'] else ''}.count({s['ch']!r})\n",
             lambda r: (_text(r, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ", 30),)),
    Template("sum_multiples", "n", {"a": range(2, 13), "b": range(2, 13)},
             lambda s: f"returns the sum of all positive integers less than n that are multiples of {s['a']} or {s['b']}",
             lambda s: f"def sum_multiples(n):\n    return sum(i for i in range(1, n) if i % {s['a']} == 0 or i % {s['b']} == 0)\n",
             lambda r: (r.randint(0, 200),), lambda s: s["a"] < s["b"]),
    Template("rotate", "xs", {"k": range(1, 10), "way": ("left", "right")},
             lambda s: f"returns the list xs rotated {s['way']} by {s['k']} positions (an empty list stays empty)",
             lambda s: ("def rotate(xs):\n    if not xs:\n        return []\n"
                        f"    k = {s['k'] if s['way'] == 'left' else -s['k']} % len(xs)\n    return xs[k:] + xs[:k]\n"),
             lambda r: (_ints(r, 0, 9, 10),)),
    Template("shift", "s", {"k": range(1, 26)},
             lambda s: f"returns the string s with every lowercase letter a-z moved {s['k']} places forward in the "
                       "alphabet, wrapping around from z to a; every other character stays as it is",
             lambda s: ("def shift(s):\n    return ''.join(chr((ord(c) - 97 + " + str(s["k"]) + ") % 26 + 97) "
                        "if 'a' <= c <= 'z' else c for c in s)\n"),
             lambda r: (_text(r, "abcxyzmnop QRS!7"),)),
    Template("digits", "n", {"b": range(2, 17)},
             lambda s: f"returns the list of digits of the non-negative integer n written in base {s['b']}, "
                       "most significant first ([0] for n = 0)",
             lambda s: ("def digits(n):\n    out = []\n    while True:\n        n, d = divmod(n, " + str(s["b"]) + ")\n"
                        "        out.append(d)\n        if n == 0:\n            return out[::-1]\n"),
             lambda r: (r.choice([0, r.randint(1, 20), r.randint(1, 10**6)]),)),
    Template("digit_sum", "n", {"b": range(2, 17)},
             lambda s: f"returns the sum of the digits of the non-negative integer n written in base {s['b']}",
             lambda s: ("def digit_sum(n):\n    total = 0\n    while n:\n        n, d = divmod(n, " + str(s["b"]) + ")\n"
                        "        total += d\n    return total\n"),
             lambda r: (r.choice([0, r.randint(1, 20), r.randint(1, 10**6)]),)),
    Template("label", "n", {"a": range(2, 8), "b": range(2, 8), "w1": _WORDS, "w2": _WORDS},
             lambda s: f"returns a list of strings for the numbers 1 to n: '{s['w1']}{s['w2']}' for multiples of both "
                       f"{s['a']} and {s['b']}, '{s['w1']}' for other multiples of {s['a']}, '{s['w2']}' for other "
                       f"multiples of {s['b']}, and the number itself as a string otherwise",
             lambda s: (f"def label(n):\n    out = []\n    for i in range(1, n + 1):\n"
                        f"        word = ({s['w1']!r} if i % {s['a']} == 0 else '') + ({s['w2']!r} if i % {s['b']} == 0 else '')\n"
                        "        out.append(word or str(i))\n    return out\n"),
             lambda r: (r.randint(0, 30),), lambda s: s["a"] < s["b"] and s["w1"] != s["w2"]),
    Template("clamp", "xs", {"lo": range(-10, 1), "hi": range(1, 11)},
             lambda s: f"returns a new list in which every element of xs below {s['lo']} is replaced by {s['lo']} "
                       f"and every element above {s['hi']} by {s['hi']}",
             lambda s: f"def clamp(xs):\n    return [min(max(x, {s['lo']}), {s['hi']}) for x in xs]\n",
             lambda r: (_ints(r, -20, 20),)),
    Template("between", "xs", {"lo": range(-10, 1), "hi": range(1, 11)},
             lambda s: f"returns the elements x of the list xs with {s['lo']} <= x <= {s['hi']}, in their original order",
             lambda s: f"def between(xs):\n    return [x for x in xs if {s['lo']} <= x <= {s['hi']}]\n",
             lambda r: (_ints(r, -20, 20),)),
    Template("running", "xs", {"m": range(2, 100)},
             lambda s: f"returns the running sums of the list xs modulo {s['m']}: element i of the result is "
                       f"(xs[0] + ... + xs[i]) % {s['m']}",
             lambda s: (f"def running(xs):\n    out, total = [], 0\n    for x in xs:\n        total += x\n"
                        f"        out.append(total % {s['m']})\n    return out\n"),
             lambda r: (_ints(r, 0, 99),)),
    Template("steps", "n", {"d": range(2, 10)},
             lambda s: f"returns how many steps bring the positive integer n down to 1, where a step divides n by "
                       f"{s['d']} if n is divisible by {s['d']} and subtracts 1 otherwise",
             lambda s: (f"def steps(n):\n    count = 0\n    while n > 1:\n        n = n // {s['d']} if n % {s['d']} == 0 "
                        "else n - 1\n        count += 1\n    return count\n"),
             lambda r: (r.randint(1, 500),)),
    Template("kth_largest", "xs", {"k": range(1, 6)},
             lambda s: f"returns the {_ORDINALS[s['k']]} distinct value in the list of integers xs, or None if xs "
                       f"has fewer than {s['k']} distinct values",
             lambda s: (f"def kth_largest(xs):\n    values = sorted(set(xs), reverse=True)\n"
                        f"    return values[{s['k'] - 1}] if len(values) >= {s['k']} else None\n"),
             lambda r: (_ints(r, 0, 9, 8),)),
    Template("poly", "x", {"a": range(-9, 10), "b": range(-9, 10), "c": range(-9, 10)},
             lambda s: f"returns {_poly_text(s)} for an integer x",
             lambda s: f"def poly(x):\n    return {_poly_text(s)}\n",
             lambda r: (r.randint(-20, 20),), lambda s: s["a"] != 0),
    Template("max_window", "xs", {"k": range(1, 7)},
             lambda s: f"returns the largest sum of {s['k']} consecutive elements of the list xs, or None if xs has "
                       f"fewer than {s['k']} elements",
             lambda s: (f"def max_window(xs):\n    if len(xs) < {s['k']}:\n        return None\n"
                        f"    return max(sum(xs[i:i + {s['k']}]) for i in range(len(xs) - {s['k'] - 1}))\n"),
             lambda r: (_ints(r, -20, 20, 10),)),
    Template("mask_vowels", "s", {"ch": "*#-_@!?+"},
             lambda s: f"returns the string s with every vowel (a, e, i, o, u, in upper or lower case) replaced by '{s['ch']}'",
             lambda s: f"def mask_vowels(s):\n    return ''.join({s['ch']!r} if c in 'aeiouAEIOU' else c for c in s)\n",
             lambda r: (_text(r, _MIXED + "iouIOU"),)),
    Template("long_words", "s", {"n": range(1, 11)},
             lambda s: f"returns how many of the words of the string s (split on whitespace) have at least {s['n']} characters",
             lambda s: f"def long_words(s):\n    return sum(1 for w in s.split() if len(w) >= {s['n']})\n",
             lambda r: (" ".join(_text(r, "abcdefgh", 12) for _ in range(r.randint(0, 6))),)),
    Template("chunks", "xs", {"k": range(1, 10)},
             lambda s: f"returns the list xs split into consecutive lists of {s['k']} elements, the last of which may "
                       "be shorter ([] for an empty list)",
             lambda s: f"def chunks(xs):\n    return [xs[i:i + {s['k']}] for i in range(0, len(xs), {s['k']})]\n",
             lambda r: (_ints(r, 0, 99, 12),)),
)
