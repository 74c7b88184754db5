"""Self-verification read off completions: candidates tried, checks made, wrong candidates rejected.

    per = attempts_of(texts, problems)            # one `Attempts` (or None) per completion
    m = attempt_metrics(per, styles, correct)     # the rates the records and reports show

A task that can tell a check from its text has `attempts(completion, problem, answer)` (signs.py);
for the others every value is None. The metrics (issue 17), over the completions that have them:

    self_check_rate            share with at least one check (a candidate evaluated, then
                               compared with the target)
    self_check_rate_reasoning  the same among completions that reason at all (style "reasoning")
    attempts_mean              candidates per completion (an answer with no `try` is one)
    first_candidate_accuracy   share whose first candidate was right
    rejection_rate             share that rejected at least one wrong candidate
    rejected_accuracy          accuracy of those (needs `correct`)
    unrejected_accuracy        accuracy of the rest (needs `correct`)
    evaluation_accuracy        share of written-out candidate evaluations that reach the candidate's
                               true value (the skill checking rests on; the zero stage's gate reads it)
"""

from __future__ import annotations

from r1lab.grading.extract import extract_answer
from r1lab.tasks import get_task
from r1lab.tasks.base import Problem
from r1lab.tasks.signs import Attempts

def attempts_of(texts: list[str], problems: list[Problem], answers: list[str | None] | None = None) -> list[Attempts | None]:
    """Each completion's `Attempts`, None where its problem's task cannot read them."""
    answers = answers if answers is not None else [extract_answer(t) for t in texts]
    out: list[Attempts | None] = []
    for text, problem, answer in zip(texts, problems, answers):
        reader = getattr(get_task(problem.task), "attempts", None)
        out.append(reader(text, problem, answer) if reader else None)
    return out


def attempt_metrics(per: list[Attempts | None], styles: list[str], correct: list[bool] | None = None) -> dict:
    """The rates of the module docstring over the completions with attempts; None for a rate with nothing to count."""
    idx = [i for i, a in enumerate(per) if a is not None]
    share = lambda ids, test: sum(test(i) for i in ids) / len(ids) if ids else None  # noqa: E731
    reasoning = [i for i in idx if styles[i] == "reasoning"]
    rejected = [i for i in idx if per[i].rejected_wrong]
    kept = [i for i in idx if not per[i].rejected_wrong]
    return {
        "self_check_rate": share(idx, lambda i: per[i].checks > 0),
        "self_check_rate_reasoning": share(reasoning, lambda i: per[i].checks > 0),
        "attempts_mean": sum(per[i].candidates for i in idx) / len(idx) if idx else None,
        "first_candidate_accuracy": share(idx, lambda i: per[i].first_right),
        "rejection_rate": share(idx, lambda i: per[i].rejected_wrong > 0),
        "rejected_accuracy": share(rejected, lambda i: correct[i]) if correct is not None else None,
        "unrejected_accuracy": share(kept, lambda i: correct[i]) if correct is not None else None,
        "evaluation_accuracy": (sum(per[i].evaluated_right for i in idx) / evaluations
                                if (evaluations := sum(per[i].evaluated for i in idx)) else None),
    }
