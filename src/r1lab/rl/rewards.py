"""Rule-based rewards for GRPO, as in DeepSeek-R1 §2.2.2.

R1-Zero is trained on two rule-based rewards and no neural reward model (the paper's reason:
a neural reward model invites reward hacking and costs a retraining loop):
  * accuracy: is the final answer right? For math, the answer must be given in a specified format
    so that a rule can check it; here, inside `<answer>` tags or a `\\boxed{}`.
  * format: did the model put its reasoning between `<think>` and `</think>`? We check the whole
    R1-Zero template shape (Table 1 of the paper): think, then answer, nothing else.
The R1 pipeline's stage 2 adds `language`, the language-consistency reward (§3), summed with the
accuracy reward at a configurable weight. For code problems (tasks/code.py), `code` is the
accuracy reward's counterpart: the share of the problem's tests the completion's code passes,
run in r1lab.grading.sandbox.

A reward function is pure and batched, in the TRL/open-r1 style:
    fn(completions: list[str], problems: list[Problem]) -> list[float]
where `completions[i]` is only what the model generated after "Assistant:" and `problems[i]` is
the problem it answered. Functions are registered by name in `REWARDS`; a config names them, and
`get_reward` also accepts a dotted path (`mypkg.mymod.my_reward`) to a user's own function.
`combine_rewards` makes the scalar GRPO reward as a weighted sum.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from r1lab import tasks  # module, not function: `tasks.get_task` is looked up per call (tests swap it)
from r1lab.errors import UserError
from r1lab.grading.extract import extract_answer
from r1lab.grading.language import language_share
from r1lab.grading.shape import chain_of_thought, has_r1_format
from r1lab.tasks.base import Problem
from r1lab.tasks.code import extract_code, problem_tests, run_codes

RewardFn = Callable[[list[str], list[Problem]], list[float]]

REWARDS: dict[str, RewardFn] = {}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: add a reward function to `REWARDS` under `name`."""

    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return add


def get_reward(name_or_dotted_path: str) -> RewardFn:
    """A registered reward by name, or a user's function by dotted path `package.module.function`."""
    name = name_or_dotted_path
    if name in REWARDS:
        return REWARDS[name]
    expected = f"expected one of {', '.join(sorted(REWARDS))}, or a dotted path module.function"
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise UserError(f"unknown reward {name!r}: {expected}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load reward {name!r} ({e}): {expected}") from e
    if not callable(fn):
        raise UserError(f"reward {name!r} is not a function: {expected}")
    return fn


@register("accuracy")
def accuracy(completions: list[str], problems: list[Problem]) -> list[float]:
    """1.0 if the completion's final answer is correct, else 0.0 (DeepSeek-R1 §2.2.2, accuracy rewards).

    Grading is the task's own `grade`, the very function evaluation calls, so the RL reward and
    the reported accuracy can never disagree (nanochat's `Task` design).
    """
    return [
        1.0 if tasks.get_task(problem.task).grade(extract_answer(completion), problem) else 0.0
        for completion, problem in zip(completions, problems, strict=True)
    ]


@register("code")
def code_reward(completions: list[str], problems: list[Problem]) -> list[float]:
    """The share of its problem's tests that the completion's code passes (DeepSeek-R1 §2.2.2's
    accuracy reward for code: "compiled and run against test cases", ../shared/R1.md). The code
    is the last ```python block, else the last `<answer>` content (tasks.code.extract_code); it
    runs in r1lab.grading.sandbox, the batch in parallel. 0.0 for a completion without code, and for
    problems that are not code problems (use `accuracy` there). A departure: the paper's reward is
    right or wrong; a fraction ranks a program that passes 4 of 5 tests above one that passes
    none, which gives GRPO a signal where every sample of a group would otherwise score 0."""
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
    rows = [i for i, problem in enumerate(problems) if problem.task == "code"]
    results = run_codes([extract_code(completions[i]) for i in rows], [problem_tests(problems[i]) for i in rows])
    rewards = [0.0] * len(completions)
    for i, result in zip(rows, results):
        rewards[i] = result.fraction
    return rewards


@register("format")
def format_reward(completions: list[str], problems: list[Problem]) -> list[float]:
    """1.0 iff the completion is `<think>...</think> <answer>...</answer>` and nothing else
    (DeepSeek-R1 §2.2.2, format rewards).

    Whitespace may surround and separate the two blocks; each tag appears exactly once; the
    think block may be empty, the answer may not. `problems` is unused: format is task-free.
    """
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
    return [1.0 if has_r1_format(completion) else 0.0 for completion in completions]


@register("language")
def language_consistency(completions: list[str], problems: list[Problem]) -> list[float]:
    """The share of the chain of thought's words written in the prompt's language (DeepSeek-R1 §3,
    stage 2's language-consistency reward, "the proportion of target language words in the CoT";
    r1lab.grading.language says how words are counted). 1.0 for a chain of thought without words."""
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
    return [language_share(chain_of_thought(c), p.lang) for c, p in zip(completions, problems)]


def combine_rewards(per_fn: dict[str, list[float]], weights: dict[str, float]) -> list[float]:
    """The scalar reward per completion: sum over reward functions of weight * reward.

    `per_fn` and `weights` must name the same functions: a reward computed but never weighted,
    or weighted but never computed, is a config mistake, not something to guess about.
    """
    if set(per_fn) != set(weights):
        raise UserError(f"reward weights {sorted(weights)} do not match reward functions {sorted(per_fn)}")
    if not per_fn:
        raise ValueError("no rewards to combine")
    lengths = {name: len(values) for name, values in per_fn.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"reward lists differ in length: {lengths}")
    columns = [[weights[name] * r for r in values] for name, values in per_fn.items()]
    return [sum(rewards) for rewards in zip(*columns)]
