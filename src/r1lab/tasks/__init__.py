"""Verifiable tasks, and the registry that finds the task that made a problem.

    from r1lab.tasks import get_task, make_task, register_task, apply_template

    task = register_task(make_task("arithmetic", digits=2, terms=3, ops="+-"))
    problems = task.problems("train", n=64, seed=0, langs=("en", "zh"))
    prompt = apply_template(problems[0].prompt)
    reward = float(get_task(problems[0].task).grade(extracted, problems[0]))

Built in: "arithmetic" (arithmetic.py), "countdown" (countdown.py), "signs" (signs.py: Countdown with +
and - in order, the task of the aha moment), "file" (files.py: the
user's JSONL/Parquet/datasets data; `get_task("file:<path>")` loads a file with default fields)
"math" (math.py: the grader of benchmark problems loaded by r1lab.eval.benchmarks), "code" (code.py:
small Python functions, and the grader of HumanEval/MBPP problems, run against their tests in
r1lab.grading.sandbox) and "general" (general.py: unverifiable general prompts, scored by a reward model
in stage 4 RL).
`get_task(name)` returns the instance registered under `name`, creating a default-configured one
for a built-in name on first use; `register_task` puts a configured instance there so that
`get_task(problem.task)` is the very object that made `problem`. Built-in grading reads only the
problem, never the task's settings, so a default instance grades a configured one's problems
identically.
"""

from __future__ import annotations

import inspect

from r1lab.errors import UserError
from r1lab.tasks.arithmetic import ArithmeticTask
from r1lab.tasks.base import LANGS, SPLITS, Problem, Task, split_of
from r1lab.tasks.code import CodeTask
from r1lab.tasks.countdown import CountdownTask, solve
from r1lab.tasks.files import FileTask
from r1lab.tasks.general import GeneralTask
from r1lab.tasks.math import MathTask
from r1lab.tasks.prompts import R1_ZERO_TEMPLATE, apply_template
from r1lab.tasks.signs import SignsTask

TASK_CLASSES = {"arithmetic": ArithmeticTask, "countdown": CountdownTask, "signs": SignsTask, "file": FileTask, "math": MathTask,
                "code": CodeTask, "general": GeneralTask}
_registry: dict[str, Task] = {}

__all__ = [
    "LANGS",
    "R1_ZERO_TEMPLATE",
    "SPLITS",
    "TASK_CLASSES",
    "ArithmeticTask",
    "CodeTask",
    "CountdownTask",
    "FileTask",
    "GeneralTask",
    "MathTask",
    "Problem",
    "SignsTask",
    "Task",
    "apply_template",
    "get_task",
    "make_task",
    "register_task",
    "solve",
    "split_of",
]


def make_task(name: str, **settings) -> Task:
    """A new `name` task with `settings` (not registered); UserError names the valid choices."""
    if name not in TASK_CLASSES:
        raise UserError(f"unknown task {name!r}; choose from {', '.join(TASK_CLASSES)}")
    parameters = inspect.signature(TASK_CLASSES[name]).parameters
    unknown = [key for key in settings if key not in parameters]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r} for task {name!r}; choose from {', '.join(parameters)}")
    missing = [key for key, p in parameters.items() if p.default is p.empty and key not in settings]
    if missing:
        raise UserError(f"task {name!r} needs the setting {missing[0]!r}")
    return TASK_CLASSES[name](**settings)


def register_task(task: Task) -> Task:
    """Make `get_task(task.name)` return `task` (replacing any earlier one); returns `task`."""
    _registry[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task registered under `name`; a built-in name or "file:<path>" is created on first use."""
    if name in _registry:
        return _registry[name]
    if name.startswith("file:"):
        return register_task(FileTask(name.removeprefix("file:")))
    if name in TASK_CLASSES and name != "file":
        return register_task(make_task(name))
    raise UserError(
        f"unknown task {name!r}; choose from arithmetic, countdown, signs, code, math, file:<path>, "
        "or a name given to register_task()"
    )
