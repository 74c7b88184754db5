"""The R1-Zero prompt template and how each built-in task phrases its question in each language.

The template is the paper's, verbatim (DeepSeek-R1, arXiv 2501.12948, table 1; ../shared/R1.md): it
says nothing about how to reason, only where the reasoning and the answer go. `apply_template`
wraps a phrased question in it; a question ending in "?" or "." therefore reads "?. Assistant:",
exactly as it would in the paper.

Why one fixed phrasing per language, with the arithmetic expression LAST: the template appends
". Assistant:", so the operands then sit at the same distance (in characters, and nearly in
tokens) before "Assistant:" in every language. A tiny model has few heads to spare for finding
the operands, and rewording would move them around; a fixed suffix lets the language switch the
preamble without moving the numbers.
"""

from __future__ import annotations

import json
import random

from r1lab.errors import UserError
from r1lab.tasks.base import LANGS

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {prompt}. Assistant:"
)

# The expression is appended to these prefixes, so it is always the very end of the question.
ARITHMETIC_PREFIXES = {
    "en": "Compute: ",
    "zh": "计算：",
    "ja": "計算してください：",
    "ko": "계산하세요: ",
}

# No final punctuation: the template adds ". Assistant:". The Korean wording avoids particles
# whose form depends on how the preceding number is pronounced (을/를, 이/가).
COUNTDOWN_PHRASINGS = {
    "en": (
        "Using the numbers {numbers}, create an equation that equals {target}. "
        "You can use + - * / and parentheses, and each number at most once"
    ),
    "zh": "用数字 {numbers} 写出一个结果等于 {target} 的算式。可以使用 + - * / 和括号，每个数字最多使用一次",
    "ja": (
        "数字 {numbers} を使って、答えが {target} になる式を作ってください。"
        "+ - * / と括弧が使えます。各数字は一度までしか使えません"
    ),
    "ko": (
        "숫자 {numbers}만 사용하여 결과가 {target}인 식을 만드세요. "
        "+ - * / 와 괄호를 쓸 수 있고, 각 숫자는 최대 한 번만 사용할 수 있습니다"
    ),
}

# Countdown with + and - only (signs.py): the numbers, then the target, last, so that they sit at a
# fixed distance before "Assistant:" whatever the language.
SIGNS_PHRASINGS = {
    "en": "Put + or - between the numbers, in their order, to reach the target. Numbers: {numbers}. Target: {target}",
    "zh": "在数字之间按顺序填入 + 或 -，使结果等于目标。数字：{numbers}。目标：{target}",
    "ja": "数字の間に順番どおり + か - を入れて、目標の数にしてください。数字：{numbers}。目標：{target}",
    "ko": "숫자 사이에 순서대로 + 또는 - 를 넣어 목표 수를 만드세요. 숫자: {numbers}. 목표: {target}",
}


def apply_template(prompt: str) -> str:
    """The R1-Zero template with the user's question in it."""
    return R1_ZERO_TEMPLATE.format(prompt=prompt)


def r1zero_chat_template(with_bos: bool) -> str:
    """The R1-Zero template as a Jinja chat template, for `tokenizer.apply_chat_template` (and so for
    `transformers chat`/`serve` and vLLM): one user message and the generation prompt render
    `apply_template(question)`, after the BOS token when `with_bos` (a tokenizer that adds BOS to a
    plain prompt must find it in a chat-rendered one, which is tokenised without special tokens).

    The generation prompt ends with "Assistant:", as in training, so the model's output starts with
    its thinking (`<think>`), as R1's own template arranges with its `<think>` prefill; an R1
    reasoning parser (everything before `</think>`) splits it off. The paper's template is single
    turn; this one renders a conversation as its text reads, "A conversation between User and
    Assistant": each user turn " User: {content}.", each earlier assistant turn " Assistant:" and
    its answer, its thinking dropped (the text after its last `</think>`, trimmed) as R1's template
    drops it. A first system message replaces the preamble (the R1-Zero instructions); other roles
    are not rendered."""
    before, after = R1_ZERO_TEMPLATE.split("{prompt}")
    turn = " User: "
    assert before.endswith(turn) and after == ". Assistant:", "the R1-Zero template changed: update its chat template"
    preamble = json.dumps(before[: -len(turn)])
    return (("{{- bos_token -}}" if with_bos else "")
            + "{%- if messages and messages[0]['role'] == 'system' -%}{{- messages[0]['content'] -}}"
            + "{%- else -%}{{- " + preamble + " -}}{%- endif -%}"
            + "{%- for message in messages -%}"
            + "{%- if message['role'] == 'user' -%}{{- ' User: ' + message['content'] + '.' -}}"
            + "{%- elif message['role'] == 'assistant' -%}"
            + "{{- ' Assistant:' + (message['content'].split('</think>')[-1] | trim) -}}"
            + "{%- endif -%}{%- endfor -%}"
            + "{%- if add_generation_prompt -%}{{- ' Assistant:' -}}{%- endif -%}")


def check_langs(langs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`langs` as a tuple, or UserError if it is empty or names a language without phrasings."""
    langs = tuple(langs)
    if not langs:
        raise UserError(f"no prompt languages given; choose from {', '.join(LANGS)}")
    unknown = [lang for lang in langs if lang not in LANGS]
    if unknown:
        raise UserError(f"unknown prompt language {unknown[0]!r}; choose from {', '.join(LANGS)}")
    return langs


def pick_langs(n: int, seed: int, langs: tuple[str, ...]) -> list[str]:
    """`n` languages drawn from `langs`, deterministic in `seed`.

    A stream of its own (not the problem generator's), so that the same seed gives the same
    problems whatever languages they are asked in.
    """
    rng = random.Random(f"langs:{seed}")
    return [rng.choice(langs) for _ in range(n)]


def arithmetic_prompt(expression: str, lang: str) -> str:
    """The arithmetic question in `lang`; `expression` (no spaces) is its last characters."""
    return ARITHMETIC_PREFIXES[lang] + expression


def countdown_prompt(numbers: list[int], target: int, lang: str) -> str:
    """The Countdown question in `lang`, numbers shown as a list: "[3, 7, 25]"."""
    shown = "[" + ", ".join(str(x) for x in numbers) + "]"
    return COUNTDOWN_PHRASINGS[lang].format(numbers=shown, target=target)


def signs_prompt(numbers: list[int], target: int, lang: str) -> str:
    """The signs question in `lang`, numbers separated by spaces: "Numbers: 47 17 12. Target: 42"."""
    return SIGNS_PHRASINGS[lang].format(numbers=" ".join(str(x) for x in numbers), target=target)
