"""Held-out evaluation as the R1 paper does it (§5 of ../shared/R1.md).

No greedy decoding: sample k completions per problem at temperature 0.6, top-p 0.95, and
report pass@1 = mean correctness over the k samples, the unbiased pass@k estimator
1 − C(n−c, k)/C(n, k) for every k' ≤ k (Chen et al. 2021; nanochat counts hits among the first
k samples instead, which is biased), and cons@k, the majority vote, with answers grouped by
mathematical equivalence rather than by string. Grading is the task's own `grade`, the very
function the RL accuracy reward calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from math import comb

from r1lab.sampler import Sampler, SamplingParams
from r1lab.tasks import get_task
from r1lab.tasks.base import Problem
from r1lab.verify import answers_equal, extract_answer

REFLECTION_RE = re.compile(r"wait|let me check|let me verify|等等|检查|待って|確認|잠깐|확인", re.IGNORECASE)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k)/C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: list[str | None], correct: list[bool]) -> bool:
    """cons@k for one problem: is the most common answer (grouped by equivalence) correct?

    Answers that could not be extracted do not vote. Ties go to the class seen first."""
    classes: list[list[int]] = []  # indices of samples per equivalence class
    for i, a in enumerate(answers):
        if a is None:
            continue
        for cls in classes:
            if answers_equal(a, answers[cls[0]]):
                cls.append(i)
                break
        else:
            classes.append([i])
    if not classes:
        return False
    best = max(classes, key=len)  # max() keeps the first of equal lengths
    return correct[best[0]]


def style_of(completion: str) -> str:
    """'reasoning' (a think block with real content), 'direct' (empty think) or 'unformatted'."""
    m = THINK_RE.search(completion)
    if m is None:
        return "unformatted"
    return "reasoning" if len(m.group(1).strip()) >= 20 else "direct"


@dataclass
class EvalResult:
    problems: list[Problem]
    k: int
    completions: list[list[str]]  # (P, k)
    extracted: list[list[str | None]]  # (P, k)
    correct: list[list[bool]]  # (P, k)
    lengths: list[list[int]]  # (P, k) completion tokens
    truncated: list[list[bool]]  # (P, k)
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)


def evaluate(sampler: Sampler, problems: list[Problem], prompts: list[str], k: int, params: SamplingParams) -> EvalResult:
    """Sample k completions for each problem and grade them with the problem's task."""
    gen = sampler.generate(prompts, k, params)
    P = len(problems)
    rows = lambda xs: [xs[i * k : (i + 1) * k] for i in range(P)]  # noqa: E731 (P*k) -> (P, k)
    extracted = [extract_answer(t) for t in gen.texts]
    correct = [get_task(problems[i // k].task).grade(a, problems[i // k]) for i, a in enumerate(extracted)]
    res = EvalResult(problems, k, rows(gen.texts), rows(extracted), rows(correct),
                     rows([len(c) for c in gen.completion_ids]), rows(gen.truncated), gen.seconds)
    res.metrics = summarize(res, gen.num_tokens / max(gen.seconds, 1e-9))
    return res


def summarize(res: EvalResult, tokens_per_s: float) -> dict:
    P, k = len(res.problems), res.k
    flat = [x for row in res.completions for x in row]
    styles = [style_of(t) for t in flat]
    corr = [x for row in res.correct for x in row]
    by_style = {}
    for s in ("reasoning", "direct", "unformatted"):
        idx = [i for i, st in enumerate(styles) if st == s]
        by_style[s] = {"share": len(idx) / len(flat), "accuracy": sum(corr[i] for i in idx) / len(idx) if idx else None}
    from r1lab.rewards import format_reward

    return {
        "pass@1": sum(corr) / len(corr),
        "pass@k": {str(j): sum(pass_at_k(k, sum(row), j) for row in res.correct) / P for j in range(1, k + 1)},
        f"cons@{k}": sum(majority_vote(a, c) for a, c in zip(res.extracted, res.correct)) / P,
        "format_rate": sum(format_reward(flat, [None] * len(flat))) / len(flat),
        "mean_length": sum(x for row in res.lengths for x in row) / len(flat),
        "truncation_rate": sum(x for row in res.truncated for x in row) / len(flat),
        "reflection_rate": sum(bool(REFLECTION_RE.search(t)) for t in flat) / len(flat),
        "styles": by_style,
        "problems": P,
        "k": k,
        "seconds": res.seconds,
        "tokens_per_s": tokens_per_s,
    }
