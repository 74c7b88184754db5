"""The GRPO update as a textbook writes it: the reference the fast one (update.py) must equal.

    loss = plain_update(model, ref, opt, gen, adv, rows, g, pad)

No shortcut: the kept rows in one batch padded to the longest prompt and the longest completion,
each prompt run once per sample, full logits and a full log-softmax, an explicit π_old forward
even when μ = 1, the KL term whenever there is a reference, and each aggregation written out as
in its paper (DeepSeekMath's per-sequence mean, DAPO's token mean, Dr. GRPO's constant), and each
policy loss (GRPO's per-token clip, GSPO's one ratio per sequence, CISPO's detached weights). It is
slow and uses memory freely; it exists to be read next to R1.md and to be compared with
`update.update_policy` (tests/rl/test_update.py: same loss, same gradients, same weights). It
clips the gradient norm and steps `opt` like the fast update, but has no guard against a
non-finite step, no ranks, no learning-rate schedule and no importance weights.
"""

from __future__ import annotations

import torch

from r1lab.engine.sampler import Generation


def plain_update(model, ref, opt, gen: Generation, adv: torch.Tensor, rows: list[int], g, pad: int) -> float:
    """μ plain GRPO steps on the samples `rows` (adv: (P*G,)); returns the mean loss of the μ steps."""
    prompts = [gen.prompt_ids[i // gen.n] for i in rows]
    completions = [gen.completion_ids[i] for i in rows]
    Lp, Lc = max(map(len, prompts)), max(map(len, completions))
    ids = torch.tensor([[pad] * (Lp - len(p)) + p + c + [pad] * (Lc - len(c)) for p, c in zip(prompts, completions)])
    mask = torch.tensor([[0] * (Lp - len(p)) + [1] * (len(p) + len(c)) + [0] * (Lc - len(c))
                         for p, c in zip(prompts, completions)])  # (B, Lp + Lc)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    targets = ids[:, Lp:]  # (B, Lc)
    on = torch.tensor([[1.0] * len(c) + [0.0] * (Lc - len(c)) for c in completions])  # (B, Lc)

    def logps(m) -> torch.Tensor:  # (B, Lc): log π(token) of every completion token
        logits = m(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, Lp - 1 : -1]
        return torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)

    with torch.no_grad():
        old = logps(model)
        ref_lp = logps(ref) if ref is not None else None
    A = adv[rows][:, None]  # (B, 1)
    total = 0.0
    for _ in range(g.mu):
        lp = logps(model)
        if g.loss == "gspo":  # GSPO: one ratio per sequence, exp of the mean token log-ratio, clipped
            s = torch.exp(((lp - old) * on).sum(1, keepdim=True) / on.sum(1, keepdim=True))  # (B, 1)
            per_seq = -torch.minimum(s * A, s.clamp(1 - g.eps_low, 1 + g.eps_high) * A)  # (B, 1)
            per_token = per_seq.expand_as(lp)  # its sequence-mean is the sequence's objective
        elif g.loss == "cispo":  # CISPO: -sg(clip(ratio)) A log π_θ, per token
            weight = torch.exp(lp.detach() - old).clamp(1 - g.eps_low, 1 + g.eps_high)
            per_token = -weight * A * lp
        else:  # PPO-clip, per token (GRPO)
            ratio = torch.exp(lp - old)
            per_token = -torch.minimum(ratio * A, ratio.clamp(1 - g.eps_low, 1 + g.eps_high) * A)
        if ref_lp is not None:  # k3: π_ref/π_θ − log(π_ref/π_θ) − 1
            per_token = per_token + g.beta * (torch.exp(ref_lp - lp) - (ref_lp - lp) - 1)
        if g.aggregation == "sequence_mean":  # GRPO: 1/|o_i| Σ_t, then the mean over samples
            loss = ((per_token * on).sum(1) / on.sum(1)).mean()
        elif g.aggregation == "token_mean":  # DAPO: the mean over every token of the batch
            loss = (per_token * on).sum() / on.sum()
        else:  # Dr. GRPO: a constant, samples × the maximum completion length
            loss = (per_token * on).sum() / (len(rows) * g.sampling.max_new_tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), g.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        total += float(loss.detach()) / g.mu
    return total
