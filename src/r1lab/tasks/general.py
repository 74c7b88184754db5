"""General (non-reasoning) prompts as a task, so RL can mix them with reasoning prompts (stage 4).

The prompts are `r1lab.data.general`'s built-in ones (greetings, facts, harmful requests in
en/zh/ja/ko); a problem's `answer` is the preferred reference answer. Nothing is verifiable, so
`grade` always says no: the accuracy reward gives general prompts 0 and the reward model
(`rewards.preference_reward`) scores them instead.
"""

from __future__ import annotations

import random

from r1lab.errors import UserError
from r1lab.tasks.base import Problem, check_split
from r1lab.tasks.prompts import check_langs


class GeneralTask:
    name = "general"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """`n` general prompts of `split` in `langs`, drawn with replacement when `n` exceeds the
        distinct ones (the built-in set is small), deterministic in `seed`."""
        from r1lab.data.general import general_prompts

        check_split(split)
        langs = check_langs(langs)
        pool = [Problem(key=f"{g.key} [{g.lang}]", prompt=g.prompt, answer=g.reference, task=self.name, lang=g.lang,
                        meta={"kind": g.kind}) for g in general_prompts(split) if g.lang in langs]
        if not pool:
            raise UserError(f"task 'general' has no {split} prompts in {', '.join(langs)}")
        rng = random.Random(seed)
        if n <= len(pool):
            return rng.sample(pool, n)
        return [rng.choice(pool) for _ in range(n)]

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        return False  # general prompts have no verifiable answer
