"""The shape of an R1 answer: `<think> reasoning </think> <answer> answer </answer>` (DeepSeek-R1
Table 1), and what can be read off it without grading the answer.

    has_r1_format(completion)     exactly one think block, then exactly one non-empty answer block
    style_of(completion)          'reasoning' (a think block with real content), 'direct', 'unformatted'
    chain_of_thought(completion)  the text the language measure and the rejection filters read
    summary_of(completion)        the answer block with an empty chain of thought: what a user reads
    REFLECTION_RE                 "wait", "let me check", "recheck", ... and zh/ja/ko forms (the "aha moment")

The format reward (rl/rewards.py), the evaluation metrics (eval/metrics.py), the step records and
the rejection filters all read answers through these, so they cannot disagree about a shape.
"""

from __future__ import annotations

import re

# The paper's "wait" (R1 §2.2.4), understand-r1-zero's self-reflection keywords (Liu et al. 2025,
# arXiv 2503.20783: recheck, rethink, reassess, re-evaluate, re-examine, reconsider, double-check,
# check again, think again, verify again, ...) and the zh/ja/ko forms.
REFLECTION_RE = re.compile(
    r"\bwait\b|let me (?:check|verify)|\bre-?(?:check|think|assess|evaluat\w*|examin\w*|consider|analy[sz]e)\b"
    r"|double[- ]check|(?:check|think|verify) again|go over the steps|等等|检查|待って|確認|잠깐|확인",
    re.IGNORECASE)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)

# Exactly the R1-Zero template: "<think> reasoning process here </think> <answer> answer here
# </answer>". Tags are counted first, so `.*` below can span no other tag and the match is linear
# in the length of the completion.
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_R1_SHAPE = re.compile(r"\s*<think>.*</think>\s*<answer>(?P<answer>.*)</answer>\s*", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def has_r1_format(completion: str) -> bool:
    """`<think>...</think> <answer>...</answer>` and nothing else: whitespace may surround and
    separate the two blocks, each tag appears exactly once, the think block may be empty, the
    answer may not."""
    if any(completion.count(tag) != 1 for tag in _TAGS):
        return False
    m = _R1_SHAPE.fullmatch(completion)
    return m is not None and m.group("answer").strip() != ""


def style_of(completion: str) -> str:
    """'reasoning' (a think block with real content), 'direct' (empty think) or 'unformatted'."""
    m = THINK_RE.search(completion)
    if m is None:
        return "unformatted"
    return "reasoning" if len(m.group(1).strip()) >= 20 else "direct"


def chain_of_thought(completion: str) -> str:
    """The text between <think> and </think>, which R1's language reward is computed on.

    Unclosed <think> (a truncated completion): everything after it. A </think> with no <think>
    (a chat template that opens the think block in the prompt): everything before it. No tags:
    the whole completion.
    """
    start = completion.find("<think>")
    if start >= 0:
        rest = completion[start + len("<think>") :]
        return rest.split("</think>", 1)[0]
    return completion.split("</think>", 1)[0]


def r1_answer(text: str) -> str:
    """`text` as an answer in the R1 output format with an empty chain of thought."""
    return f"<think>\n</think>\n<answer>{text}</answer>"


def summary_of(completion: str) -> str:
    """The response as the user reads it: its answer block (the R1 summary) with an empty chain of
    thought around it, in the R1 output format; the whole completion if it has no answer block."""
    blocks = _ANSWER_BLOCK.findall(completion)
    return r1_answer(blocks[-1]) if blocks else completion
