"""Reading a final answer stated in prose: the second, lenient half of extraction (extract.py).

    own_turn(text) -> str                    the response cut at the first chat-template turn marker
    stated_answer(text) -> (str, pos) | None the value after the last "the answer is" / "答案是" ...
    last_sentence_answer(text) -> str | None the value of the last sentence that states one

Only extract.py calls these; `extract_answer(..., prose=True)` says when. Every scan is a single
pass of a regex without nested quantifiers, and the sentence reading looks only at the last
PROSE_WINDOW characters, so a 1 MB completion costs one linear scan.

What counts as a *candidate* value in a sentence: a math span (`$...$`, `$$...$$`, `\\(...\\)`,
`\\[...\\]`) whose content reads as math (no lowercase word of 3+ letters outside `\\text{}` and
commands, not ending in an operator: `$10,200 + $255` is money, not math), a bare `\\frac{a}{b}`,
or a number outside any span (`12`, `-3.5`, `12,345`, `2/3`, `25%`, `28 percent`; not the `2` of
`x2` or `AZ2K`). Which candidate is the answer:
  * a sentence with no words outside its spans (`18`, `(1, 2)`, `$x+1$.`) is itself the value;
  * else the first candidate after the sentence's last copula that has one after it (`is`, `are`,
    `=`, `:`, `equals`, `est`, `ist`, `es`, `是`, `为`, `等于`, `는`/`은`, `は`, `هو`): "the volume
    of $ABCD$ is 120" -> 120, "158 - 66 = 92" -> 92;
  * else the last candidate of the sentence (or, reading after an answer phrase, the first);
and candidates joined to the chosen one by separators alone (`,` `;` `and` `or` `\\quad`) come
with it, as one list: "the roots are $1$ and $2$" -> `1, 2`, and a hedge "5 or 6" is the list
`5, 6`, never 5. (Boxes differ: `\\boxed{A}, or \\boxed{B}` restates one answer, extract.py.)
A value that is a chain of equalities, or an equation whose left side is a computation on
numbers, keeps its last side (prose.last_side): `1 + 2 \\times 9 = 1 + 18 = 19` -> 19,
`x = \\frac{24.08}{3.44} = 7` -> 7; `x = 5`, `7 = 11a+c` and `a=1, b=2` stay whole (the verifier
compares equations).
"""

from __future__ import annotations

import re
from collections import deque

PROSE_WINDOW = 4_000  # the last-sentence reading looks at the response's last 4,000 characters
TAIL = 300  # an answer phrase's value is read from at most this many characters after it

# Chat-template turn markers: a response ends at the first one (text after it is a hallucinated
# next turn). ChatML (Qwen, Yi), Llama 3, DeepSeek-R1/V3 (fullwidth bars), Phi-3, Gemma, Zephyr
# and the plain "Human:" / "User:" turns of Anthropic-style and R1-Zero-style templates.
TURN_MARKERS = (
    "<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>", "<|endoftext|>",
    "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<|end|>", "<|user|>", "<|assistant|>",
    "<end_of_turn>", "<start_of_turn>", "</s>", "\nHuman:", "\nUser:", "\nAssistant:",
)
_TURN = re.compile("|".join(re.escape(m) for m in TURN_MARKERS))


def own_turn(text: str) -> str:
    """`text` up to the first turn marker that has non-blank text before it (a marker that opens
    the text, as a decoded `<|im_start|>assistant` header would, is skipped, not cut at)."""
    for m in _TURN.finditer(text):
        if text[: m.start()].strip():
            return text[: m.start()]
    return text


# --------------------------------------------------------------------------------------------
# Answer phrases

# The phrase, then optional "is" / ":"; the value is read after it. English first, then Chinese,
# Japanese, Korean, French, German, Spanish. "Answer $9$" and "Answer: 9" count; "answer the
# question" yields no value and the phrase before it is tried.
_PHRASE = re.compile(
    r"(?:\bfinal\s+answer\b|\banswer\b)(?:\s*\**\s*(?:is|should\s+be|would\s+be|will\s+be|=|:|：))?"
    r"|答案\s*(?:是|为|為|[:：])?|最终答案\s*(?:是|为)?|答えは|答え\s*[:：]|정답은|답은|정답\s*[:：]|답\s*[:：]"
    r"|\bréponse\s+(?:finale\s+)?(?:est|[:：])|\bréponse\s*[:：]|\bantwort\s+(?:ist|lautet)|\bantwort\s*[:：]"
    r"|\brespuesta\s+(?:final\s+)?(?:es|[:：])|\brespuesta\s*[:：]",
    re.IGNORECASE,
)
_LEAD = re.compile(r"[\s*:：]*")  # markdown bold and colons between a phrase and its value
_PHRASES_TRIED = 8  # the last few phrases are tried, latest first


