"""GRPO's loss, as pure functions of tensors (DeepSeekMath arXiv 2402.03300; DeepSeek-R1 §2.2.1).

    J(θ) = E[ 1/G Σ_i agg_t( min(ρ_it A_i, clip(ρ_it, 1-ε_low, 1+ε_high) A_i) − β D_KL,it ) ]
    ρ_it = π_θ(o_it | q, o_i<t) / π_old(o_it | q, o_i<t)
    A_i  = (r_i − mean(r)) / std(r)        over the G samples of one prompt
    D_KL = π_ref/π_θ − log(π_ref/π_θ) − 1   (k3, per token, always ≥ 0)

Variants, each from the paper that introduced it and chosen by name, never by an if-ladder:
- `eps_high` > `eps_low`: DAPO's clip-higher (arXiv 2503.14476);
- aggregation `sequence_mean` (the GRPO paper: 1/|o_i| Σ_t, then mean over samples),
  `token_mean` (DAPO: mean over every token of the batch) or `constant` (Dr. GRPO,
  arXiv 2503.20783: divide by samples × max completion length, no length bias);
- `scale_rewards=False`: Dr. GRPO's advantage without the std division.
Off-policy rollouts (a vLLM sampler, engine/vllm.py) add truncated importance sampling:
each token's loss is multiplied by min(π_old / π_sampler, C) (`truncated_is_weights`), since the
engine that sampled the tokens computes their probabilities slightly differently from the trainer
(TIS, as TRL's `vllm_importance_sampling_correction` and verl's TIS).
`std` here is the population standard deviation of the group, as in the formula.
"""

from __future__ import annotations

from typing import Callable

import torch


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(P, G) rewards -> (P, G) advantages: centred per group, divided by the group std if `scale`."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log π(target) per position: (B, T, V), (B, T) -> (B, T).

    gather − logsumexp, so the full-vocabulary log-softmax is never materialised."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref): π_ref/π_θ − log(π_ref/π_θ) − 1. (B, T)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip objective, negated as a loss, and where clipping was active.

    logp, old_logp: (B, T); adv: (B,) one advantage per sample. Returns ((B, T), (B, T) bool)."""
    ratio = torch.exp(logp - old_logp)  # (B, T)
    a = adv[:, None]  # (B, 1)
    unclipped = ratio * a
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * a
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def truncated_is_weights(old_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-token truncated importance weights min(π_old / π_sampler, cap), detached. (B, T).

    old_logp: the trainer's log-probs of the sampled tokens (at μ = 1, the current policy's,
    detached); sampler_logp: the rollout engine's log-probs of the same tokens. The weight
    corrects the policy gradient for sampling from the engine's π_sampler instead of π_old; the
    cap bounds its variance (TIS: it trades a small bias for bounded weights)."""
    return torch.exp(old_logp.detach() - sampler_logp).clamp(max=cap)


# Aggregations as per-token weights over a whole rollout batch, so that a batch split into
# micro-batches (or across ranks) sums to exactly the same loss. mask: (B, T) 1 on completion
# tokens; rows, tokens: the whole batch's sample and completion-token counts (B and mask.sum()
# when the mask is the whole batch; the global counts when it is one rank's share).
def _sequence_mean(mask: torch.Tensor, max_len: int, rows: int, tokens: float) -> torch.Tensor:
    return mask / mask.sum(-1, keepdim=True).clamp(min=1) / max(rows, 1)


def _token_mean(mask: torch.Tensor, max_len: int, rows: int, tokens: float) -> torch.Tensor:
    return mask / max(tokens, 1)


def _constant(mask: torch.Tensor, max_len: int, rows: int, tokens: float) -> torch.Tensor:
    return mask / (max(rows, 1) * max_len)


AGGREGATIONS: dict[str, Callable[[torch.Tensor, int, int, float], torch.Tensor]] = {
    "sequence_mean": _sequence_mean,  # GRPO / DeepSeekMath
    "token_mean": _token_mean,  # DAPO
    "constant": _constant,  # Dr. GRPO
}


def token_weights(mask: torch.Tensor, aggregation: str, max_len: int, rows: int | None = None,
                  tokens: float | None = None) -> torch.Tensor:
    """(B, T) weight of each token's loss in the batch loss; zero off the completion. `rows` and
    `tokens` are the batch's sample and token counts when `mask` is only part of it."""
    mask = mask.float()
    rows = mask.shape[0] if rows is None else rows
    tokens = float(mask.sum()) if tokens is None else tokens
    return AGGREGATIONS[aggregation](mask, max_len, rows, tokens)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    adv: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
    eps_low: float,
    eps_high: float,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of a (micro-)batch and detached statistics.

    logp/old_logp/ref_logp: (B, T) per-token log-probs under π_θ, π_old, π_ref; adv: (B,);
    weights: (B, T) from `token_weights` (computed over the full rollout batch); is_weights:
    (B, T) `truncated_is_weights` multiplying the policy-gradient term (None: on-policy rollouts)."""
    per_token, clipped = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    if is_weights is not None:
        per_token = per_token * is_weights
    kl = k3_kl(logp, ref_logp) if ref_logp is not None and beta > 0 else torch.zeros_like(logp)
    loss = ((per_token + beta * kl) * weights).sum()
    on = weights > 0
    n = on.sum().clamp(min=1)
    stats = {
        "clip_frac": float((clipped & on).sum() / n),
        "kl": float((kl.detach() * on).sum() / n),
    }
    return loss, stats
