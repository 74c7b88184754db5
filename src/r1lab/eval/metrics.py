"""Held-out evaluation as the R1 paper does it (§5 of ../shared/R1.md).

No greedy decoding: sample k completions per problem at temperature 0.6, top-p 0.95, and
report pass@1 = mean correctness over the k samples, the unbiased pass@k estimator
1 − C(n−c, k)/C(n, k) for every k' ≤ k (Chen et al. 2021; nanochat counts hits among the first
k samples instead, which is biased), and cons@k, the majority vote, with answers grouped by
mathematical equivalence rather than by string. Grading is the task's own `grade`, the very
function the RL accuracy reward calls.

Two ways in, one set of formulas (`score`):
- `evaluate` + `summarize`: sample and grade in memory (the R1-Zero stage's held-out checks);
- `Sample` records + `benchmark_metrics`: the per-sample lines `r1lab eval` writes to
  samples.jsonl, turned into metrics overall and per breakdown value (subject, level, ...) by
  pure functions, so a resumed evaluation is scored from its file exactly as a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from math import comb
from typing import TYPE_CHECKING

from r1lab.engine.params import SamplingParams
from r1lab.grading.extract import extract_answer
from r1lab.grading.language import language_mixing
from r1lab.grading.shape import REFLECTION_RE, has_r1_format, style_of
from r1lab.grading.verify import answers_equal
from r1lab.tasks import get_task
from r1lab.tasks.attempts import attempt_metrics, attempts_of
from r1lab.tasks.base import Problem

if TYPE_CHECKING:  # importing the sampler imports torch: not needed to score samples
    from r1lab.engine.sampler import Sampler

NO_VALUE = "(none)"  # the breakdown value of a problem that lacks the field


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


def evaluate(sampler: Sampler, problems: list[Problem], prompts: list[str], k: int, params: SamplingParams,
             prose: bool = False) -> EvalResult:
    """Sample k completions for each problem and grade them with the problem's task; `prose`: read
    answers stated in prose too (extract.py), as `r1lab eval` does (not in a truncated completion,
    which stated no last word); off, as the RL accuracy reward."""
    gen = sampler.generate(prompts, k, params)
    P = len(problems)
    rows = lambda xs: [xs[i * k : (i + 1) * k] for i in range(P)]  # noqa: E731 (P*k) -> (P, k)
    extracted = [extract_answer(t, prose=prose and not cut) for t, cut in zip(gen.texts, gen.truncated, strict=True)]
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
    scores = score(res.extracted, res.correct)
    grouped = [p for p in res.problems for _ in range(k)]
    attempts = attempt_metrics(attempts_of(flat, grouped, [a for row in res.extracted for a in row]), styles, corr)
    return {
        "pass@1": scores["pass@1"],
        "pass@k": scores["pass@k"],
        f"cons@{k}": scores["cons@k"],
        "format_rate": sum(map(has_r1_format, flat)) / len(flat),
        "mean_length": sum(x for row in res.lengths for x in row) / len(flat),
        **lengths_by_correctness([x for row in res.lengths for x in row], corr),
        "truncation_rate": sum(x for row in res.truncated for x in row) / len(flat),
        "reflection_rate": sum(bool(REFLECTION_RE.search(t)) for t in flat) / len(flat),
        **attempts,  # self-verification (tasks/attempts.py): None for tasks that cannot tell a check
        "per_problem": {"correct": [sum(row) for row in res.correct],
                        "mean_length": [sum(row) / len(row) for row in res.lengths]},
        **language_mixing(flat, [p.lang for p in res.problems for _ in range(k)]),
        "styles": by_style,
        "problems": P,
        "k": k,
        "seconds": res.seconds,
        "tokens_per_s": tokens_per_s,
    }


def lengths_by_correctness(lengths: list[int], correct: list[bool]) -> dict:
    """Mean length of the correct and of the incorrect completions (None when there are none), and how
    many of each: Dr. GRPO's length bias shows in the incorrect ones (arXiv 2503.20783 §3)."""
    right = [n for n, c in zip(lengths, correct, strict=True) if c]
    wrong = [n for n, c in zip(lengths, correct, strict=True) if not c]
    return {"mean_length_correct": sum(right) / len(right) if right else None,
            "mean_length_incorrect": sum(wrong) / len(wrong) if wrong else None,
            "n_correct": len(right), "n_incorrect": len(wrong)}


