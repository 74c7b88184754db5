"""Final-answer extraction and equivalence: the checker behind the rule-based accuracy reward.

DeepSeek-R1 §2.2.2 rewards a math completion when its final answer, given "in a specified format
(e.g., within a box)", is correct. This module is that check, in three pure functions:

    extract_answer(completion) -> str | None     what did the model answer?
    answers_equal(pred, gold) -> bool            is it the same mathematical answer as the gold?
    grade(completion, gold) -> (extracted, ok)   both, as the tasks and the evaluator call them

Extraction. The content of the last `<answer>...</answer>` pair (the R1-Zero template); if that
content holds a `\\boxed{}`, the boxed part. Failing a complete pair, the content of the last
complete `\\boxed{...}` / `\\fbox{...}` (balanced braces; the bare `\\boxed 5` form too). Otherwise,
or if the content is blank, None. One left-to-right pass, no backtracking regex: 1 MB strings and
10,000 nested braces are fine.

Normalisation (`normalize_answer`) removes notation that never changes the answer: `$`, `\\(`
`\\)`, `\\[` `\\]`, `\\left`/`\\right`, spacing commands (`\\!`, `\\,`, ...), `\\text{}`/`\\mathrm{}`/
`\\mbox{}` wrappers, a trailing unit in `\\text{ cm}` form (MATH writes units with a leading space),
degrees (`^\\circ`), percent and dollar signs, a trailing period, thousands separators in a whole
plain number (`1,234`, `10,\\!080`; never inside a tuple like `(1,2)` or a list like `-2,1`),
whitespace (kept after a command word: `\\cot x`), `\\dfrac`/`\\tfrac` and the `\\frac12`,
`\\frac9{19}`, `\\sqrt2` shorthands, braces around a one-character sub/superscript, parentheses
around a choice letter (`(C)` -> `C`). Words (`\\text{Evelyn}`) are lowercased; single letters
are not, since they may be variables. The Unicode minus sign U+2212 counts as `-`.

The fast path (`answers_equal`, exact, no sympy) decides:
  * equal strings after normalisation -> True;
  * both sides numbers -> compared exactly with `fractions.Fraction`. Numbers are integers
    (`007` == `7`), decimals (`0.50`), `a/b`, `\\frac{a}{b}` with either side signed, and MATH's mixed
    numbers (`1\\frac{4}{5}` == 9/5, only when the fraction is proper). No tolerance: `0.333` is
    not 1/3, because a rounded answer to an exact question is wrong;
  * percentages: the `%` sign is dropped like a unit, so `50\\%` == `50` but `50\\%` != `0.5`
    (MATH and GSM8K write the gold of a "what percent" question as the number of percent);
  * words (`even` vs `neve`) and base-n literals (`204_5`) are decided by the string comparison
    alone: math-verify would read `even` as the product e*v*e*n and `204_5` as 204.
Everything else (radicals, pi, intervals, tuples, sets, matrices, equations, expressions) goes to
math-verify (`parse` + `verify`, gold first as its API asks), which compares symbolically. The
symbolic path refuses, returning False, what would take it seconds or forever (measurements in
`_too_costly_for_sympy`): answers over MAX_SYMBOLIC_CHARS, nested deeper than MAX_NESTING, or with
integer literals over MAX_LITERAL_DIGITS digits, and what sympy would evaluate into astronomically
large integers: exponent towers (`10^{10^{10}}`, `10^10^10`, `(10^{99})^{99}`), literal exponents
over MAX_EXPONENT, factorials/binomials of large or exponential arguments (`1000000!`). A refused
pair is graded by string equality alone (so a harmless tower like `e^{x^2}` must match exactly).
math-verify's own timeout uses SIGALRM, which Python allows only in the main thread; there we keep
it as a safety net, in other threads it is disabled and the up-front guards are the only
protection. Any exception is False.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from math_verify import parse, verify
from math_verify.errors import TimeoutException

MAX_SYMBOLIC_CHARS = 1_000  # the symbolic path refuses longer answers (see _too_costly_for_sympy)
MAX_NESTING = 10  # ... and deeper nesting of (), [] and {}
MAX_LITERAL_DIGITS = 500  # ... and integer literals with more digits
MAX_NUMBER_CHARS = 1_000  # the fast path does not parse longer numbers (int() refuses > 4300 digits)
MAX_EXPONENT = 10_000  # a literal exponent above this is not evaluated: 10^{10^8} is 100M digits
MAX_FACTORIAL_ARG = 1_000  # nor a factorial/binomial of a literal above this
SYMBOLIC_TIMEOUT_S = 5  # math-verify's SIGALRM timeout, main thread only (whole seconds)

# --------------------------------------------------------------------------------------------
# Extraction

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Only these tokens matter for finding boxes; everything between them is skipped by the regex
# engine in one pass. Escaped braces `\{ \}` (set delimiters) and `\\` do not open or close groups.
_BOX_TOKEN = re.compile(
    r"\\(?:boxed|fbox)\s*(?P<open>\{)"  # \boxed{ ... }
    r"|\\(?:boxed|fbox)\s+(?P<bare>[^\s{}$\\]+)"  # \boxed 5 : one bare token
    r"|\\[\\{}]"  # escaped brace or backslash
    r"|[{}]"
)


def extract_answer(completion: str) -> str | None:
    """The model's final answer: last `<answer>` pair (its boxed part if any), else last box, else None."""
    tagged = _last_answer_tag(completion)
    if tagged is not None:
        boxed = _last_boxed(tagged)
        answer = boxed if boxed is not None else tagged
    else:
        answer = _last_boxed(completion)
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None  # a blank answer is no answer


