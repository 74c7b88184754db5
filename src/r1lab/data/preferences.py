"""Built-in preference pairs over answers to the general prompts (tasks/general.py), for the reward
model (`r1lab rm`) and so for the all-scenarios RL of stage 4 (DeepSeek-R1
§3: "for general data, we resort to reward models to capture human preferences", helpfulness
judged on the summary, harmlessness on the whole response).

Three kinds of prompt, each phrased in en/zh/ja/ko:
  * greeting: "Hello!" -> a greeting that offers help;
  * fact: "What is the capital of France?" -> the fact from a small table (capitals, colours of
    things, opposites), which is what a model of a million parameters can hold;
  * harmful: a request for something dangerous -> a refusal that offers something safe instead.
A preferred answer is helpful, harmless and in the prompt's language; each pair sets it against
one rejected answer of a kind a reward model must learn to rank lower: a wrong fact, an unhelpful
non-answer, the right answer in another language (language mixing again), a compliance with a
harmful request, a degenerate repetition, or garbled characters (added after stage-4 RL found
that a reward model trained without them scored byte soup highest: reward hacking). Answers use the R1 output format with an empty
chain of thought (general prompts need no reasoning; the paper likewise skips the CoT for simple
queries), so that RL on them produces the same shape as on reasoning prompts.

Splits: by prompt key (`HELD_OUT`, the same prompts in every language), never by pair, so
held-out pairs ask about things the training pairs never mention (a wrong capital is drawn from
the same split). The refusal, compliance and "I don't know" answers are one fixed string per
language, so on held-out harmful and unhelpful pairs a reward model recognises strings it was
trained on; the held-out accuracy that measures generalisation is that on other_language,
repetitive and (for what is learnable) wrong_fact pairs. A wrong capital of a held-out
country cannot be told from the right one by a model that never saw either, so on held-out
`wrong_fact` pairs a reward model can only guess; the other kinds generalise. All of it is synthetic and small; real preference data (chosen/rejected JSONL)
goes through `r1lab rm data=...` instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from r1lab.grading.shape import r1_answer
from r1lab.tasks.base import LANGS
from r1lab.tasks.general import (
    CAPITALS,
    CAPITALS_L,
    COMPLY,
    FACT_QUESTION,
    GREETINGS,
    HELD_OUT,
    REFUSAL,
    UNHELPFUL,
    GeneralPrompt,
    general_prompts,
)


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str  # completions, R1 format
    rejected: str
    lang: str
    kind: str  # what is wrong with the rejected answer


def rejected_answers(p: GeneralPrompt, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, text) of the answers a reward model must rank below `p.reference`."""
    other = rng.choice([lang for lang in LANGS if lang != p.lang])
    out = [("unhelpful", UNHELPFUL[p.lang]), ("repetitive", (p.reference[:4] + " ") * 8),
           ("garbled", garbled(p.reference, rng))]
    if p.kind == "harmful":
        out += [("harmful", COMPLY[p.lang]), ("other_language", REFUSAL[other])]
    elif p.kind == "fact":
        i = [c for c, _ in CAPITALS].index(p.key.split(":", 1)[1])
        same_split = [k for k in range(len(CAPITALS)) if k != i
                      and (f"capital:{CAPITALS[k][0]}" in HELD_OUT) == (p.key in HELD_OUT)]
        j = rng.choice(same_split)  # a held-out pair never names a training capital, nor the reverse
        x, y = CAPITALS_L[p.lang][i][0], CAPITALS_L[p.lang][j][1]
        out += [("wrong_fact", FACT_QUESTION[p.lang][1].format(x=x, y=y)),
                ("other_language", FACT_QUESTION[other][1].format(x=CAPITALS_L[other][i][0], y=CAPITALS_L[other][i][1]))]
    else:
        out += [("other_language", GREETINGS[other][1])]
    return out


GARBLE_POOL = "\ufffdabcdefghijklmnopqrstuvwxyz的是了一不在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日軍あいうえおかきくけこさしすせそたちつてとなにぬねのアイウエオカキクケコ가나다라마바사아자차카타파하도로모보소오조초코토포호"


def garbled(reference: str, rng: random.Random) -> str:
    """Random characters of mixed scripts (with U+FFFD, the replacement character that broken
    byte tokens decode to), as long as `reference`: what a small policy writes when RL pushes it
    off the text it knows, which a reward model trained only on fluent answers cannot rank."""
    return "".join(rng.choice(GARBLE_POOL) for _ in range(len(reference)))


def preference_pairs(split: str, seed: int = 0) -> list[PreferencePair]:
    """Every rejected kind for every general prompt of `split`, chosen = the reference answer."""
    rng = random.Random(seed)
    return [PreferencePair(p.prompt, r1_answer(p.reference), r1_answer(text), p.lang, kind)
            for p in general_prompts(split) for kind, text in rejected_answers(p, rng)]
