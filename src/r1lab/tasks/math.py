"""The "math" task: free-form math problems with a gold final answer, graded for equivalence.

Benchmark problems (MATH-500, GSM8K, AIME, AMC; see r1lab.eval.benchmarks) are made with
`task="math"`, so `get_task(problem.task).grade(...)` finds this task and the RL accuracy reward
(`rewards.accuracy`) grades them exactly as `r1lab eval` does. The task makes no problems of its
own: the data comes from a benchmark file.
"""

from __future__ import annotations

from r1lab.errors import UserError
from r1lab.grading import verify
from r1lab.tasks.base import Problem


class MathTask:
    """Grades an extracted answer against `problem.answer` with `r1lab.grading.verify.answers_equal`."""

    name = "math"

    def __repr__(self) -> str:
        return "MathTask()"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        raise UserError("task 'math' has no problems of its own; load a benchmark (r1lab.eval.benchmarks) "
                        "or use task 'file'")

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Is `extracted` the same mathematical answer as the gold? None (nothing extracted) is wrong."""
        if extracted is None:
            return False
        return verify.answers_equal(extracted, problem.answer)