def _last_answer_tag(text: str) -> str | None:
    """Content of the last complete `<answer>...</answer>` pair, in linear time."""
    last_close = text.rfind(ANSWER_CLOSE)
    if last_close == -1:
        return None
    # The last opener before the last closer is the last opener that has any closer after it;
    # its own closer is the first one after it (stray closers in between belong to nobody).
    start = text.rfind(ANSWER_OPEN, 0, last_close)
    if start == -1:
        return None
    start += len(ANSWER_OPEN)
    return text[start : text.find(ANSWER_CLOSE, start)]


def _last_boxed(text: str) -> str | None:
    """Content of the complete box that opens last (innermost wins for `\\boxed{\\boxed{5}}`)."""
    best: tuple[int, int] | None = None  # (content start, content end)
    open_groups: list[int] = []  # per open brace: its content start if it opened a box, else -1
    for m in _BOX_TOKEN.finditer(text):
        if m.group("bare") is not None:
            best = _later(best, (m.start("bare"), m.end("bare")))
        elif m.group("open") is not None:
            open_groups.append(m.end())
        elif m.group() == "{":
            open_groups.append(-1)
        elif m.group() == "}" and open_groups:
            start = open_groups.pop()
            if start >= 0:
                best = _later(best, (start, m.start()))
    return None if best is None else text[best[0] : best[1]]


def _later(a: tuple[int, int] | None, b: tuple[int, int]) -> tuple[int, int]:
    return b if a is None or b[0] > a[0] else a


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
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SHORT_SCRIPT = re.compile(r"([_^])\{(\w)\}")  # x^{2} -> x^2, 204_{5} -> 204_5
_CHOICE = re.compile(r"\(([A-Za-z])\)")
_WORD = re.compile(r"[A-Za-z]{2,}")


def normalize_answer(s: str) -> str:
    """A canonical string for `s`: notation that never changes an answer removed (see module doc)."""
    s = s.strip().replace("\u2212", "-")
    s = _DELIMITERS.sub("", s).strip().rstrip(".").rstrip()  # "$5$." -> "5"
    s = _TRAILING_UNIT.sub("", s)
    for _ in range(3):  # \text{\textbf{A}}: a few layers, no unbounded loop on hostile input
        s = _TEXT_WRAPPER.sub(r"\1", s)
    s = _NOISE.sub(" ", s)
    s = _SPACE.sub(lambda m: m.group(1) + " " if m.group(1) else "", s)
    s = s.replace("{,}", ",")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
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


def answers_equal(pred: str, gold: str) -> bool:
    """Is `pred` the same answer as `gold`? Fast exact path, then math-verify (see module doc)."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    p_num, g_num = _as_number(p), _as_number(g)
    if p_num is not None and g_num is not None:
        return p_num == g_num
    if _decided_by_string(p) or _decided_by_string(g):
        return False
    return _symbolic_equal(p, g)


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
# Equivalence: symbolic path


def _symbolic_equal(pred: str, gold: str) -> bool:
    if _too_costly_for_sympy(pred) or _too_costly_for_sympy(gold):
        return False  # so only the string comparison, already done, decides
    # SIGALRM (math-verify's timeout) can only be set from the main thread; elsewhere, disable it.
    timeout = SYMBOLIC_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except (Exception, TimeoutException):  # TimeoutException is a BaseException
        return False


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


def grade(completion: str, gold: str) -> tuple[str | None, bool]:
    """(extracted answer, is it correct); nothing extracted is wrong."""
    extracted = extract_answer(completion)
    return extracted, extracted is not None and answers_equal(extracted, gold)
