"""What a task is: a source of problems with gold answers, and the one function that grades them.

Following nanochat's `Task`, grading lives on the task so that the RL accuracy reward and
held-out evaluation share one code path and can never disagree.

Splits are decided by a hash of the problem's canonical text (`Problem.key`), never by the order
problems were generated in: a problem is in the test split or the train split for every seed,
every run and every machine, so the two can never overlap.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from r1lab.errors import UserError

T = TypeVar("T")

LANGS = ("en", "zh", "ja", "ko")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    key: str  # canonical, language-neutral problem text, e.g. "4821+1379"; decides the split
    prompt: str  # the user's question as phrased in `lang` (no template around it)
    answer: str  # gold final answer, as a string
    task: str  # name of the task that made it (grading dispatches on it)
    lang: str = "en"
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # task-specific data


def split_of(key: str, test_percent: int = 10) -> str:
    """'test' for a fixed `test_percent`% of all problem keys, 'train' for the rest."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "test" if h % 100 < test_percent else "train"


class Task(Protocol):
    name: str

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """`n` distinct problems of `split`, deterministic in `seed`; prompts in languages drawn from `langs`."""
        ...

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Is the extracted final answer correct for `problem`? `None` (nothing extracted) is wrong."""
        ...


def check_split(split: str) -> str:
    """`split` itself, or UserError if it is not 'train' or 'test'."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def draw_distinct(
    draw: Callable[[random.Random], tuple[str, T] | None], split: str, n: int, seed: int, max_draws: int, what: str
) -> list[T]:
    """The first `n` distinct-keyed draws that fall in `split`, from a generator seeded with `seed`.

    `draw(rng)` returns `(key, item)`, or None for a draw the task rejects. Rejected draws are
    skipped, so accepted items keep the distribution `draw` gives them, and the list for `n` is a
    prefix of the list for any larger `n`. After `max_draws` draws the space is taken to be too small (or too rarely
    hit) for `n` and UserError says so, rather than looping forever.
    """
    check_split(split)
    rng = random.Random(seed)
    seen: set[str] = set()
    items: list[T] = []
    for _ in range(max_draws):
        if len(items) == n:
            return items
        drawn = draw(rng)
        if drawn is None or drawn[0] in seen or split_of(drawn[0]) != split:
            continue
        seen.add(drawn[0])
        items.append(drawn[1])
    if len(items) == n:
        return items
    raise UserError(
        f"found only {len(items)} distinct {split} problems of {what} in {max_draws} draws, "
        f"{n} were asked for; ask for fewer or widen the task's settings"
    )
