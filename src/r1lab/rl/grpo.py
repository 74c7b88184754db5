"""GRPO's loss, as pure functions of tensors (DeepSeekMath arXiv 2402.03300; DeepSeek-R1 §2.2.1).

    J(θ) = E[ 1/G Σ_i agg_t( min(ρ_it A_i, clip(ρ_it, 1-ε_low, 1+ε_high) A_i) − β D_KL,it ) ]
    ρ_it = π_θ(o_it | q, o_i<t) / π_old(o_it | q, o_i<t)
    A_i  = (r_i − mean(r)) / std(r)        over the G samples of one prompt
    D_KL = π_ref/π_θ − log(π_ref/π_θ) − 1   (k3, per token, always ≥ 0)

Variants, each from the paper that introduced it and chosen by name, never by an if-ladder:
- `eps_high` > `eps_low`: DAPO's clip-higher (arXiv 2503.14476);
- aggregation (AGGREGATIONS) `sequence_mean` (the GRPO paper: 1/|o_i| Σ_t, then mean over
  samples), `token_mean` (DAPO: mean over every token of the batch) or `constant` (Dr. GRPO,
  arXiv 2503.20783: divide by samples × max completion length, no length bias);
- advantage estimator (ADVANTAGES): `grpo` (the z-score above), `dr_grpo` (centred, no std
  division), `rloo` (leave-one-out baseline), `reinforce_pp` (REINFORCE++-baseline: centred per
  group, normalised over the batch);
- policy loss (LOSSES): `ppo_clip` (the per-token ratio above), `gspo` (the sequence-level,
  length-normalised ratio, clipped per sequence), `cispo` (clipped, detached ratios weighting a
  REINFORCE token loss).
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


# Advantage estimators, by name: (P, G) rewards of the whole rollout batch -> (P, G) advantages,
# one per sample, shared by all of its tokens. `moments(x)` gives the batch's mean and population
# std of x (across ranks under torchrun: step.batch_moments), for the one estimator that needs them.
Moments = Callable[[torch.Tensor], tuple[float, float]]


def local_moments(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std(unbiased=False))


def _grpo(rewards: torch.Tensor, moments: Moments = local_moments) -> torch.Tensor:
    """GRPO (DeepSeekMath arXiv 2402.03300): (r_i - mean) / std over the group."""
    return group_advantages(rewards)


def _dr_grpo(rewards: torch.Tensor, moments: Moments = local_moments) -> torch.Tensor:
    """Dr. GRPO (arXiv 2503.20783): r_i - mean over the group, no std division (no difficulty bias)."""
    return group_advantages(rewards, scale=False)


def _rloo(rewards: torch.Tensor, moments: Moments = local_moments) -> torch.Tensor:
    """RLOO (Ahmadian et al. arXiv 2402.14740): r_i minus the mean of the group's other G-1 rewards,
    = G/(G-1) (r_i - mean)."""
    G = rewards.shape[1]
    return group_advantages(rewards, scale=False) * (G / (G - 1))


def _reinforce_pp(rewards: torch.Tensor, moments: Moments = local_moments, eps: float = 1e-4) -> torch.Tensor:
    """REINFORCE++-baseline (Hu et al. arXiv 2501.03262): r_i - mean over the group, then normalised
    over the whole batch, (A - mean_batch A) / std_batch A (population std)."""
    centred = group_advantages(rewards, scale=False)  # (P, G)
    mean, std = moments(centred)
    return (centred - mean) / (std + eps)


ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": _grpo, "dr_grpo": _dr_grpo, "rloo": _rloo, "reinforce_pp": _reinforce_pp}


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


def gspo_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GSPO (Zheng et al. arXiv 2507.18071): PPO-clip on the sequence-level, length-normalised ratio
    s_i = exp(mean_t log(π_θ / π_old)), clipped per sequence; written per token as GSPO-token,
    s_it = sg(s_i) π_θ(o_it) / sg(π_θ(o_it)), whose value is s_i at every token and whose gradient,
    averaged over the sequence's tokens (aggregation sequence_mean, as in the paper), is GSPO's.

    logp, old_logp, mask: (B, T); adv: (B,). Returns ((B, T) loss, (B, T) bool clipped)."""
    mask = mask.float()
    log_s = ((logp - old_logp) * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,) log s_i
    s = torch.exp(logp - logp.detach() + log_s.detach()[:, None])  # (B, T) = s_i, gradient of π_θ(o_it)
    a = adv[:, None]  # (B, 1)
    unclipped = s * a
    clipped = s.clamp(1 - eps_low, 1 + eps_high) * a
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).expand_as(logp)


def cispo_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """CISPO (MiniMax-M1, arXiv 2506.13585): REINFORCE's token loss weighted by the clipped, detached
    importance ratio, -sg(clip(ρ_it, 1-ε_low, 1+ε_high)) A_i log π_θ(o_it): no token's gradient is
    dropped by the clip, only its weight bounded (the paper: token_mean, ε_low effectively off).

    logp, old_logp, mask: (B, T); adv: (B,). Returns ((B, T) loss, (B, T) bool clipped)."""
    ratio = torch.exp(logp.detach() - old_logp)  # (B, T)
    weight = ratio.clamp(1 - eps_low, 1 + eps_high)  # (B, T), detached
    return -weight * adv[:, None] * logp, weight != ratio


def ppo_clip_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip per token (GRPO, DeepSeekMath arXiv 2402.03300): `clipped_surrogate`."""
    return clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)


LOSSES: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "ppo_clip": ppo_clip_surrogate, "gspo": gspo_surrogate, "cispo": cispo_surrogate}


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
    loss: str = "ppo_clip",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of a (micro-)batch and detached statistics.

    logp/old_logp/ref_logp: (B, T) per-token log-probs under π_θ, π_old, π_ref; adv: (B,);
    weights: (B, T) from `token_weights` (computed over the full rollout batch); is_weights:
    (B, T) `truncated_is_weights` multiplying the policy-gradient term (None: on-policy rollouts);
    loss: the policy loss's name in LOSSES."""
    per_token, clipped = LOSSES[loss](logp, old_logp, adv, eps_low, eps_high, weights > 0)
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