def score(extracted: list[list[str | None]], correct: list[list[bool]]) -> dict:
    """pass@1, pass@k' for every k' <= k, and cons@k, over P problems with k graded samples each.

    extracted, correct: (P, k). pass@1 is the mean over problems of c/k (the paper's
    (1/k) Σ p_i, averaged); pass@k' the unbiased estimator; cons@k the majority vote."""
    P = len(correct)
    k = len(correct[0]) if P else 0
    if any(len(row) != k for row in correct):
        raise ValueError(f"every problem needs the same number of samples, got {sorted({len(r) for r in correct})}")
    counts = [sum(row) for row in correct]  # c per problem
    return {
        "problems": P,
        "k": k,
        "pass@1": sum(pass_at_k(k, c, 1) for c in counts) / P if P else 0.0,
        "pass@k": {str(j): sum(pass_at_k(k, c, j) for c in counts) / P for j in range(1, k + 1)},
        "cons@k": sum(majority_vote(a, c) for a, c in zip(extracted, correct)) / P if P else 0.0,
    }


@dataclass
class Sample:
    """One graded completion of `r1lab eval`: one line of samples.jsonl."""

    problem: int  # index of the problem in the evaluated list (file order)
    id: str  # the problem's id: the record's `id` field, else its row index
    sample: int  # 0 .. k-1
    chunk: int  # the chunk of problems generated together (the unit of resumption)
    prompt: str  # the text the model was given, template applied
    completion: str  # the generated text, special tokens skipped
    extracted: str | None  # verify.extract_answer(completion)
    correct: bool  # the problem's task grade(extracted, problem)
    gold: str  # the gold final answer
    tokens: int  # completion tokens, stop token included
    truncated: bool  # hit max_new_tokens before a stop token
    meta: dict  # the problem's breakdown fields, e.g. {"subject": "Algebra", "level": "5"}
    chunk_seconds: float = 0.0  # generation time of the whole chunk (the same on all its samples)
    verifier_timeouts: int = 0  # symbolic comparisons that ran out of time while grading this sample


def sample_metrics(samples: list[Sample]) -> dict:
    """`score` of the problems in `samples` (each with all its k samples), plus mean response
    length in tokens and the share of responses cut off at max_new_tokens."""
    by_problem: dict[int, list[Sample]] = {}
    for s in samples:
        by_problem.setdefault(s.problem, []).append(s)
    rows = [sorted(group, key=lambda s: s.sample) for group in by_problem.values()]  # (P, k)
    metrics = score([[s.extracted for s in row] for row in rows], [[s.correct for s in row] for row in rows])
    n = len(samples)
    metrics["mean_length"] = sum(s.tokens for s in samples) / n if n else 0.0
    metrics["truncation_rate"] = sum(s.truncated for s in samples) / n if n else 0.0
    if any("lang" in s.meta for s in samples):  # built-in tasks: prompts in en/zh/ja/ko
        metrics["language_mixing"] = language_mixing([s.completion for s in samples],
                                                     [s.meta.get("lang", "") for s in samples])["language_mixing"]
    return metrics


def breakdown(samples: list[Sample], field_name: str) -> dict[str, dict]:
    """`sample_metrics` per value of the breakdown field `field_name` (e.g. each MATH subject).

    Values are ordered numerically when they are all integers (levels 1..5), else alphabetically;
    problems without the field come last, under "(none)"."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        value = s.meta.get(field_name)
        groups.setdefault(NO_VALUE if value is None else str(value), []).append(s)
    known = [v for v in groups if v != NO_VALUE]
    numeric = all(v.lstrip("-").isdigit() for v in known)
    order = sorted(known, key=int if numeric else str) + ([NO_VALUE] if NO_VALUE in groups else [])
    return {value: sample_metrics(groups[value]) for value in order}


def generation_stats(samples: Iterable[Sample]) -> dict:
    """Tokens generated, seconds spent generating (each chunk counted once) and tokens/s."""
    samples = list(samples)
    tokens = sum(s.tokens for s in samples)
    seconds = sum({s.chunk: s.chunk_seconds for s in samples}.values())
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else 0.0}


def benchmark_metrics(samples: list[Sample], breakdowns: Iterable[str] = ()) -> dict:
    """Everything `r1lab eval` reports: `sample_metrics` overall, generation throughput, verifier
    timeouts while grading, and `by_<field>` for each breakdown field."""
    metrics = sample_metrics(samples)
    metrics.update(generation_stats(samples))
    metrics["verifier_timeouts"] = sum(s.verifier_timeouts for s in samples)
    for name in breakdowns:
        metrics[f"by_{name}"] = breakdown(samples, name)
    return metrics
