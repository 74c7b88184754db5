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

A reward function is pure and batched:
    fn(completions: list[str], problems: list[Problem]) -> list[float]
where `completions[i]` is only what the model generated after "Assistant:" and `problems[i]` is
the problem it answered. Functions are registered by name in `REWARDS`; a config names them, and
`get_reward` also accepts a dotted path (`mypkg.mymod.my_reward`) to a user's own function.
`combine_rewards` makes the scalar GRPO reward as a weighted sum.

Functions written for TRL's GRPOTrainer or open-r1 work unchanged (`TRLReward`): a function that
takes `**kwargs` is called the way TRL calls it, with everything by keyword:
    fn(prompts=..., completions=..., completion_ids=..., solution=..., answer=..., task=..., lang=...,
       key=..., <the problem's meta fields>, trainer_state=..., log_extra=..., log_metric=...)
with one list entry per completion (the dataset's columns, repeated over each group; the gold
answer as `solution`, open-r1's name, and as `answer`). Completions are strings or, for a
function that reads chat messages, `[{"role": "assistant", "content": text}]` (and prompts
`[{"role": "user", "content": ...}]`): TRL chooses by the dataset, r1lab by the function, from
the annotation of its `completions` parameter (`list[list[dict]]` → messages, `list[str]` → text)
or, where there is none, by calling it once on a sample at load time (text first). A `None`
reward means "not applicable", as in TRL: it is left out of the weighted sum and of the mean.
The other way round, `for_trl(name)` makes any r1lab reward a TRL reward function.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import SimpleNamespace

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
    return TRLReward(fn, name) if _takes_kwargs(fn) else fn


def _takes_kwargs(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: called the r1lab way
        return False
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _messages(texts: list, role: str) -> list[list[dict]]:
    return [[{"role": role, "content": t}] for t in texts]


def _columns(problems: list[Problem]) -> dict[str, list]:
    """The dataset columns TRL would pass a reward function, one entry per completion."""
    cols: dict[str, list] = {"solution": [p.answer for p in problems], "answer": [p.answer for p in problems],
                             "task": [p.task for p in problems], "lang": [p.lang for p in problems],
                             "key": [p.key for p in problems]}
    for name in dict.fromkeys(k for p in problems for k in p.meta):
        if name not in cols:
            cols[name] = [p.meta.get(name) for p in problems]
    return cols


class TRLReward:
    """A reward function written for TRL's GRPOTrainer (or open-r1), called the way TRL calls it
    (see the module docstring). `messages`: pass chat messages rather than strings; None decides
    from the annotation of `completions`, else by a trial call on a sample."""

    def __init__(self, fn: Callable, name: str, messages: bool | None = None):
        self.fn, self.name = fn, name
        self.__name__ = getattr(fn, "__name__", name)
        self.messages = _annotated_messages(fn) if messages is None else messages
        if self.messages is None:
            self.messages = not self._works(False) and self._works(True)

    def __call__(self, completions: list[str], problems: list[Problem], prompts: list[str] | None = None,
                 completion_ids: list[list[int]] | None = None, step: int = 0, steps: int = 0) -> list[float | None]:
        prompts = prompts if prompts is not None else [p.prompt for p in problems]
        if self.messages:
            completions, prompts = _messages(completions, "assistant"), _messages(prompts, "user")
        try:
            out = list(self._invoke(completions, prompts, completion_ids, problems, step, steps))
        except Exception as e:  # a user's function failing on r1lab's inputs: say what it was given
            raise UserError(f"reward {self.name!r} failed ({type(e).__name__}: {e}); it was called the TRL way with "
                            f"completions as {'chat messages' if self.messages else 'strings'} and the columns "
                            f"{', '.join(_columns(problems))}") from e
        if len(out) != len(completions) or not all(r is None or isinstance(r, (int, float)) for r in out):
            raise UserError(f"reward {self.name!r} returned {out[:4]!r}...: expected one number (or None) per "
                            f"completion, {len(completions)} of them")
        return [None if r is None else float(r) for r in out]

    def _works(self, messages: bool) -> bool:
        """Does the function take a sample completion in this form without raising?"""
        sample = Problem(key="1+1", prompt="What is 1+1?", answer="2", task="arithmetic")
        text = "<think>\n1+1=2\n</think>\n<answer>2</answer>"
        completions = _messages([text], "assistant") if messages else [text]
        prompts = _messages([sample.prompt], "user") if messages else [sample.prompt]
        try:
            self._invoke(completions, prompts, [[0]], [sample], 0, 1)
        except Exception:
            return False
        return True

    def _invoke(self, completions, prompts, completion_ids, problems: list[Problem], step: int, steps: int):
        """The function called as TRL's GRPOTrainer calls it: everything by keyword."""
        return self.fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **_columns(problems),
                       trainer_state=SimpleNamespace(global_step=step, max_steps=steps), log_extra=lambda *a: None,
                       log_metric=lambda *a: None)


def _annotated_messages(fn: Callable) -> bool | None:
    """True if `fn`'s `completions` is annotated as chat messages, False if as strings, else None."""
    try:
        param = inspect.signature(fn).parameters.get("completions")
    except (TypeError, ValueError):
        return None
    if param is None or param.annotation is param.empty:
        return None
    note = param.annotation if isinstance(param.annotation, str) else repr(param.annotation)
    return True if "dict" in note else False if "str" in note else None


def score(reward_fns: dict[str, Callable], completions: list[str], problems: list[Problem],
          prompts: list[str] | None = None, completion_ids: list[list[int]] | None = None, step: int = 0,
          steps: int = 0) -> dict[str, list[float | None]]:
    """Each reward function's values for the batch; TRL-style functions also get the prompts (as
    the model saw them), the completions' token ids and the step."""
    return {name: fn(completions, problems, prompts, completion_ids, step, steps) if isinstance(fn, TRLReward)
            else fn(completions, problems) for name, fn in reward_fns.items()}


def for_trl(name: str, task: str = "math") -> Callable:
    """r1lab's reward `name` (registered, or a dotted path) as a TRL reward function, for
    `GRPOTrainer(reward_funcs=[for_trl("accuracy")])`. Each row's problem is built from the
    dataset's columns: the gold answer from `solution` or `answer`, the task from `task` (else
    `task`, which decides how answers are graded), the language from `lang` (else "en"), and
    `meta` (a dict, e.g. a code problem's tests) if there is one. Chat-message completions are
    read as the text of their messages."""
    fn = get_reward(name)

    def reward(completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        golds = columns.get("solution") or columns.get("answer")
        if golds is None:
            raise UserError(f"reward {name!r}: the dataset needs a 'solution' or 'answer' column")
        n = len(completions)
        col = lambda key, default: columns.get(key) or [default] * n  # noqa: E731
        text = lambda c: c if isinstance(c, str) else "".join(m["content"] for m in c)  # noqa: E731
        prompt_texts = [text(p) for p in prompts] if prompts is not None else [""] * n
        problems = [Problem(key=str(i), prompt=pt, answer=str(gold), task=t, lang=lang, meta=meta or {})
                    for i, (pt, gold, t, lang, meta) in enumerate(zip(prompt_texts, golds, col("task", task),
                                                                       col("lang", "en"), col("meta", None)))]
        return fn([text(c) for c in completions], problems)

    reward.__name__ = name.rpartition(".")[2]  # TRL names its metrics after the function
    return reward


@register("accuracy")
def accuracy(completions: list[str], problems: list[Problem], prose: bool = False) -> list[float]:
    """1.0 if the completion's final answer is correct, else 0.0 (DeepSeek-R1 §2.2.2, accuracy rewards).

    Grading is the task's own `grade`, the very function evaluation calls (nanochat's `Task`
    design). The answer must stand where an answer format puts it (extract.py's strict tier:
    `<answer>`, `\\boxed{}`, `#### X`, "the answer is X"), as R1's rule reward demands ("in a
    specified format"); `r1lab eval` also reads answers stated in prose. `prose=True` (the zero
    stage's `accuracy_prose`) makes the reward read prose too; it is off by default because under
    RL a lenient extractor is an optimiser target: a policy paid for any number in its last
    sentence learns to scatter candidate numbers there instead of committing to one answer.
    """
    return [
        1.0 if tasks.get_task(problem.task).grade(extract_answer(completion, prose=prose), problem) else 0.0
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


def overlong_penalty(lengths: list[int], max_len: int, buffer: int) -> list[float]:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13), by completion length in tokens: 0
    up to max_len - buffer, then falling linearly to -1 at max_len, where sampling cuts a completion
    off. Not a text reward: GRPOConfig.overlong_buffer adds it to every step's rewards as `overlong`."""
    start = max_len - buffer
    return [0.0 if n <= start else max(-1.0, (start - n) / buffer) for n in lengths]


def combine_rewards(per_fn: dict[str, list[float | None]], weights: dict[str, float]) -> list[float]:
    """The scalar reward per completion: sum over reward functions of weight * reward, leaving out
    None ("not applicable", as TRL does; a completion no function applies to gets 0).

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
    columns = [[0.0 if r is None else weights[name] * r for r in values] for name, values in per_fn.items()]
    return [sum(rewards) for rewards in zip(*columns)]
