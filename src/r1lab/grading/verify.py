"""Answer equivalence, and `grade` = extraction (extract.py) + equivalence: the one grader behind the
RL accuracy reward, `r1lab eval` and `r1lab grade`.

DeepSeek-R1 §2.2.2 rewards a math completion when its final answer, given "in a specified format
(e.g., within a box)", is correct. This module is that check:

    answers_equal(pred, gold) -> bool            is it the same mathematical answer as the gold?
    grade(completion, gold) -> (extracted, ok)   extract.extract_answer, then answers_equal

Normalisation (`normalize_answer`) removes notation that never changes the answer: `$`, `\\(`
`\\)`, `\\[` `\\]`, `\\left`/`\\right`, spacing commands (`\\!`, `\\,`, ...), `\\text{}`/`\\mathrm{}`/
`\\mbox{}` wrappers, a trailing unit in `\\text{ cm}` form (MATH writes units with a leading space),
degrees (`^\\circ`), percent and dollar signs, a trailing period, thousands separators in a whole
plain number (`1,234`, `10,\\!080`; never inside a tuple like `(1,2)` or a list like `-2,1`),
whitespace (kept after a command word: `\\cot x`), `\\dfrac`/`\\tfrac` and the `\\frac12`,
`\\frac9{19}`, `\\sqrt2` shorthands, braces around a one-character sub/superscript, parentheses
around a choice letter (`(C)` -> `C`); relations written one way (`>=`, `≥`, `\\ge` -> `\\geq`; `!=`,
`≠`, `\\ne` -> `\\neq`; `\\lt` -> `<`: relations.py); `bmatrix`, `matrix`, `smallmatrix` and an `array`
in brackets -> `pmatrix` (never `vmatrix`, a determinant); "percent"/"pct" after a number -> `%`;
"and" in a list (`19, 46, and 82`, `\\text{ and }`) -> a comma. A comma followed by a space is
never a thousands separator (`32, 349` is a list of two numbers; `14{, }916` is 14916). Words
(`\\text{Evelyn}`) are lowercased; single letters are not, since they may be variables. The Unicode minus sign U+2212 counts as `-`.

Equivalence (`answers_equal`) tries, in order, and the first that decides wins:
  1. equal strings after normalisation -> True;
  2. both sides numbers -> compared exactly with `fractions.Fraction`. Numbers are integers
     (`007` == `7`), decimals (`0.50`), `a/b`, `\\frac{a}{b}` with either side signed, and MATH's
     mixed numbers (`1\\frac{4}{5}` == 9/5, only when the fraction is proper). No tolerance:
     `0.333` is not 1/3, because a rounded answer to an exact question is wrong. The `%` sign is
     dropped like a unit, so `50\\%` == `50` but `50\\%` != `0.5` (MATH and GSM8K write the gold of
     a "what percent" question as the number of percent);
  2b. a one-variable inequality meets an interval or another inequality in the same variable ->
     both as intervals (`x \\geq 5` == `[5,\\infty)` == `5 \\leq x`; `y \\leq 4` != `x \\leq 4`);
  3. words (`even` vs `neve`) and base-n literals (`204_5`) -> string comparison alone: math-verify
     would read `even` as the product e*v*e*n and `204_5` as 204;
  4. numeric rejection -> False when both sides evaluate (complex floats; single-letter variables
     set to two fixed test points) to different values, or a number meets a tuple/interval/set/
     matrix. Microseconds instead of a ~50 ms trip to sympy, and it only ever rejects;
  5. the symbolic path: math-verify (`parse` + `verify`, gold first) compares radicals, pi,
     intervals, tuples, sets, matrices, equations and expressions.
The symbolic path runs in a separate process under a hard wall-clock limit (`timeout`, default
TIMEOUT_S), enforced by killing the comparison (see r1lab.grading.verify_worker): it holds in the main
thread, in worker threads and in worker processes, where math-verify's own SIGALRM timeout does
not. A timeout grades as not equal and is counted (`stats()`). Before that, answers that would
take sympy seconds or forever are refused up front (`_too_costly_for_sympy`) and decided by the
string comparison alone: over MAX_SYMBOLIC_CHARS, nested deeper than MAX_NESTING, integer
literals over MAX_LITERAL_DIGITS digits, exponent towers, literal exponents over MAX_EXPONENT,
factorials/binomials of large or exponential arguments.
"""

from __future__ import annotations

import math
import re
import threading
from fractions import Fraction

from r1lab.grading.extract import extract_answer
from r1lab.grading.relations import as_interval, is_relation, one_spelling
from r1lab.grading.verify_worker import SymbolicProcess