def stated_answer(text: str) -> tuple[str, int] | None:
    """(value, position of its phrase) for the last answer phrase followed by a value, or None."""
    recent: deque[re.Match] = deque(maxlen=_PHRASES_TRIED)
    for m in _PHRASE.finditer(text):
        recent.append(m)
    for m in reversed(recent):
        tail = text[m.end() : m.end() + TAIL]
        tail = tail[_LEAD.match(tail).end() :]
        value = _sentence_value(tail, first_sentence=True)
        if value:
            return value, m.start()
    return None


def last_sentence_answer(text: str) -> str | None:
    """The value of the last sentence of `text` (its last PROSE_WINDOW characters) that has a candidate."""
    return _sentence_value(text[-PROSE_WINDOW:], first_sentence=False)


# --------------------------------------------------------------------------------------------
# Sentences and candidates

_DELIM = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]")
_CLOSER = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_TEXT_ARG = re.compile(r"\\[A-Za-z]+\*?\s*\{[^{}]*\}")  # \text{...}, \begin{pmatrix}, \operatorname{lcm}
_COMMAND = re.compile(r"\\[A-Za-z]+")
_SPAN_WORD = re.compile(r"(?<![A-Za-z])[a-z]{3,}|[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_OPERATOR_END = re.compile(r"[-+*/=<>,^_]\s*$")
# words outside spans: Latin (2+ letters), or a single CJK, Hangul, Arabic, Devanagari or Cyrillic letter
_WORD = re.compile(r"[A-Za-zÀ-ÿ]{2,}|[\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_BOUNDARY = re.compile(r"[.!?](?=\s|$)|[。！？!?।\n]")
_ATOM = (r"(?:-(?=\d))?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:/\d+)?"
         r"(?:\s*(?:\\?%|percent(?:age)?\b|pct\b))?")
# a number, or numbers joined by arithmetic (`16 - 3 - 4 = 9`: one candidate, read as its last
# side), or a bare \frac{a}{b}
_NUMBER = re.compile(
    rf"(?<![A-Za-z0-9_.,/\\^])\(?{_ATOM}\)?(?:[ \t]*[-+*/×÷=][ \t]*\(?{_ATOM}\)?)*"
    r"|\\[dt]?frac\{[^{}]*\}\{[^{}]*\}"
)
_COPULA = re.compile(
    r"\b(?:is|are|was|were|equals?|be|est|sont|ist|sind|beträgt|es|son)\b|=|:|：|是|为|為|等于|は|는|은|هو",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"(?:\s|,|;|&|\*\*|\\quad|\\qquad|\\[,;:! ]|\\text\{\s*(?:and|or)?\s*\}|\band\b|\bor\b)*",
                        re.IGNORECASE)


def _spans(text: str) -> list[tuple[int, int, int, int]]:
    """Math spans as (outer start, content start, content end, outer end), in order. A `$` whose
    span would not read as math is taken for a currency sign, and the scan reopens at its closer."""
    spans = []
    opener: tuple[str, int, int] | None = None  # (token, outer start, content start)
    for m in _DELIM.finditer(text):
        tok = m.group()
        if tok == "\\$":
            continue
        if opener is None:
            if tok in _CLOSER:
                opener = (tok, m.start(), m.end())
            continue
        if tok != _CLOSER[opener[0]]:
            continue
        content = text[opener[2] : m.start()]
        if _reads_as_math(content) and not (opener[0] == "$" and "\n\n" in content):
            spans.append((opener[1], opener[2], m.start(), m.end()))
            opener = None
        else:
            opener = (tok, m.start(), m.end()) if tok == "$" else None
    return spans


def _blank(pattern: re.Pattern, s: str) -> str:
    """`s` with every match of `pattern` replaced by as many spaces (positions are kept)."""
    return pattern.sub(lambda m: " " * len(m.group()), s)


def _reads_as_math(content: str) -> bool:
    bare = _COMMAND.sub(" ", _TEXT_ARG.sub(" ", content))
    return bool(content.strip()) and not _SPAN_WORD.search(bare) and not _OPERATOR_END.search(content)


def _sentence_value(text: str, first_sentence: bool) -> str | None:
    """The value of the first (or the last) sentence of `text` that has a candidate, by the rules
    of the module docstring; None when no sentence has one."""
    spans = _spans(text)
    pieces: list[tuple[str, int, int]] = []  # ("cand" | "copula" | "end" | "word", start, end), in order
    gaps = [(0 if i == 0 else spans[i - 1][3], s[0]) for i, s in enumerate(spans)]
    gaps.append((spans[-1][3] if spans else 0, len(text)))
    for i, (a, b) in enumerate(gaps):
        gap = text[a:b]
        for m in _NUMBER.finditer(gap):
            pieces.append(("cand", a + m.start(), a + m.end()))
        for m in _COPULA.finditer(gap):
            pieces.append(("copula", a + m.start(), a + m.end()))
        for m in _BOUNDARY.finditer(gap):
            pieces.append(("end", a + m.start(), a + m.end()))
        bare = _blank(_COMMAND, _blank(_TEXT_ARG, gap))  # \begin{pmatrix}, \text{cm} are not words here
        for m in _WORD.finditer(bare):
            pieces.append(("word", a + m.start(), a + m.end()))
        if i < len(spans):
            outer, start, end, after = spans[i]
            pieces.append(("cand", start, end))
            if text.startswith(("$$", "\\["), outer) and text[start:end].rstrip().endswith("."):
                pieces.append(("end", after, after))  # display math ending in "." ends its sentence
    pieces.sort(key=lambda p: (p[1], p[0] != "cand"))
    sentences: list[tuple[int, list[tuple[str, int, int]]]] = [(0, [])]  # (start, pieces)
    for piece in pieces:
        if piece[0] == "end":
            sentences.append((piece[2], []))
        else:
            sentences[-1][1].append(piece)
    bounds = [(start, sentences[k + 1][0] if k + 1 < len(sentences) else len(text), body)
              for k, (start, body) in enumerate(sentences)]
    for start, end, body in bounds if first_sentence else reversed(bounds):
        if any(kind == "cand" for kind, _, _ in body):
            return _pick(text, start, end, body, first_sentence)
        if first_sentence and text[start:end].strip():
            return None  # the phrase's own sentence states no value
    return None


def _pick(text: str, start: int, end: int, sentence: list[tuple[str, int, int]], prefer_first: bool) -> str:
    cands = [(a, b) for kind, a, b in sentence if kind == "cand"]
    if not any(kind == "word" for kind, _, _ in sentence):  # no words: the sentence is the value
        return last_side(_TRIM.sub("", text[start:end]))
    copulas = [a for kind, a, _ in sentence if kind == "copula" and not any(c <= a < d for c, d in cands)]
    after = [c for c in cands if copulas and c[0] > _last_copula_before_a_candidate(copulas, cands)]
    if after:
        i = j = cands.index(after[0])
        while j + 1 < len(cands) and _joined(text, cands[j], cands[j + 1]):
            j += 1
    elif prefer_first:
        i = j = 0
        while j + 1 < len(cands) and _joined(text, cands[j], cands[j + 1]):
            j += 1
    else:
        i = j = len(cands) - 1
        while i > 0 and _joined(text, cands[i - 1], cands[i]):
            i -= 1
    return ", ".join(last_side(_strip_unit(_balanced(text[a:b]))) for a, b in cands[i : j + 1])


_TRIM = re.compile(r"^[\s*]+|[\s*.,;:。]+$")  # markdown bold, the sentence's end


def _last_copula_before_a_candidate(copulas: list[int], cands: list[tuple[int, int]]) -> int:
    last_cand = cands[-1][0]
    return max((c for c in copulas if c < last_cand), default=-1)


def _joined(text: str, left: tuple[int, int], right: tuple[int, int]) -> bool:
    gap = _DELIM.sub(" ", text[left[1] : right[0]])
    return len(gap) <= 100 and _SEPARATOR.fullmatch(gap) is not None


def _balanced(value: str) -> str:
    """`value` without a parenthesis it does not close or open: `(1/2` -> `1/2`, `(1, 2)` as is."""
    value = value.strip()
    if value.startswith("(") and value.count("(") > value.count(")"):
        value = value[1:]
    if value.endswith(")") and value.count(")") > value.count("("):
        value = value[:-1]
    return value.strip()


_PERCENT_WORD = re.compile(r"\s*(?:percent(?:age)?|pct)$")


def _strip_unit(value: str) -> str:
    """`28 percent` -> `28%`."""
    return _PERCENT_WORD.sub("%", value.strip())


_OPERATION = re.compile(r"[-+*/^]|\\[A-Za-z]+")  # an operator or a command: 2 \times 3, \sin 60^\circ, \sqrt{18}


def last_side(value: str) -> str:
    """The last side of a chain of equalities (`1 + 2 \\times 9 = 1 + 18 = 19` -> `19`), or of an
    equation whose left side is a computation on numbers with no variable (`5 \\times 6 = 30` ->
    `30`, `\\sin 60^\\circ = \\frac{\\sqrt{3}}{2}` -> the fraction); otherwise `value`: `x = 5`,
    `7 = 11a+c` and lists of equations (`a=1, b=2`) stay whole. `=` inside brackets does not count."""
    depth, equals = 0, []
    for i, ch in enumerate(value):
        depth += ch in "{[("
        depth -= ch in "}])"
        if depth == 0 and ch in ",;":
            return value  # a list: each item is its own answer
        if ch == "=" and depth == 0 and value[i - 1 : i] not in ("<", ">", "!", "\\"):
            equals.append(i)
    lhs = value[: equals[0]] if equals else ""
    is_computation = (any(ch.isdigit() for ch in lhs) and _OPERATION.search(lhs) is not None
                      and not re.search(r"[A-Za-z]", _COMMAND.sub("", _TEXT_ARG.sub("", lhs))))
    if len(equals) >= 2 or (len(equals) == 1 and is_computation):
        return value[equals[-1] + 1 :].strip() or value
    return value
