"""Final-answer extraction: what did a completion answer? (The first half of grading; verify.py
compares the extracted answer with the gold.)

    extract_answer(completion) -> str | None     the model's final answer
    gold_answer(gold) -> str                     a gold that is a whole rationale, cut to its answer

Extraction (`extract_answer`), the first that is present and not blank: the last `<answer>...
</answer>` pair (the R1-Zero template; its last box or "the answer is X" if it holds one); the last
complete `\\boxed{...}` / `\\fbox{...}` (balanced braces; the bare `\\boxed 5` form too); the last
GSM8K `#### X` line; the last "the answer is X" / "Final Answer: X". Otherwise None. Linear-time
scans, no backtracking regex: 1 MB strings and 10,000 nested braces are fine.
"""

from __future__ import annotations

import re

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
    """The model's final answer, or None: the first of these that is present and not blank.

    1. the last complete `<answer>...</answer>` pair: its last box, else its "the answer is X",
       else its whole content;
    2. the last complete `\\boxed{...}` / `\\fbox{...}`;
    3. the last GSM8K-style `#### X` line;
    4. the last "the answer is X" / "final answer: X" (X up to the end of the line or sentence).
    """
    tagged = _last_answer_tag(completion)
    if tagged is not None:
        answer = _last_boxed(tagged) or _answer_is(tagged) or tagged
    else:
        answer = _last_boxed(completion) or _last_hashes(completion) or _answer_is(completion)
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None  # a blank answer is no answer


def gold_answer(gold: str) -> str:
    """A gold field reduced to its final answer: GSM8K's `... #### 18` -> `18`, a MATH solution
    -> its last box. A plain answer (`18`, `$\\frac12$`) comes back stripped."""
    return (_last_boxed(gold) or _last_hashes(gold) or gold).strip()


_HASHES = re.compile(r"^[ \t]*####[ \t]*(\S[^\n]*)$", re.MULTILINE)
# "The final answer is $5$.", "the answer is: 12 apples", "Final Answer: 3". The phrase is found
# first (its last occurrence), then the answer is read up to the end of its line or sentence.
_ANSWER_IS = re.compile(r"(?:answer\s+is|final\s+answer(?:\s+is)?)\s*:?[ \t]*", re.IGNORECASE)


def _last_hashes(text: str) -> str | None:
    matches = _HASHES.findall(text) if "####" in text else []
    return matches[-1] if matches else None


def _answer_is(text: str) -> str | None:
    last = None
    for last in _ANSWER_IS.finditer(text):
        pass
    if last is None:
        return None
    line = text[last.end() : last.end() + 200].split("\n", 1)[0]
    if line.startswith("$") and (end := line.find("$", 1)) > 0:  # "$\\frac12$, so ..." -> the math
        return line[1:end]
    # up to the end of the sentence, or a comma before words ("1, then ..."), not "(1, 2)"
    return re.split(r"[.;](?:\s|$)|,\s+(?=[a-z]{2,})", line, maxsplit=1)[0]


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
