"""The synthetic pretraining corpus: where the tiny base model learns to sometimes reason.

R1-Zero needs a base model that *can* reason but does not always choose to (paper §2.2: RL
discovers that thinking pays; it cannot create a skill from nothing). So the corpus mixes, for
each train-split problem:

- worked solutions: a fixed-width "shift-register" scratchpad. A register line holds both
  operands, the carry and the result so far; a fact line (`1+9+0=10`) adds the operands' last
  digits and the carry; the next register line shifts the operands one digit right and the new
  digit in from the left. Every token is a copy from a fixed distance back except the fact's
  result, a lookup in a 200-entry table: the only kind of multi-step reasoning a model of a
  million active parameters learns within 15 CPU-minutes (docs/devlog.md has the runs where
  an implicit digit sum and a rarely practised copy were not learned);
- slips: a worked solution with one wrong digit, either caught ("wait, let me check", in the
  prompt's language, then the line redone) or not caught (the wrong digit propagates);
- bare answers: `<think></think><answer>N</answer>` with no work, which a tiny model cannot
  compute and so must guess (multi-digit sums in one step stay near 0% at this scale);
- untagged answers (`Assistant: N`), which fail the R1-Zero format.

Each fact line of a worked solution opens with one word in a language ("digit 1+9+0=10",
"位 1+9+0=10", "けた ...", "자리 ..."): the prompt's language, except that for a non-English
prompt each line's word (and a caught slip's reflection) is English with probability `cot_mix`.
That is the language mixing of the paper's R1-Zero (§3: its chains of thought mix languages,
mostly English into others): the base inherits it, R1-Zero's rewards do not care about it, and
the language-consistency reward of the R1 pipeline has something to remove. One short word per
line, so that the copies at fixed distances that the scratchpad relies on stay fixed (each word
is one token of the trained tokenizer).

Documents come in two framings with the same distance between the problem and the start of
the solution: the full R1-Zero template (mostly bare answers, a minority of worked ones, so the
base under the template usually guesses) and a bare "User: ... Assistant:" framing (mostly
worked). The model learns the skill from the second and a weak habit of using it under the
template from the first; GRPO has to discover that using it pays. Nothing guarantees it will.

Beside them, documents of the signs task (tasks/signs.py; `SignsCorpusConfig`, `signs_completion`):
guesses, candidates evaluated with the same scratchpad, and, rarely under the R1-Zero template and
mostly in plain documents, candidates checked against the target and retried: the base of the
"aha moment" (issue 17), which can check its own answer and seldom does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from r1lab.errors import UserError
from r1lab.runtime.config import at_least
from r1lab.tasks.base import Problem
from r1lab.tasks.prompts import apply_template
from r1lab.tasks.signs import expression, sign_patterns

REFLECTIONS = {
    "en": "wait, let me check",
    "zh": "等等，让我检查一下",
    "ja": "待って、確認します",
    "ko": "잠깐, 다시 확인해 보자",
}


GLUE = {"en": "digit", "zh": "位", "ja": "けた", "ko": "자리"}  # the word that opens a fact line


@dataclass
class SignsCorpusConfig:
    """Documents of the signs task (tasks/signs.py), where the base meets checking: see `signs_completion`."""

    n_docs: int = 30000  # signs documents beside the arithmetic ones; 0: an arithmetic-only corpus
    n_numbers: int = 3  # numbers per signs problem (2 or 3)
    template_share: float = 0.5  # fraction framed with the R1-Zero template, in [0, 1]
    template_worked: float = 0.10  # under the template: try one candidate, evaluate it, answer it (the rest guess)
    template_checked: float = 0.03  # under the template: try, evaluate, compare, retry until right
    plain_worked: float = 0.2  # in plain documents: evaluate one candidate and answer it (the rest check)

    def validate(self) -> None:
        for name in ("template_share", "template_worked", "template_checked", "plain_worked"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name}: expected a fraction in [0, 1], got {getattr(self, name)}")
        if self.template_worked + self.template_checked > 1:
            raise UserError("template_worked, template_checked: together at most 1")
        at_least(self, 0, "n_docs")
        if self.n_numbers not in (2, 3):
            raise UserError(f"n_numbers: expected 2 or 3, got {self.n_numbers}")


@dataclass
class CorpusConfig:
    n_docs: int = 60000  # arithmetic documents (problems with worked or bare answers)
    template_share: float = 0.5  # fraction of documents framed with the R1-Zero template, in [0, 1]
    # the style mix under the R1-Zero template (the rest is bare tagged answers):
    template_worked: float = 0.07  # share with a worked scratchpad inside <think>
    template_untagged: float = 0.2  # share with an untagged bare answer
    # the style mix in plain "User: ... Assistant:" documents (the rest is bare tagged answers):
    plain_worked: float = 0.95  # share with a worked scratchpad
    plain_untagged: float = 0.02  # share with an untagged bare answer
    slip_rate: float = 0.12  # fraction of worked solutions that contain one wrong digit
    slip_caught: float = 0.5  # fraction of slips followed by "wait, let me check" and a redo
    drill_share: float = 0.0  # fraction of documents that are digit-fact drills (pretraining also fills row ends with them)
    drill_facts: int = 40  # facts per drill document
    cot_glue: bool = True  # open each fact line with a word in a language (see GLUE)
    cot_mix: float = 0.2  # per line, the chance that a non-English prompt's word is English
    signs: SignsCorpusConfig = field(default_factory=SignsCorpusConfig)  # the signs task's documents, where checking is taught

    def validate(self) -> None:
        self.signs.validate()
        for name in ("template_share", "template_worked", "template_untagged", "plain_worked",
                     "plain_untagged", "slip_rate", "slip_caught", "drill_share", "cot_mix"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name}: expected a fraction in [0, 1], got {getattr(self, name)}")
        at_least(self, 0, "n_docs")
        at_least(self, 1, "drill_facts")
        if self.template_worked + self.template_untagged > 1 or self.plain_worked + self.plain_untagged > 1:
            raise UserError("template_worked, plain_worked: a worked share plus its untagged share must not exceed 1")


# ---------------------------------------------------------------------------------------------
# The scratchpad


def scratch_block(x: str, op: str, y: str, slip: Slip | None = None, glue: Callable[[], str] | None = None,
                  grow: bool = True) -> list[str]:
    """Lines computing `x op y` digit by digit, right to left, as a shift register.

    `x` and `y` are zero-padded digit strings of equal width w. The first line is the state
    `X op Y,c,R`; then each step is two lines:
    - a fact `a op b op c=Cd`: the operands' last digits and the carry (borrow) in, then the
      carry (borrow) out and the result digit; for '+' this is the literal sum, zero-padded;
    - the next state: X and Y shifted one digit right, the new carry, and the result register R
      with the new digit shifted in from the left (R has width w+1 for '+', w for '-').
    The fact line keeps the one hard computation (a digit-sum lookup) local, next to its three
    inputs, so that it is learned as a table; every other token is a copy at a fixed distance.
    With a `slip`, one fact gets a wrong digit: if caught, a reflection line follows and the
    fact is redone; if not, the wrong digit is shifted into the register and reaches the answer.
    `glue()`, if given, is the word that opens each fact line. `grow=False` keeps a sum at the
    operands' width (for values known to fit: the signs task's, which stay in 10..99).
    """
    word = (lambda: glue() + " ") if glue else (lambda: "")
    width = len(x) + 1 if op == "+" and grow else len(x)
    r, c = "0" * width, 0
    lines = [f"{x}{op}{y},{c},{r}"]
    for step in range(width):
        a, b = int(x[-1]), int(y[-1])
        s = a + b + c if op == "+" else a - b - c
        digit, carry = s % 10, int(s >= 10) if op == "+" else int(s < 0)
        fact = f"{word()}{a}{op}{b}{op}{c}={carry}{digit}"
        if slip is not None and slip.step == step:
            digit_wrong = (digit + slip.delta) % 10
            wrong = f"{word()}{a}{op}{b}{op}{c}={carry}{digit_wrong}"
            if slip.reflection is None:
                fact, digit = wrong, digit_wrong
            else:
                lines += [wrong, slip.reflection]
        x, y, r, c = "0" + x[:-1], "0" + y[:-1], str(digit) + r[:-1], carry
        lines += [fact, f"{x}{op}{y},{c},{r}"]
    return lines


def drill_text(ops: list[str], rng: random.Random, n_facts: int) -> str:
    """`n_facts` random digit facts in the scratchpad's own notation, one per line: dense
    practice of the one step that is not a copy."""
    facts = []
    for _ in range(n_facts):
        op, a, b, c = rng.choice(ops), rng.randrange(10), rng.randrange(10), rng.randrange(2)
        s = a + b + c if op == "+" else a - b - c
        facts.append(f"{a}{op}{b}{op}{c}={int(s >= 10) if op == '+' else int(s < 0)}{s % 10}")
    return "\n".join(facts)


def check_lines(value: int, target: int) -> list[str]:
    """The comparison of a candidate's value with the target, as the scratchpad does it: the target
    copied from the prompt ("want 17"), subtracted from the value digit by digit ("check 37-17,0,00"
    ...), then the verdict read off the difference (right only when it is 00). Values and targets
    are in 10..99, so 00 means equal."""
    block, _ = worked_lines([value, target], ["-"], grow=False)
    return [f"want {target}", f"check {block[0]}", *block[1:], "right" if value == target else "wrong, wait"]


def verdict_drill_text(rng: random.Random, n_pairs: int) -> str:
    """`n_pairs` last lines of a comparison, a difference register then its verdict, half of them
    00: practice of reading the verdict off the difference (nothing else is random here)."""
    lines = []
    for _ in range(n_pairs):
        d = 0 if rng.random() < 0.5 else rng.choice([v for v in range(100) if v])
        lines += [f"00-00,0,{d:02d}", "right" if d == 0 else "wrong, wait"]
    return "\n".join(lines)


@dataclass(frozen=True)
class Slip:
    block: int  # which operator's block
    step: int  # which digit step within it
    delta: int  # 1..9 added (mod 10) to the right digit
    reflection: str | None  # the "wait, let me check" line if the slip is caught, else None


def worked_lines(operands: list[int], ops: list[str], slip: Slip | None = None,
                 glue: Callable[[], str] | None = None, grow: bool = True) -> tuple[list[str], int]:
    """The scratchpad for a left-to-right chain `a op b op c ...` and the value it arrives at.

    One block per operator; each block's first operand is a verbatim copy of the previous
    block's result register, so the whole chain is copies at fixed distances plus digit sums.
    """
    digits = max(len(str(v)) for v in operands)
    acc = str(operands[0]).zfill(digits)
    lines: list[str] = []
    for b, (op, v) in enumerate(zip(ops, operands[1:])):
        block = scratch_block(acc, op, str(v).zfill(len(acc)), slip if slip and slip.block == b else None, glue, grow)
        lines += block
        acc = block[-1].rsplit(",", 1)[1]
    return lines, int(acc)


def cot_language(lang: str, rng: random.Random, mix: float) -> str:
    """The language of one piece of a chain of thought for a prompt in `lang`: English with
    probability `mix` for a non-English prompt, else `lang`."""
    return "en" if lang != "en" and rng.random() < mix else lang if lang in GLUE else "en"


def glue_words(lang: str, rng: random.Random, mix: float) -> Callable[[], str]:
    return lambda: GLUE[cot_language(lang, rng, mix)]


def random_slip(operands: list[int], ops: list[str], rng: random.Random, reflection: str | None) -> Slip:
    digits = max(len(str(v)) for v in operands)
    block = rng.randrange(len(ops))
    width = digits + sum(1 for op in ops[: block + 1] if op == "+")
    return Slip(block, rng.randrange(width), rng.randint(1, 9), reflection)


# ---------------------------------------------------------------------------------------------
# Documents

PLAIN_FRAME = "User: {prompt}. Assistant:"  # the R1-Zero template's tail, without its preamble


def completion_text(problem: Problem, style: str, rng: random.Random, cfg: CorpusConfig) -> str:
    """One completion for `problem` in `style` ('worked', 'bare' or 'untagged')."""
    if style == "untagged":
        return f" {problem.answer}"
    if style == "bare":
        return f"<think>\n</think>\n<answer>{problem.answer}</answer>"
    operands, ops = problem.meta["operands"], problem.meta["ops"]
    slip = None
    if rng.random() < cfg.slip_rate:
        caught = rng.random() < cfg.slip_caught
        reflection = REFLECTIONS[cot_language(problem.lang, rng, cfg.cot_mix if cfg.cot_glue else 0.0)]
        slip = random_slip(operands, ops, rng, reflection if caught else None)
    glue = glue_words(problem.lang, rng, cfg.cot_mix) if cfg.cot_glue else None
    lines, value = worked_lines(operands, ops, slip, glue)
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer>{value}</answer>"


def document(problem: Problem, rng: random.Random, cfg: CorpusConfig) -> tuple[str, str]:
    """(prompt text, completion text) of one pretraining document."""
    if rng.random() < cfg.drill_share:
        return "", drill_text(problem.meta["ops"], rng, cfg.drill_facts)
    if rng.random() < cfg.template_share:
        prompt, worked, untagged = apply_template(problem.prompt), cfg.template_worked, cfg.template_untagged
    else:
        prompt, worked, untagged = PLAIN_FRAME.format(prompt=problem.prompt), cfg.plain_worked, cfg.plain_untagged
    u = rng.random()
    style = "worked" if u < worked else "untagged" if u < worked + untagged else "bare"
    return prompt, completion_text(problem, style, rng, cfg)


def build_documents(problems: list[Problem], cfg: CorpusConfig, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [document(p, rng, cfg) for p in problems]


# ---------------------------------------------------------------------------------------------
# Signs documents: proposing a candidate, evaluating it, checking it


def signs_completion(problem: Problem, style: str, rng: random.Random) -> str:
    """One completion for a signs problem in `style`: 'bare', 'worked' or 'checked'.

    Every candidate is a guess, never chosen because it is the gold: the first is a sign pattern
    drawn uniformly, and a retry is the next one in a fixed cyclic order (`sign_patterns`' order:
    counting in binary, + as 0 and - as 1), a rule that reads nothing but the candidate before it;
    so each retry is uniform among the patterns not yet tried, and none is tried twice. 'bare'
    answers one with an empty think block; 'worked' writes
    `try <candidate>`, evaluates it with the arithmetic scratchpad (sums kept at two digits) and
    answers it, right or wrong; 'checked' also compares the value with the target (`check_lines`:
    "check 52-42,0,00" ... "wrong, wait") and tries again until one is right.

    The comparison is a subtraction because the base could not learn it as a lookup: written as
    "got 52, want 42: wrong, wait", the first base copied both numbers right every time but
    decided right/wrong correctly only 61% of the time; and the target gets a line of its own
    because, written straight into the subtraction, it was copied from the candidate instead of
    the prompt (docs/devlog.md, issue 17).
    """
    numbers, target = problem.meta["numbers"], problem.meta["target"]
    patterns = sign_patterns(len(numbers))
    first = rng.randrange(len(patterns))
    if style == "bare":
        return f"<think>\n</think>\n<answer>{expression(numbers, patterns[first])}</answer>"
    lines: list[str] = []
    for i in range(len(patterns)):
        signs = patterns[(first + i) % len(patterns)]
        candidate = expression(numbers, signs)
        evaluation, value = worked_lines(numbers, list(signs), grow=False)
        lines += [f"try {candidate}", *evaluation]
        if style == "worked":
            break
        lines += check_lines(value, target)
        if value == target:
            break
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer>{candidate}</answer>"


def signs_document(problem: Problem, rng: random.Random, cfg: SignsCorpusConfig) -> tuple[str, str]:
    if rng.random() < cfg.template_share:
        prompt, worked, checked = apply_template(problem.prompt), cfg.template_worked, cfg.template_checked
    else:
        prompt, worked, checked = PLAIN_FRAME.format(prompt=problem.prompt), cfg.plain_worked, 1 - cfg.plain_worked
    u = rng.random()
    style = "worked" if u < worked else "checked" if u < worked + checked else "bare"
    return prompt, signs_completion(problem, style, rng)


def build_signs_documents(problems: list[Problem], cfg: SignsCorpusConfig, seed: int) -> list[tuple[str, str]]:
    """`cfg.n_docs` documents over `problems` (cycled: each visit draws new candidates)."""
    rng = random.Random(f"signs:{seed}")
    return [signs_document(problems[i % len(problems)], rng, cfg) for i in range(cfg.n_docs)] if problems else []
