"""Tables for r1lab.grading.verify: extraction, normalisation, equivalence, and hostile inputs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from r1lab.grading import verify
from r1lab.grading.extract import extract_answer, gold_answer
from r1lab.grading.verify import answers_equal, grade, normalize_answer

HANG_BOUND_S = 10.0  # generous: only a pathological hang should trip it, never a slow machine
# ../shared/data beside the repository, as on the developers' machines and in CI
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MATH500, GSM8K = DATA / "math500.jsonl", DATA / "gsm8k_test.jsonl"

# --------------------------------------------------------------------------------------------
# extract_answer

EXTRACTION = [
    # <answer> tags
    ("<answer>42</answer>", "42"),
    ("<think>x</think>\n<answer>  42 \n</answer>", "42"),
    ("<answer>1</answer> wait, <answer>2</answer>", "2"),  # last pair wins
    ("<think>maybe <answer>1</answer></think> <answer>2</answer>", "2"),  # the one in think loses
    ("<answer>So \\boxed{7}.</answer>", "7"),  # boxed inside answer: just the box
    ("<answer>\\boxed{1} then \\boxed{2}</answer>", "2"),
    ("\\boxed{1} <answer>2</answer>", "2"),  # a tag pair beats a box before it...
    ("<answer>2</answer> \\boxed{1}", "2"),  # ...and after it
    ("<answer>1</answer> x </answer>", "1"),  # stray closer belongs to nobody
    ("<answer>1</answer> <answer>2", "1"),  # unclosed last opener: last complete pair
    ("<answer>  </answer>", None),  # blank answer is no answer
    ("<answer></answer>", None),
    ("<answer>4", None),  # unclosed, nothing else
    ("4</answer>", None),  # closer without opener
    ("</answer><answer>", None),  # reversed tags are no pair
    ("\\boxed{3} <answer>4", "3"),  # unclosed tag: fall back to the box
    # \boxed fallback
    ("The answer is \\boxed{5}.", "5"),
    ("\\boxed{1} no wait \\boxed{2}", "2"),  # last box wins
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
    ("\\boxed{{{x}}}", "{{x}}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are not groups
    ("\\boxed{\\{1}", "\\{1"),
    ("\\boxed {5}", "5"),
    ("so $\\boxed 5$.", "5"),  # bare form
    ("\\boxed 12 apples", "12"),
    ("\\fbox{3}", "3"),
    ("\\boxed{\\boxed{5}}", "5"),  # innermost
    ("\\boxed{3} and \\boxed{\\frac{1}{2}", "3"),  # truncated last box: last complete one
    ("\\boxed{3", None),
    ("\\boxed{}", None),
    ("\\boxed", None),
    ("42", None),  # a bare number is not an answer format
    ("", None),
    # GSM8K's "#### N" line
    ("She makes 9 * 2 = $18.\n#### 18", "18"),
    ("#### 1\n#### 2", "2"),
    ("####   1,450,000  ", "1,450,000"),
    ("a #### 5 mid-line is not the GSM8K form", None),
    ("\\boxed{3}\n#### 4", "3"),  # a box beats the hashes
    # "the answer is"
    ("So the answer is 42.", "42"),
    ("The answer is $\\frac{1}{2}$, which is positive.", "\\frac{1}{2}"),
    ("The final answer is 3.5. Done.", "3.5"),
    ("Final Answer: 7", "7"),
    ("the answer is 1, then the answer is 2", "2"),  # the last one
    ("<answer>The answer is 9.</answer>", "9"),  # inside an answer tag
    ("\\boxed{5}. The answer is 6", "5"),  # a box beats the phrase
    ("The answer is   ", None),
    ("The answer is (1, 2).", "(1, 2)"),
]


@pytest.mark.parametrize("completion, expected", EXTRACTION)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


# strict tier additions: turn markers cut in both tiers, separated boxes form one list
STRICT_MORE = [
    ("\\boxed{1}, \\boxed{2}", "1, 2"),
    ("$\\boxed{1}$ \\quad \\text{and} \\quad $\\boxed{2}$", "1, 2"),
    ("\\boxed{A}, or \\boxed{B}", "B"),  # "or" restates: the last box
    ("\\boxed{1} no wait \\boxed{2}", "2"),
    ("\\boxed{\\boxed{5}}", "5"),
    ("The answer is 8.<|eot_id|><|start_header_id|>user<|end_header_id|>The answer is 16.", "8"),
    ("<answer>10</answer>\nUser: triple it\nAssistant: <answer>30</answer>", "10"),
    ("<|im_start|>assistant\n\\boxed{4}<|im_end|>", "4"),  # a marker that opens the text is no cut
    ("so 9.<｜end▁of▁sentence｜><｜User｜>next: \\boxed{7}", None),
    ("Thus x = 5, the end.", None),  # no answer format: nothing without prose
]


@pytest.mark.parametrize("completion, expected", STRICT_MORE)
def test_extract_answer_strict_additions(completion, expected):
    assert extract_answer(completion) == expected


PROSE = [  # (completion, expected with prose=True)
    ("Answer $ 9 $", "$ 9 $"),
    ("Answer \\[ 9 \\]", "\\[ 9 \\]"),
    ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"),
    ("So the ordered pair $(x, y)$ that solves the system is $(7, 6)$.", "(7, 6)"),
    ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", "120"),
    ("Final Answer: The final answer is $12,345$. I hope it is correct.", "$12,345$"),
    ("the probability is 2/3. <|im_start|>user\nThe answer is 1/8.", "2/3"),
    ("There are 12 sequences. I hope it is correct.", "12"),  # the last sentence that has a value
    ("she sells 16 - 3 - 4 = 9 eggs at $2 each and makes 18 dollars a day.", "18"),
    ("The answer: 16 - 3 - 4 = 9", "9"),  # a computation reads as its last side
    ("So the total is $1 + 2 \\times 9 = 1 + 18 = 19$ points.", "19"),
    ("We get $x = 5$.", "x = 5"),  # an equation in a variable stays whole
    ("Dr. Z has $10,200 + $255 = $10,455 now.", "10,455"),  # money, not math spans
    ("The roots are $1$ and $2$.", "1, 2"),
    ("The answer is 5 or 6.", "5, 6"),  # a hedge is a list, never 5
    ("\\boxed{5}. Final answer: 6", "6"),  # a later stated answer beats the box
    ("Final answer: \\boxed{6}", "6"),
    ("The discount is 28 percent.", "28%"),
    ("Donc la réponse est 7.", "7"),
    ("Die Antwort lautet 46.", "46"),
    ("Por lo tanto, la respuesta es 9.", "9"),
    ("所以答案是500。", "500"),
    ("计算得 3 × 4 = 12，最终答案：12", "12"),
    ("따라서 정답은 8입니다.", "8"),
    ("よって、答えは24です。", "24"),
    ("11个男孩，每人9颗，所以她总共有99颗弹珠。", "99"),
    ("The answer is Evelyn.", "Evelyn"),  # a word answer: the strict reading
    ("(1, 2)", "(1, 2)"),  # a value with no words is itself the answer
    ("The identity is $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$.", "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"),
    ("I am not sure how to solve this.", None),
    ("", None),
]


@pytest.mark.parametrize("completion, expected", PROSE)
def test_extract_answer_prose(completion, expected):
    assert extract_answer(completion, prose=True) == expected


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("the answer is 500", "500"),
        ("$\\boxed{5}$", "5"),
        ("Since $7 \\cdot 6 = 42$, the product is 42.", "42"),
        ("$\\frac12$", "$\\frac12$"),
        ("\\text{Evelyn}", "\\text{Evelyn}"),
        ("$7 = 11a+c$", "$7 = 11a+c$"),  # an equation gold stays whole
        ("$AB=4,CD=5$", "$AB=4,CD=5$"),
    ],
)
def test_gold_answer_prose(gold, expected):
    assert gold_answer(gold, prose=True) == expected


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 18", "18"),
        ("the answer is 500", "500"),
        ("so the area is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
        (" 18 ", "18"),
        ("$\\frac12$", "$\\frac12$"),  # a plain gold is left to normalisation
    ],
)
def test_gold_answer(gold, expected):
    assert gold_answer(gold) == expected


# --------------------------------------------------------------------------------------------
# normalize_answer

NORMALIZATION = [
    ("$5$", "5"),
    ("$$5$$", "5"),
    ("\\(5\\)", "5"),
    ("5.", "5"),
    (" 5 ", "5"),
    ("\\text{(C)}", "C"),
    ("(c)", "c"),
    ("\\text{Evelyn}", "evelyn"),  # words lowercased...
    ("X", "X"),  # ...single letters (variables) not
    ("1,234", "1234"),
    ("-1,234,567.5", "-1234567.5"),
    ("10,\\!080", "10080"),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
    ("1{,}000", "1000"),
    ("1\\,000", "1000"),
    ("(1,234)", "(1,234)"),  # a tuple keeps its comma
    ("-2,1", "-2,1"),  # a list keeps its comma
    ("12,34", "12,34"),  # not groups of three: not a thousands separator
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("90°", "90"),
    ("15\\mbox{ cm}^2", "15"),
    ("5.4 \\text{ cents}", "5.4"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
    ("15\\text{cm}", "15"),
    ("5 \\text{ cm}.", "5"),
    ("\\frac{1}{2}\\text{ inch}", "\\frac{1}{2}"),
    ("\\text{ even}", "even"),  # a word alone is the answer, not a unit
    ("\\$18.90", "18.90"),
    ("50\\%", "50"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\tfrac12", "\\frac{1}{2}"),
    ("\\frac 34", "\\frac{3}{4}"),
    ("\\frac9{19}", "\\frac{9}{19}"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("\\cot x", "\\cot x"),  # space that ends a command word survives
    ("x + 1", "x+1"),
    ("4210_{5}", "4210_5"),
    ("x^{2}", "x^2"),
    ("\u22123", "-3"),  # Unicode minus
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),  # \\ is a row break
    ("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\left[\\begin{array}{c} 1 \\\\ 2 \\end{array}\\right]", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\begin{vmatrix} 1 \\\\ 2 \\end{vmatrix}", "\\begin{vmatrix}1\\\\2\\end{vmatrix}"),  # a determinant
    ("x >= 5", "x\\geq5"),
    ("x ≥ 5", "x\\geq5"),
    ("x \\ge 5", "x\\geq5"),
    ("x != 3", "x\\neq3"),
    ("x \\ne 3", "x\\neq3"),
    ("x \\lt 2", "x<2"),
    ("28 percent", "28"),
    ("32, 349", "32,349"),  # a comma and a space: a list, not a thousands separator
    ("14{, }916", "14916"),
    ("19, 46, and 82", "19,46,82"),
]


@pytest.mark.parametrize("raw, expected", NORMALIZATION)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# --------------------------------------------------------------------------------------------
# answers_equal: (pred, gold)

EQUAL = [
    # integers and signs
    ("7", "7"),
    ("007", "7"),
    ("7.0", "7"),
    ("+7", "7"),
    ("\u22123", "-3"),  # decided: Unicode minus is a minus
    ("- 3", "-3"),
    # decimals and fractions, exact
    ("0.50", "1/2"),
    ("0.5", "\\frac{1}{2}"),
    (".5", "\\dfrac12"),
    ("\\tfrac{1}{2}", "1/2"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}"),
    ("\\frac{1}{-2}", "-0.5"),
    ("\\frac{3}{4}", "\\frac{6}{8}"),
    ("1\\frac{4}{5}", "\\frac{9}{5}"),  # MATH mixed number
    ("137 \\frac{1}{2}", "137.5"),
    ("-1\\frac{1}{2}", "-1.5"),
    # notation
    ("1,234", "1234"),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
    ("$5$", "5"),
    ("\\(5\\)", "5"),
    ("\\text{(C)}", "C"),
    ("(C)", "\\text{(C)}"),
    ("evelyn", "\\text{Evelyn}"),
    ("50\\%", "50"),  # decided: % is dropped like a unit
    ("50%", "50"),
    ("90^\\circ", "90"),
    ("\\$18.90", "18.9"),
    ("5.4 \\text{ cents}", "5.4"),
    ("15\\mbox{ cm}^2", "15"),
    ("204_5", "204_{5}"),
    ("a_1+a_2", "a_{2}+a_{1}"),  # subscripted variables are not base literals: symbolic
    # symbolic path (math-verify)
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("2\\sqrt{5}", "\\sqrt{20}"),
    ("12\\pi", "\\pi\\cdot 12"),
    ("2x+3", "3+2x"),
    ("y=2x+3", "y = 2x + 3"),
    ("(x+1)^2", "x^2+2x+1"),
    ("p-q", "-q+p"),
    ("\\frac{11}{20}+\\frac{9a}{20}", "\\frac{11+9a}{20}"),
    ("-12i+1", "1 - 12i"),
    ("5", "x=5"),
    # tuples, intervals, sets, matrices
    ("(1,2)", "(1, 2)"),
    ("(1, -16, -4, 43)", "(1,-16,-4,43)"),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(1.5, -13)", "\\left( \\frac{3}{2}, -13 \\right)"),
    ("(-\\infty,0]", "(-\\infty, 0]"),
    ("[-2, 7]", "x \\in [-2,7]"),
    ("x\\in(-\\infty,2)\\cup(3,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)"),
    ("\\{-2, 1+\\sqrt5, 1-\\sqrt5\\}", "\\{1\\pm\\sqrt{5},-2\\}"),
    ("\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1/2 \\\\ 2 \\end{pmatrix}"),
    # relations in any notation, and as intervals
    ("x >= 5", "x \\geq 5"),
    ("2 \\leq x", "x \\ge 2"),
    ("x \\geq 5", "[5, \\infty)"),
    ("-3 < x < 3", "(-3, 3)"),
    ("x \\neq 3", "x != 3"),
    ("\\begin{bmatrix}1&0\\\\0&1\\end{bmatrix}", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
    # refused by the symbolic guards, but identical strings still match
    ("10^{10^{10^{10}}}", "10^{10^{10^{10}}}"),
    ("1000000!", "1000000!"),
]

NOT_EQUAL = [
    ("12", "21"),
    ("7", "-7"),
    ("1/2", "2"),
    ("\\frac{1}{2}", "\\frac{2}{1}"),
    ("0.333", "\\frac{1}{3}"),  # exact: a rounded decimal is not the fraction
    ("50\\%", "0.5"),  # decided: % means "number of percent"
    ("0.5", "50\\%"),
    ("1,234", "1.234"),
    ("2\\frac{1}{2}", "1"),  # mixed number, not a product
    ("\\frac{1}{0}", "1"),
    ("\\sqrt{2}", "2"),
    ("\\sqrt{2}/2", "\\sqrt{3}/2"),
    ("2\\sqrt{5}", "\\sqrt{10}"),
    ("\\pi", "3.14159"),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"),
    ("x+1", "x-1"),
    ("2x+3", "3x+2"),
    ("x^2", "x^3"),
    ("p-q", "q-p"),
    ("y=2x+3", "y=3x+2"),
    ("1+2i", "1-2i"),
    ("(1,2)", "(2,1)"),
    ("[1,2]", "(1,2)"),
    ("(1,2]", "(1,2)"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2) \\cup (4, \\infty)"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"),
    ("B", "C"),
    ("\\text{even}", "\\text{odd}"),
    ("neve", "\\text{even}"),  # math-verify alone would say e*v*e*n == n*e*v*e
    ("204_5", "204_7"),  # math-verify alone would drop the base
    ("204_5", "204"),
    ("1A_{16}", "1B_{16}"),
    ("10^{10^{10^{10}}}", "5"),
    ("x > 5", "x \\geq 5"),
    ("y \\leq 4", "x \\leq 4"),  # another variable
    ("x \\geq 5", "5"),  # an inequality is not its boundary
    ("32, 349", "32349"),
    ("\\begin{vmatrix}1&2\\\\3&4\\end{vmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("", "5"),
    ("5", ""),
    ("$$", "$$"),  # nothing left after normalisation is not an answer
]


@pytest.mark.parametrize("pred, gold", EQUAL)
def test_answers_equal(pred, gold):
    assert answers_equal(pred, gold) is True


@pytest.mark.parametrize("pred, gold", NOT_EQUAL)
def test_answers_not_equal(pred, gold):
    assert answers_equal(pred, gold) is False


@pytest.fixture
def symbolic_calls(monkeypatch):
    """Records every comparison sent to the symbolic process, which then answers False."""
    calls = []
    monkeypatch.setattr(verify._SYMBOLIC, "equal", lambda pred, gold, timeout: calls.append((pred, gold)) or False)
    return calls


@pytest.mark.parametrize(
    "pred, gold",
    [("7", "007"), ("0.50", "\\frac{1}{2}"), ("50\\%", "0.5"), ("12", "21"), ("even", "neve"), ("204_5", "204_7")],
)
def test_fast_path_decides_without_math_verify(pred, gold, symbolic_calls):
    answers_equal(pred, gold)
    assert symbolic_calls == []


GUARDED = [  # what sympy would choke on: never handed to math-verify
    "10^{10^{10^{10}}}",
    "10^10^10",
    "2^{(3^{4})}",
    "(10^{9999})^{9999}",
    "2^{100000000}",
    "x^{100001}",
    "1000000!",
    "(10^6)!",
    "\\binom{1000000}{500000}",
    "\\Gamma(10^{6})",
    "9" * 600 + "x",  # integer literal too long
    "(" * 11 + "x" + ")" * 11,  # nested too deep for the LaTeX parser
    "+".join(["x"] * 600),  # too long
]


@pytest.mark.parametrize("pred", GUARDED, ids=lambda s: s[:30])
def test_symbolic_guards_refuse(pred, symbolic_calls):
    assert answers_equal(pred, "x+1") is False
    assert symbolic_calls == []


@pytest.mark.parametrize(
    "pred",
    ["x^2y^2", "e^{x}", "2^{10}", "x^{10}+y^{10}", "\\frac{10!}{5!}", "(" * 10 + "x" + ")" * 10, "\\binom{10}{3}"],
)
def test_symbolic_guards_let_ordinary_answers_through(pred, symbolic_calls):
    answers_equal(pred, "y=x+1")  # an equation: the numeric test cannot reject it
    assert len(symbolic_calls) == 1


def test_symbolic_path_works_off_the_main_thread():
    # math-verify's own SIGALRM timeout cannot work in a thread; r1lab's process-based one does.
    results = {}
    worker = threading.Thread(
        target=lambda: results.update(ok=answers_equal("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"))
    )
    worker.start()
    worker.join(HANG_BOUND_S)
    assert results == {"ok": True}


# --------------------------------------------------------------------------------------------
# grade


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("<think>..</think><answer>\\frac12</answer>", "0.5", ("\\frac12", True)),
        ("<answer>12</answer>", "21", ("12", False)),
        ("so \\boxed{1,234}.", "1234", ("1,234", True)),
        ("no answer at all: 5", "5", (None, False)),
        ("<answer> </answer>", "5", (None, False)),
    ],
)
def test_grade(completion, gold, expected):
    assert grade(completion, gold) == expected


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("0.5", "$\\frac12$", ("0.5", True)),  # a bare answer against a $-wrapped gold
        (" 18 ", "18", ("18", True)),
        ("\\boxed{3} but 4", "4", ("3", False)),  # an extractable answer wins over the bare text
        ("   ", "5", (None, False)),
    ],
)
def test_grade_bare_predictions(text, gold, expected):
    assert grade(text, gold, bare=True) == expected
    assert grade(text, gold)[1] is (expected[1] and extract_answer(text) is not None)


# --------------------------------------------------------------------------------------------
# numeric rejection: wrong numbers and wrong polynomials never reach sympy

@pytest.mark.parametrize(
    "pred, gold",
    [
        ("3\\sqrt{13}", "4"),
        ("-\\frac{\\pi}{6}", "0.15"),
        ("6-5i", "-50"),
        ("p-q", "\\frac{14}{3}"),
        ("6r^2-4r-24", "4495"),
        ("x+1", "x-1"),
        ("2\\pi r", "\\pi r^2"),
        ("C", "E"),
        ("5", "(6,31,-1)"),
        ("3", "(2,\\infty)"),
        ("1", "3,5,7"),
        ("1", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("4", "(0,9)\\cup(9,36)"),
    ],
)
def test_numeric_rejection_decides_without_sympy(pred, gold, symbolic_calls):
    assert answers_equal(pred, gold) is False
    assert symbolic_calls == []


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"),  # equal values: sympy confirms
        ("x^2+2x+1", "(x+1)^2"),
        ("2r\\pi", "2\\pi r"),
        ("x=5", "5"),  # relations are not evaluated
        ("\\cot x", "1"),  # nor functions
        ("3\\pm2\\sqrt{2}", "1"),  # nor \pm
    ],
)
def test_numeric_rejection_leaves_the_rest_to_sympy(pred, gold, symbolic_calls):
    answers_equal(pred, gold)
    assert len(symbolic_calls) == 1


# --------------------------------------------------------------------------------------------
# the hard limit: every grading call returns within 2x the per-answer limit, in any thread

LIMIT_S = 1.0  # the per-answer limit the battery runs with (the default, TIMEOUT_S, is 5 s)

SLOW = "(x+1)^{999}"  # passes every guard; sympy needs ~10 s to compare it with x+1

HOSTILE = {
    "1MB of text": "a" * 1_000_000,
    "1MB of box openers": "\\boxed{" * 140_000,
    "1MB of answer openers": "<answer>" * 125_000,
    "1MB of answer closers": "</answer>" * 110_000,
    "1MB of spaces after boxed": "\\boxed" + " " * 1_000_000,
    "1MB of text wrappers": "\\text{" * 140_000,
    "1MB command word": "\\" + "a" * 1_000_000,
    "1MB number": "<answer>" + "9" * 1_000_000 + "</answer>",
    "1MB of 'the answer is'": "the answer is " * 75_000,
    "1MB of hashes": "####\n" * 200_000,
    "10k nested braces in a box": "\\boxed{" + "{" * 10_000 + "5" + "}" * 10_000 + "}",
    "10k unclosed braces": "\\boxed{" + "{" * 10_000,
    "10k nested parentheses": "<answer>" + "(" * 10_000 + "x" + ")" * 10_000 + "</answer>",
    "900 nested fractions": "<answer>" + "\\frac{1}{" * 900 + "2" + "}" * 900 + "</answer>",
    "NUL bytes": "<answer>\x005\x00</answer>\x00",
    "NUL in a box": "\\boxed{\x00}",
    "exponent tower": "\\boxed{10^{10^{10^{10}}}}",
    "bare tower": "\\boxed{10^10^10^10}",
    "power of a power": "\\boxed{(10^{9999})^{9999}}",
    "huge exponent": "\\boxed{2^{100000000}}",
    "huge factorial": "\\boxed{1000000!}",
    "factorial of a power": "\\boxed{(10^{6})!}",
    "huge binomial": "\\boxed{\\binom{1000000}{500000}}",
    "sqrt of 4000 digits": "<answer>\\sqrt{" + "9" * 4000 + "}</answer>",
    "5k-char sum": "<answer>" + "+".join(["\\sqrt{%d}" % i for i in range(500)]) + "</answer>",
    "slow for sympy": "\\boxed{" + SLOW + "}",
    "slow for sympy 2": "\\boxed{(x+y+z)^{200}}",
    "malformed frac": "\\boxed{\\frac{1}{\\sqrt{}}^^_{}\\left( }",
    "unclosed fracs": "<answer>\\frac{\\frac{\\frac{</answer>",
    "braces inside out": "<answer>}}}{{{</answer>",
    "lone begin": "<answer>\\begin{pmatrix} 1 \\\\ </answer>",
    "dollar soup": "<answer>$$$$\\$$</answer>",
    "many carets": "<answer>" + "^" * 9000 + "</answer>",
    "mixed scripts": "答案是 \\boxed{五 + x}，또는 ответ \\boxed{х+1}",  # Cyrillic х, not x
    "right-to-left": "<answer>\u202e1+x\u202c</answer>",
    "zero-width space": "\\boxed{x\u200b+1}",
    "emoji": "<answer>🙂+1</answer>",
}


@pytest.fixture(scope="module", autouse=True)
def symbolic_process_started():
    """The one-time start of the symbolic process (~3 s of imports) is not charged to any answer."""
    assert verify.warm_up()


HOSTILE_PROSE = {  # what the prose tier scans: long sentences, many spans, copulas and markers
    "1MB of dollars": "$" * 1_000_000,
    "1MB of money": "$1 + " * 200_000,
    "1MB of copulas and numbers": "x is 1 and " * 100_000,
    "1MB of sentences": "It is 6. " * 110_000,
    "1MB of computations": "1 = " * 250_000,
    "1MB of turn markers": "<|im_end|>" * 100_000,
    "1MB of answer phrases": "Answer: " * 125_000,
    "10k display spans": "$$x$$ " * 10_000 + "so.",
    "1MB of array matrices": "\\boxed{[\\begin{array}{c}" * 60_000,
}


@pytest.mark.parametrize("prose", [False, True])
@pytest.mark.parametrize("gold", ["5", "x+1"])
@pytest.mark.parametrize("completion", list(HOSTILE.values()) + list(HOSTILE_PROSE.values()),
                         ids=list(HOSTILE) + list(HOSTILE_PROSE))
def test_hostile_input_is_graded_within_the_limit(completion, gold, prose):
    start = time.perf_counter()
    _, correct = grade(completion, gold, prose=prose, timeout=LIMIT_S)
    assert time.perf_counter() - start < 2 * LIMIT_S
    assert correct is False


@pytest.mark.parametrize("completion", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_off_the_main_thread(completion):
    results = []
    worker = threading.Thread(target=lambda: results.append(grade(completion, "x+1", timeout=LIMIT_S)), daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join(2 * LIMIT_S)
    assert time.perf_counter() - start < 2 * LIMIT_S
    assert len(results) == 1 and results[0][1] is False


def test_a_timeout_grades_wrong_and_is_counted():
    verify.reset_stats()
    assert answers_equal(SLOW, "x+1", timeout=0.5) is False
    assert verify.stats() == {"symbolic": 1, "timeouts": 1}
    assert answers_equal("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}") is True  # still serving
    assert verify.stats() == {"symbolic": 2, "timeouts": 1}


def test_slow_answers_in_parallel_threads_each_keep_their_own_limit():
    results = {}

    def work(i):
        pred = SLOW if i % 2 else "\\frac{\\sqrt{2}}{2}"
        results[i] = answers_equal(pred, "\\frac{1}{\\sqrt{2}}" if i % 2 == 0 else "x+1", timeout=LIMIT_S)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * LIMIT_S)
    assert time.perf_counter() - start < 2 * LIMIT_S
    assert results == {0: True, 1: False, 2: True, 3: False, 4: True, 5: False}


# --------------------------------------------------------------------------------------------
# the real references: MATH-500 solutions and GSM8K rationales


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _false_positives(rows: list[dict]) -> int:
    """Pair each solution with the next problem's answer: acceptances are false positives unless
    the two gold answers are the same string after normalisation."""
    count = 0
    for r, other in zip(rows, rows[1:] + rows[:1]):
        if grade(r["solution"], other["answer"])[1] and normalize_answer(r["answer"]) != normalize_answer(other["answer"]):
            count += 1
    return count


@pytest.mark.skipif(not MATH500.exists(), reason=f"{MATH500} not present")
def test_math500_reference_solutions_grade_correct():
    rows = _rows(MATH500)
    assert len(rows) == 500
    wrong = [r["id"] for r in rows if not grade(r["solution"], r["answer"])[1]]
    assert len(wrong) <= 1, wrong
    assert _false_positives(rows) <= 1


@pytest.mark.skipif(not GSM8K.exists(), reason=f"{GSM8K} not present")
def test_gsm8k_reference_rationales_grade_correct():
    rows = _rows(GSM8K)
    assert len(rows) == 1319
    wrong = [r["id"] for r in rows if not grade(r["solution"], r["answer"])[1]]
    assert wrong == []
    assert _false_positives(rows) <= 1
