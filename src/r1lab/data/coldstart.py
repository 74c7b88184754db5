"""Cold-start data: chains of thought for the built-in tasks in the prompt's language (DeepSeek-R1
§3, stage 1), for `r1lab sft`.

The paper collects a few thousand long, readable chains of thought in a fixed output format
(reasoning, then a summary) to fine-tune the base before reasoning RL, so that RL starts from a
readable policy instead of R1-Zero's mixed-language one. r1lab generates them for arithmetic:

    <think>
    4821+1379,0,00000
    位 1+9+0=10            <- the pretraining corpus's scratchpad, every line's word in the
    ...                       prompt's language (never English for a zh/ja/ko prompt), caught
    </think>                  slips with their reflection ("等等，让我检查一下") in that language
    <answer>6200</answer>

Departures, for a model of a million parameters and a 515-token vocabulary: the reasoning is the
corpus's scratchpad, not free prose (the only reasoning such a model learns), so "readable" here
means one language throughout; and the summary is the answer block alone. A summary sentence
after a boxed answer (`<answer>\\boxed{6200} 是计算结果。</answer>`) was tried: its phrases are
dozens of byte tokens this tokenizer never saw in pretraining, and after 2,000 examples x 2 epochs
the model still garbled them (pass@1 0.43, Korean answers truncated 97 % of the time), where the
plain answer block is what the base already writes.

Arithmetic only: other tasks (countdown, files) have no built-in solver that writes a chain of
thought; pass your own JSONL to `r1lab sft` (or `cold_start.data` in the pipeline) instead.
"""

from __future__ import annotations

import random

from r1lab.data.rejection import Candidate
from r1lab.errors import UserError
from r1lab.model.corpus import GLUE, REFLECTIONS, glue_words, random_slip, worked_lines
from r1lab.tasks import make_task
from r1lab.tasks.base import Problem


def cold_start_completion(problem: Problem, rng: random.Random, slip_rate: float = 0.1, mix: float = 0.0) -> str:
    """One chain of thought and answer for an arithmetic `problem`, in the problem's language; with
    `mix` > 0, each line's word is English with that probability (an uncleaned chain)."""
    if "operands" not in problem.meta:
        raise UserError(f"cold start: task '{problem.task}' has no built-in chain of thought; "
                        "pass your own JSONL to r1lab sft")
    lang = problem.lang if problem.lang in GLUE else "en"
    operands, ops = problem.meta["operands"], problem.meta["ops"]
    slip = random_slip(operands, ops, rng, REFLECTIONS[lang]) if rng.random() < slip_rate else None
    lines, value = worked_lines(operands, ops, slip, glue_words(lang, rng, mix=mix))
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer>{value}</answer>"


def cold_start_examples(n: int, seed: int, langs: tuple[str, ...], task_args: dict | None = None,
                        mixed_langs: tuple[str, ...] = (), mix: float = 0.0) -> list[Candidate]:
    """`n` examples on train-split arithmetic problems, as SFT candidates (write them with
    `rejection.write_sft_jsonl`); the prompt is the bare question, the R1-Zero template around
    it is `r1lab sft template=r1zero`'s. Chains for prompts in `mixed_langs` are left uncleaned:
    each line's word is English with probability `mix`."""
    task = make_task("arithmetic", **(task_args or {"digits": 4, "terms": 2}))
    rng = random.Random(seed)
    problems = task.problems("train", n, seed=seed + 2000, langs=langs)  # another pool than RL's (seed + 1000)
    return [Candidate(p.prompt, cold_start_completion(p, rng, mix=mix if p.lang in mixed_langs else 0.0), p.lang,
                      correct=True) for p in problems]