MAX_SYMBOLIC_CHARS = 1_000  # the symbolic path refuses longer answers (see _too_costly_for_sympy)
MAX_NESTING = 10  # ... and deeper nesting of (), [] and {}
MAX_LITERAL_DIGITS = 500  # ... and integer literals with more digits
MAX_NUMBER_CHARS = 1_000  # the fast path does not parse longer numbers (int() refuses > 4300 digits)
MAX_EXPONENT = 10_000  # a literal exponent above this is not evaluated: 10^{10^8} is 100M digits
MAX_FACTORIAL_ARG = 1_000  # nor a factorial/binomial of a literal above this
TIMEOUT_S = 5.0  # hard wall-clock limit of one symbolic comparison (math-verify's default is 5 s too)

# --------------------------------------------------------------------------------------------
# Normalisation

_DELIMITERS = re.compile(r"\\\$|\$|\\[()\[\]]")  # \$ (currency), $ $$ \( \) \[ \]
# A unit: a text word that ends the answer, after a number or a closing brace: 15\mbox{ cm}^2,
# 5.4 \text{ cents}, 15\text{cm}, \frac{1}{2}\text{ inch}. Not \text{ even}, not 3\text{ and }5.
_TRAILING_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?\d\}?)?$")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}")
_NOISE = re.compile(
    r"\\(?:left|right|displaystyle|quad|qquad)(?![a-zA-Z])"  # sizing and spacing words
    r"|(?<!\\)\\[!,;: ]"  # thin/negative spaces, control space (but `\\ ` is a row break)
    r"|\^\s*\{?\s*\\circ\s*\}?|\\degree|°"  # degrees
    r"|\\%|%"  # percent (see module docstring)
)
_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])|\s+")  # keep one space that ends a command word
_SPACED_COMMA = re.compile(r"(?<!\{),[ \t\n]")  # not `14{, }916`
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SHORT_SCRIPT = re.compile(r"([_^])\{(\w)\}")  # x^{2} -> x^2, 204_{5} -> 204_5
_CHOICE = re.compile(r"\(([A-Za-z])\)")
_WORD = re.compile(r"[A-Za-z]{2,}")
_PERCENT_WORD = re.compile(r"(?<=[\d}])\s*(?:percent(?:age)?|pct)\.?$")  # 28 percent -> 28%
_AND = re.compile(r"(?:,\s*)?(?:\\text\{\s*and\s*\}|(?<=\s)and(?=\s))")  # 19, 46, and 82 -> 19, 46,82
# bracket and plain matrices -> pmatrix (not vmatrix: a determinant; not Bmatrix)
_MATRIX = re.compile(r"\\(begin|end)\{(?:bmatrix|matrix|smallmatrix)\}")
# [\begin{array}{cc} ... \end{array}] (after \left \right are gone) -> pmatrix
_BRACKET_ARRAY = re.compile(r"[\[(]\\begin\{array\}\{[^{}]*\}(.*?)\\end\{array\}[\])]")


def normalize_answer(s: str) -> str:
    """A canonical string for `s`: notation that never changes an answer removed (see module doc)."""
    s = s.strip().replace("\u2212", "-")
    s = _DELIMITERS.sub("", s).strip().rstrip(".").rstrip()  # "$5$." -> "5"
    spaced_comma = _SPACED_COMMA.search(s) is not None  # "32, 349" is a list, "32,349" a number
    s = _TRAILING_UNIT.sub("", s)
    s = _PERCENT_WORD.sub("%", s)
    s = _AND.sub(",", s)
    s = one_spelling(s)
    s = _MATRIX.sub(r"\\\1{pmatrix}", s)
    for _ in range(3):  # \text{\textbf{A}}: a few layers, no unbounded loop on hostile input
        s = _TEXT_WRAPPER.sub(r"\1", s)
    s = _NOISE.sub(" ", s)
    s = _SPACE.sub(lambda m: m.group(1) + " " if m.group(1) else "", s)
    s = s.replace("{,}", ",")
    if _THOUSANDS.fullmatch(s) and not spaced_comma:
        s = s.replace(",", "")
    if 0 < s.count("\\begin{array}") <= MAX_NESTING:  # each one scans to its \end{array}
        s = _BRACKET_ARRAY.sub(r"\\begin{pmatrix}\1\\end{pmatrix}", s)
    s = _normalize_fracs(s)
    s = _SHORT_SCRIPT.sub(r"\1\2", s)
    if m := _CHOICE.fullmatch(s):
        s = m.group(1)
    if _WORD.fullmatch(s):
        s = s.lower()
    return s


