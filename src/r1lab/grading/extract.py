r"""Final-answer extraction: what did a completion answer? (The first half of grading; verify.py
compares the extracted answer with the gold.)

    extract_answer(completion, prose=False) -> str | None   the model's final answer
    gold_answer(gold, prose=False) -> str                   a gold that is a whole rationale, cut to its answer

Two tiers. The strict tier reads only the places an answer format puts an answer; `prose=True`
adds reading an answer stated in prose (prose.py), as the best verifiers do (math-verify's
"final answer" / "answer:" targets and last math span, lighteval's "the answer is" patterns).
`r1lab eval` and `r1lab grade` read prose; the RL accuracy reward does not unless its config
says so (`ZeroConfig.accuracy_prose`), because under RL a lenient extractor is an optimiser
target: a policy rewarded for any number in its last sentence learns to scatter numbers.

Extraction order (`extract_answer`); the first step that yields a non-blank answer wins:
  0. the completion is cut at the first chat-template turn marker (`<|im_end|>`, `<|eot_id|>`,
     `<｜User｜>`, `\nUser:` ...: prose.TURN_MARKERS), in both tiers: text after it is not the
     model's turn;
  1. the last complete `<answer>...</answer>` pair: its boxes (as in 2), else its "the answer is
     X" (as in 4), else (prose) its last sentence's value as in 5, else its whole content;
  2. the last complete `\boxed{...}` / `\fbox{...}` (balanced braces; the bare `\boxed 5` form
     too), together with the boxes before it that only separators part (`,` `;` `and` `\quad`
     `\text{...}` `$`; not `or`, which marks a restatement): `\boxed{1}, \boxed{2}` -> `1, 2`.
     With prose, an answer phrase with a value after the last box (as in 4) wins over it: the
     model's last word ("\boxed{255} ... Final Answer: The final answer is $10,455$");
  3. the last GSM8K `#### X` line;
  4. strict: the last "the answer is X" / "final answer: X" (X up to the end of its line or
     sentence). Prose: the last answer phrase in English, Chinese (答案是, 最终答案), Japanese
     (答えは), Korean (정답은, 답은), French, German or Spanish that a value follows, the value read
     as prose.py says (`Final Answer: The volume of $V$ is 120.` -> 120);
  5. prose only: the last sentence that states a value (prose.last_sentence_answer): its math
     span or number after its last copula, else its last one (`Thus $x \leq 4$ is our answer.`
     -> `x \leq 4`; `... so Haley has 99 marbles.` -> 99).
Otherwise None. Linear-time scans, no backtracking regex: 1 MB strings and 10,000 nested braces
are fine.
"""

from __future__ import annotations

import re

from r1lab.grading.prose import last_sentence_answer, own_turn, stated_answer

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Only these tokens matter for finding boxes; everything between them is skipped by the regex
# engine in one pass. Escaped braces `\{ \}` (set delimiters) and `\\` do not open or close groups.
_BOX_TOKEN = re.compile(
    r"\\(?:boxed|fbox)\s*(?P<open>\{)"  # \boxed{ ... }
    r"|\\(?:boxed|fbox)\s+(?P<bare>[^\s{}$\\]+)"  # \boxed 5 : one bare token
    r"|\\[\\{}]"  # escaped brace or backslash
    r"|[{}]"
)


def extract_answer(completion: str, prose: bool = False) -> str | None:
    """The model's final answer, or None: the first step of the module docstring's order that
    yields a non-blank answer (steps 4-5 and the prose parts of 1-2 only with `prose`)."""
    text = own_turn(completion)
    tagged = _last_answer_tag(text)
    if tagged is not None:
        answer = _last_boxed(tagged) or _phrase(tagged, prose)
        if answer is None and prose:
            answer = last_sentence_answer(tagged)
        answer = answer or tagged
    else:
        answer = _boxed_or_later_phrase(text, prose) or _last_hashes(text) or _phrase(text, prose)
        if answer is None and prose:
            answer = last_sentence_answer(text)
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None  # a blank answer is no answer


def gold_answer(gold: str, prose: bool = False) -> str:
    """A gold field reduced to its final answer: GSM8K's `... #### 18` -> `18`, a MATH solution
    -> its last box(es), "the answer is 500" -> `500`. With `prose`, a gold rationale without any
    of these is read as a completion is (extract_answer's steps 4-5). A plain answer (`18`,
    `$\\frac12$`) comes back stripped."""
    answer = _last_boxed(gold) or _last_hashes(gold) or _phrase(gold, prose)
    if answer is None and prose:
        answer = last_sentence_answer(gold)
    return (answer or gold).strip()


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


def _phrase(text: str, prose: bool) -> str | None:
    """Step 4: the strict "the answer is X" reading, or with `prose` the multilingual one."""
    if not prose:
        return _answer_is(text)
    stated = stated_answer(text)
    return _answer_is(text) if stated is None else stated[0]  # "The answer is Evelyn." has no number


def _boxed_or_later_phrase(text: str, prose: bool) -> str | None:
    """Step 2: the last box(es); with `prose`, an answer phrase stated after the last box instead."""
    boxes = _boxes(text)
    if prose:
        stated = stated_answer(text[boxes[-1][3] :] if boxes else "")
        if stated is not None:
            return stated[0]
    return _joined_boxes(text, boxes)


def _last_boxed(text: str) -> str | None:
    """Content of the complete box that opens last (innermost wins for `\\boxed{\\boxed{5}}`),
    with the boxes before it that only separators part (step 2)."""
    return _joined_boxes(text, _boxes(text))


# What may part boxes that form one answer: `\boxed{1}, \boxed{2}`, `\boxed{1} and \boxed{2}`,
# `$\boxed{1}$ \quad \text{and} \quad $\boxed{2}$`, `\boxed{(3,3)} \text{ for part (a) and } \boxed{(1,1)}`.
# A bare word such as "wait" parts two attempts, and "or" a restatement (`\boxed{15\frac{39}{40}}, or
# \boxed{\frac{639}{40}}`: the last box is the answer).
_BOX_SEPARATOR = re.compile(
    r"(?:\s|,|;|&|\$|\\[()\[\]]|\\quad|\\qquad|\\[,;:! ]|\\text\{(?:(?!\bor\b)[^{}]){0,40}\}|\band\b)*",
    re.IGNORECASE,
)


def _boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Every complete box as (command start, content start, content end, end), ordered by content
    start (innermost after its enclosing box)."""
    boxes = []
    open_groups: list[tuple[int, int] | None] = []  # per open brace: (command start, content start) if a box
    for m in _BOX_TOKEN.finditer(text):
        if m.group("bare") is not None:
            boxes.append((m.start(), m.start("bare"), m.end("bare"), m.end("bare")))
        elif m.group("open") is not None:
            open_groups.append((m.start(), m.end()))
        elif m.group() == "{":
            open_groups.append(None)
        elif m.group() == "}" and open_groups:
            box = open_groups.pop()
            if box is not None:
                boxes.append((box[0], box[1], m.start(), m.end()))
    boxes.sort(key=lambda b: b[1])
    return boxes


def _joined_boxes(text: str, boxes: list[tuple[int, int, int, int]]) -> str | None:
    """The last box's content, joined (", ") with the boxes before it that only separators part."""
    if not boxes:
        return None
    chosen = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[3] : chosen[0][0]]
        if box[3] > chosen[0][0] or len(gap) > 100 or not _BOX_SEPARATOR.fullmatch(gap):
            break
        chosen.insert(0, box)
    return ", ".join(text[b[1] : b[2]] for b in chosen)
