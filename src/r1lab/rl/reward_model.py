"""The Bradley-Terry reward model's side of RL: scoring responses, its loss, and stage 4's reward.

A reward model is a causal LM with a one-output sequence-classification head (runtime/loading.py,
`head="score"`): the score of the last token of the prompt in the R1-Zero template followed by
the response, as the policy sees and writes it. `r1lab rm` (stages/rm.py) trains it with
`bt_loss`; stage 4 of the R1 pipeline scores general prompts with it (`preference_reward`).

Departure from the paper: one reward model for helpfulness and harmlessness (the paper trains
preference models for each); stage 4 scores the summary and the whole response with it.
"""

from __future__ import annotations

import torch

from r1lab.data.preferences import PreferencePair
from r1lab.grading.shape import summary_of
from r1lab.rl.rewards import RewardFn
from r1lab.runtime.device import model_device
from r1lab.tasks.base import Problem
from r1lab.tasks.prompts import apply_template


def scores(model, tok, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """r(prompt, response) for each pair of lists, (B,), differentiable."""
    texts = [apply_template(p) + " " + r for p, r in zip(prompts, responses)]
    enc = tok(texts, padding=True)  # lists: the tensors are made here, on the model's device
    ids, mask = (torch.tensor(enc[k], device=model_device(model)) for k in ("input_ids", "attention_mask"))
    return model(input_ids=ids, attention_mask=mask).logits[:, 0]


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry: -log σ(r_chosen - r_rejected), averaged over pairs. (B,), (B,) -> ()."""
    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


@torch.no_grad()
def pair_accuracy(model, tok, pairs: list[PreferencePair], batch: int = 64) -> float:
    """The share of pairs whose chosen response scores strictly higher."""
    model.eval()
    wins = 0
    for i in range(0, len(pairs), batch):
        b = pairs[i : i + batch]
        c = scores(model, tok, [p.prompt for p in b], [p.chosen for p in b])
        r = scores(model, tok, [p.prompt for p in b], [p.rejected for p in b])
        wins += int((c > r).sum())
    return wins / len(pairs)


def preference_reward(model, tokenizer) -> RewardFn:
    """Stage 4's reward for general prompts (DeepSeek-R1 §3): the reward model's score of the
    summary (helpfulness) and of the whole response, chain of thought included (harmlessness),
    each squashed by a sigmoid into (0, 1), the range of the rule-based rewards it is summed with,
    then averaged. 0 for verifiable problems, whose rewards are the rule-based ones."""

    def preference(completions: list[str], problems: list[Problem]) -> list[float]:
        out = [0.0] * len(completions)
        rows = [i for i, p in enumerate(problems) if p.task == "general"]
        if rows:
            prompts = [problems[i].prompt for i in rows]
            with torch.no_grad():
                whole = scores(model, tokenizer, prompts, [completions[i] for i in rows])
                summary = scores(model, tokenizer, prompts, [summary_of(completions[i]) for i in rows])
            for j, i in enumerate(rows):
                out[i] = 0.5 * float(torch.sigmoid(whole[j]) + torch.sigmoid(summary[j]))
        return out

    return preference