def _normalize_fracs(s: str) -> str:
    """`\\dfrac`, `\\tfrac` -> `\\frac`; one-digit shorthands `\\frac12`, `\\frac9{19}`, `\\frac{270}7`, `\\sqrt2`."""
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)


# --------------------------------------------------------------------------------------------
# Equivalence: fast path

_DECIMAL = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"[+-]?{_DECIMAL}")
_SLASH_FRACTION = re.compile(rf"([+-]?)({_DECIMAL})/({_DECIMAL})")
_LATEX_FRACTION = re.compile(rf"([+-]?)\\frac\{{([+-]?{_DECIMAL})\}}\{{([+-]?{_DECIMAL})\}}")
_MIXED_NUMBER = re.compile(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_BASE_LITERAL = re.compile(r"\d[0-9A-Z]*_\d+")  # 2516_8, 1A_16: numerals in a base, not 2516 or 1A


def answers_equal(pred: str, gold: str, timeout: float = TIMEOUT_S) -> bool:
    """Is `pred` the same answer as `gold`? Fast exact path, then math-verify (see module doc)."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    p_num, g_num = _as_number(p), _as_number(g)
    if p_num is not None and g_num is not None:
        return p_num == g_num
    p_set, g_set = as_interval(p, MAX_SYMBOLIC_CHARS), as_interval(g, MAX_SYMBOLIC_CHARS)
    if (p_set and (g_set or not is_relation(g))) or (g_set and not is_relation(p)):
        # x \geq 5 against [5,\infty), 2 \leq x against x \geq 2 (-x > -1 is left to sympy)
        if p_set and g_set and p_set[0] != g_set[0]:
            return False  # y \leq 4 is not x \leq 4
        p, g = p_set[1] if p_set else p, g_set[1] if g_set else g
        if p == g:
            return True
    if _decided_by_string(p) or _decided_by_string(g):
        return False
    if _surely_different(p, g):
        return False
    return _symbolic_equal(p, g, timeout)


def _as_number(s: str) -> Fraction | None:
    """The exact value of a normalised integer, decimal, fraction or mixed number; else None."""
    if len(s) > MAX_NUMBER_CHARS:
        return None
    try:
        if _PLAIN_NUMBER.fullmatch(s):
            return Fraction(s)
        if m := _SLASH_FRACTION.fullmatch(s) or _LATEX_FRACTION.fullmatch(s):
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) == "-" else value
        if m := _MIXED_NUMBER.fullmatch(s):
            whole, num, den = (int(x) for x in m.group(2, 3, 4))
            if not 0 < num < den:  # 2\frac{5}{3} is not how anyone writes a mixed number
                return None
            value = whole + Fraction(num, den)
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _decided_by_string(s: str) -> bool:
    """Answers that math-verify would misread, so string equality is the only fair test."""
    return bool(_WORD.fullmatch(s) or _BASE_LITERAL.fullmatch(s))


# --------------------------------------------------------------------------------------------
# Equivalence: numeric rejection
#
# Most wrong answers are wrong numbers or wrong polynomials: `3\sqrt{13}` against `4`, `p-q`
# against `\frac{14}{3}`, `6r^2-4r-24` against `4495`. Evaluating both sides as complex floats, with
# every single-letter variable set to the same two arbitrary values, settles those in microseconds
# instead of a ~50 ms trip to sympy (different values at either point means different expressions;
# this is the classic randomised identity test). Only *rejection* is decided here: sides that agree
# numerically still go to the symbolic path, so `0.3333333` is not accepted for `\frac13` and the
# verdicts stay math-verify's.

_NUM_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\[a-zA-Z]+|[-+*/^(){}\[\]]|[a-zA-Z])")
_NUMERIC_OK = re.compile(r"[\d.\s+\-*/^(){}\[\]]|\\(?:frac|sqrt|pi|cdot|times)(?![a-zA-Z])|(?<![a-zA-Z\\])[a-df-zA-Z](?![a-zA-Z])")
_POINTS = (0.6180339887, 1.4142135624)  # variable values at the two test points (none is a root of a
_VARIABLE_STEP = 0.0773502692  # simple polynomial with small integer coefficients); per letter offset


def _surely_different(p: str, g: str) -> bool:
    """The two sides evaluate to different values at one of the test points (relative 1e-8), or
    one side is a number and the other a compound answer: a list, tuple, interval, union or
    matrix (`3` against `3,5,7`, `(6,31,-1)`, `(2,\\infty)`)."""
    p_val = g_val = None
    for point in _POINTS:
        p_val, g_val = _numeric_value(p, point), _numeric_value(g, point)
        if p_val is None or g_val is None:
            break
        if abs(p_val - g_val) > 1e-8 * max(1.0, abs(p_val), abs(g_val)):
            return True
    return (p_val is not None and _compound(g)) or (g_val is not None and _compound(p))


_COMPOUND = re.compile(r"\\begin\{|\\cup(?![a-zA-Z])|\\cap(?![a-zA-Z])")


def _compound(s: str) -> bool:
    """Several values: a comma outside brackets or directly inside one outer bracket pair, a
    matrix, a union or intersection."""
    if _COMPOUND.search(s):
        return True
    depth, outer = 0, s[:1] in "([" or s.startswith("\\{")
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and (depth == 0 or (outer and depth == 1)):
            return True
    return False


def _numeric_value(s: str, point: float) -> complex | None:
    r"""The value of `s` built from numbers, single-letter variables (set from `point`), `\frac`,
    `\sqrt`, `\pi`, `i`, + - * / ^ and brackets, with implicit multiplication (`3\sqrt{13}`,
    `2\pi r`); None for anything else (functions, relations, lists, `e`, ...)."""
    if len(s) > MAX_SYMBOLIC_CHARS or _NUMERIC_OK.sub("", s):
        return None
    tokens = _NUM_TOKEN.findall(s)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(s)
        pos += 1
        return tok

    def group() -> complex:  # {expr}, or a single digit / atom as in \frac12
        if peek() == "{":
            take()
            value = expr()
            take("}")
            return value
        return atom()

    def atom() -> complex:
        tok = take()
        if tok in ("(", "["):
            value = expr()
            take(")" if tok == "(" else "]")
            return value
        if tok == "{":
            pos_back()
            return group()
        if tok == "\\frac":
            return group() / group()
        if tok == "\\sqrt":
            if peek() == "[":
                take()
                n = expr()
                take("]")
                return group() ** (1 / n)
            return group() ** 0.5
        if tok == "\\pi":
            return math.pi
        if tok == "i":
            return 1j
        if len(tok) == 1 and tok.isalpha() and tok != "e":  # a variable
            return point + _VARIABLE_STEP * (ord(tok) % 32)
        return complex(float(tok))  # anything else raises ValueError

    def pos_back() -> None:
        nonlocal pos
        pos -= 1

    def power() -> complex:
        base = atom()
        if peek() == "^":
            take()
            exponent = group()
            if abs(exponent) > 1000:
                raise OverflowError
            return base**exponent
        return base

    def factor() -> complex:
        if peek() in ("-", "+"):
            return -factor() if take() == "-" else factor()
        return power()

    def term() -> complex:
        value = factor()
        while (tok := peek()) is not None and tok not in ("+", "-", ")", "]", "}"):
            if tok in ("*", "\\cdot", "\\times"):
                take()
                value *= factor()
            elif tok == "/":
                take()
                value /= factor()
            else:  # implicit multiplication: 3\sqrt{13}, 2\pi, 5i
                value *= power()
        return value

    def expr() -> complex:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    try:
        value = expr()
        if pos != len(tokens) or value != value:  # trailing tokens, or NaN
            return None
        return complex(value)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None


# --------------------------------------------------------------------------------------------
# Equivalence: symbolic path

_SYMBOLIC = SymbolicProcess()
_stats_lock = threading.Lock()
_stats = {"symbolic": 0, "timeouts": 0}


def _symbolic_equal(pred: str, gold: str, timeout: float) -> bool:
    if _too_costly_for_sympy(pred) or _too_costly_for_sympy(gold):
        return False  # so only the string comparison, already done, decides
    ok = _SYMBOLIC.equal(pred, gold, timeout)  # None: out of time (the comparison was killed)
    with _stats_lock:
        _stats["symbolic"] += 1
        _stats["timeouts"] += ok is None
    return bool(ok)


def stats() -> dict:
    """Counters since the last reset: comparisons sent to the symbolic path, and those timed out."""
    with _stats_lock:
        return dict(_stats)


def reset_stats() -> None:
    with _stats_lock:
        _stats.update(symbolic=0, timeouts=0)


def warm_up() -> bool:
    """Start the symbolic process and wait for it (it imports sympy, ~3 s), so that no comparison
    waits for it later. Returns False if it did not start within 30 s."""
    return _SYMBOLIC.warm_up()


def _too_costly_for_sympy(s: str) -> bool:
    """Could parsing or comparing `s` take seconds or forever? Checked in linear time, without sympy.

    The limits are measured, not guessed (math-verify 0.9, one CPU core, no timeout): the ANTLR
    LaTeX parser's time grows about quadratically with nesting depth (12 nested parentheses ~2 s,
    25 ~8 s); a 3,000-character sum of square roots takes ~2.6 s; `\\sqrt` of a 2,000-digit
    integer ~7.6 s; and an exponent tower or a factorial of a big number makes sympy build an
    integer with billions of digits, which no timeout can interrupt (it runs in C).
    """
    return (
        len(s) > MAX_SYMBOLIC_CHARS
        or _nesting_depth(s) > MAX_NESTING
        or any(len(m.group()) > MAX_LITERAL_DIGITS for m in _INTEGER.finditer(s))
        or _has_exponent_tower(s)
        or _has_huge_exponent(s)
        or _has_huge_factorial(s)
    )


def _nesting_depth(s: str) -> int:
    depth = deepest = 0
    for m in _BRACKET.finditer(s):
        depth = depth + 1 if m.group() in "([{" else max(depth - 1, 0)  # intervals mix ( and ]
        deepest = max(deepest, depth)
    return deepest


_BRACKET = re.compile(r"[()\[\]{}]")
_INTEGER = re.compile(r"\d+")

_POWER_TOKEN = re.compile(r"(?P<power>\^|\*\*)\s*(?P<group>[{(])?|[{(]|[})]")
_BARE_TOWER = re.compile(r"(?:\^|\*\*)\s*[\d.]+\s*(?:\^|\*\*)")  # 10^10^10 (not x^2y^2)


def _has_exponent_tower(s: str) -> bool:
    """A power inside an exponent (`a^{b^c}`), after a bare exponent (`a^b^c`), or of a group
    that contains a power (`(a^b)^c`). One pass with a stack of open groups."""
    if _BARE_TOWER.search(s):
        return True
    groups: list[list[bool]] = []  # per open group: [is an exponent, contains a power]
    in_exponent = 0  # how many open groups are exponents
    closed_with_power_at = -1  # end of the last closed group, if it contained a power
    for m in _POWER_TOKEN.finditer(s):
        if m.group("power"):
            if in_exponent or closed_with_power_at == m.start():
                return True
            if groups:
                groups[-1][1] = True
            if m.group("group"):
                groups.append([True, False])
                in_exponent += 1
        elif m.group() in "{(":
            groups.append([False, False])
        elif groups:
            is_exponent, has_power = groups.pop()
            in_exponent -= is_exponent
            if has_power and groups:
                groups[-1][1] = True
            closed_with_power_at = _skip_spaces(s, m.end()) if has_power else -1
    return False


def _skip_spaces(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


_EXPONENT_LITERAL = re.compile(r"(?:\^|\*\*)\s*[{(]?\s*(\d+)")
_COMBINATORIAL = re.compile(r"!|\\binom|\\dbinom|\\tbinom|\\choose|\\Gamma|factorial")


def _has_huge_exponent(s: str) -> bool:
    return any(_too_big(m.group(1), MAX_EXPONENT) for m in _EXPONENT_LITERAL.finditer(s))


def _has_huge_factorial(s: str) -> bool:
    """`n!`, `\\binom{n}{k}`, `\\Gamma(n)` with a literal over MAX_FACTORIAL_ARG or any power about."""
    if not _COMBINATORIAL.search(s):
        return False
    if "^" in s or "**" in s:
        return True
    return any(_too_big(m.group(), MAX_FACTORIAL_ARG) for m in _INTEGER.finditer(s))


def _too_big(digits: str, limit: int) -> bool:
    return len(digits) > len(str(limit)) or int(digits) > limit


# --------------------------------------------------------------------------------------------


def grade(text: str, gold: str, bare: bool = False, prose: bool = False,
          timeout: float = TIMEOUT_S) -> tuple[str | None, bool]:
    """(extracted answer, is it correct) for a completion; nothing extracted is wrong.

    With `bare`, a text with nothing to extract is itself the answer (a prediction file holding
    `"0.5"` rather than a completion). With `prose`, an answer stated in prose is read too
    (extract.py's prose tier, as `r1lab eval` and `r1lab grade` read). Eval, `r1lab grade` and the
    RL accuracy reward all call this or `extract_answer` + `answers_equal`, so they differ only in
    whether prose is read."""
    extracted = extract_answer(text, prose=prose)
    if extracted is None and bare:
        extracted = text.strip() or None
    return extracted, extracted is not None and answers_equal(extracted, gold, timeout)
