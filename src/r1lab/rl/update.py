"""The GRPO update: μ optimizer steps on a rollout, fast, and equal to the plain one (plain.py).

    stats = update_policy(model, ref, opt, gen, adv, rows, g, pad, step)

Three parts, each a function:
  1. log-probs: every distinct prompt goes through the model once (`prompt_pass`, P rows, not
     P x G), and each micro-batch of completions runs on top of its prompts' cache
     (`completion_logprobs`); micro-batches are sorted by length and capped by rows and padded
     tokens (`length_batches`), so padding stays small and activations stay in cache;
  2. the micro-batch loss (`microbatch_loss`): GRPO's loss (grpo.grpo_loss) with token weights
     computed over the whole rollout first, so neither the split into micro-batches nor their
     order changes the loss; optional truncated importance weights for an off-policy engine;
  3. the optimizer step (`optimizer_step`): gradients summed across ranks, clipped, and applied
     only if finite (runtime/guard.py).
Work that is not needed is not done: no reference forward when β = 0, no separate π_old pass
when μ = 1 (π_old is the current policy, whose log-probs the loss computes anyway), and with
β = 0 a row whose advantage is exactly 0 has an exactly zero gradient and is not computed (it
still counts in the weights' normalisation). The completions' gradients collect in the detached
prompt cache and go back through the one prompt pass at the end (`PromptPass.backward`).
tests/rl/test_update.py checks all of this against plain.py's textbook update, for every
aggregation, β, μ and micro-batch split. docs/perf.md has the measurements behind each choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from r1lab.engine.fused import fused_modules
from r1lab.engine.hf import cache_of, forward, layer_tensors, left_padded, new_cache
from r1lab.engine.sampler import Generation
from r1lab.rl.grpo import grpo_loss, token_logprobs, token_weights, truncated_is_weights
from r1lab.runtime import distributed
from r1lab.runtime.device import model_device
from r1lab.runtime.guard import guarded_step


def length_batches(gen: Generation, rows: list[int], size: int, tokens: int = 0) -> list[list[int]]:
    """`rows` in micro-batches sorted by completion length, each padded only to its own longest.

    A micro-batch holds at most `size` rows and, if `tokens` > 0, at most `tokens` padded
    completion tokens (rows x its longest length; a single row may exceed it)."""
    order = sorted(rows, key=lambda i: len(gen.completion_ids[i]))
    batches: list[list[int]] = []
    for i in order:
        n = len(gen.completion_ids[i])  # the longest so far, as `order` is sorted
        if batches and len(batches[-1]) < size and (not tokens or (len(batches[-1]) + 1) * n <= tokens):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# --- 1. log-probs ----------------------------------------------------------------------------


@dataclass
class PromptPass:
    """Every prompt of a rollout through the model once, its outputs cut off the graph.

    `outputs` are the prompt pass's results (the logits predicting each first completion token,
    then each layer's cached keys and values); `inputs` are detached copies of them that the
    completion passes read. Gradients of the completion losses collect in `inputs[k].grad`, and
    `backward()` sends them through the prompt pass once: the same gradient as backpropagating
    every micro-batch through its own prompt pass, at the cost of one prompt pass per update."""

    outputs: list[torch.Tensor]
    inputs: list[torch.Tensor]
    mask: torch.Tensor  # (P, W) the left-padded prompts' attention mask

    def backward(self) -> None:
        pairs = [(o, i.grad) for o, i in zip(self.outputs, self.inputs) if i.grad is not None]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


def prompt_pass(model, gen: Generation, pad: int) -> PromptPass:
    """The P distinct prompts through `model` into a KV cache (P rows, not P x G)."""
    ids, pmask, ppos = left_padded(gen.prompt_ids, pad, model_device(model))  # (P, W)
    cache = new_cache(model)
    with fused_modules(model):
        head = forward(model, ids, pmask, ppos, cache, logits_to_keep=1)  # (P, 1, V): predicts each first token
    outputs = [head] + [t for kv in layer_tensors(cache) for t in kv]
    inputs = [t.detach().requires_grad_(t.requires_grad) for t in outputs]
    return PromptPass(outputs, inputs, pmask)


def completion_logprobs(model, prompts: PromptPass, gen: Generation, chunk: list[int], pad: int):
    """Per-token log-probs of the completions `chunk`, run on top of their prompts' cache.

    Each completion gets its prompt's cached keys and values (a differentiable index into
    `prompts.inputs`); the log-prob of its first token comes from the prompt pass's last
    position. Same numbers as one forward over prompt+completion per row (tests/rl/test_update.py).
    Returns log-probs (B, Lc), logits (B, Lc, V) and the completion mask (B, Lc). An empty `chunk`
    (FSDP2's padding: `pad_batches`) runs one pad token after the first prompt."""
    device = prompts.mask.device
    owner = torch.tensor([i // gen.n for i in chunk] or [0], device=device)  # (B,) the prompt of each completion
    head, *kv = prompts.inputs
    cache = cache_of(model, [(kv[2 * layer][owner], kv[2 * layer + 1][owner]) for layer in range(len(kv) // 2)])
    completions = [gen.completion_ids[i] for i in chunk] or [[pad]]
    Lc = max(map(len, completions))
    cids = torch.tensor([c + [pad] * (Lc - len(c)) for c in completions], device=device)  # (B, Lc) right-padded
    cmask = torch.tensor([[1] * len(c) + [0] * (Lc - len(c)) for c in completions], device=device)
    pmask = prompts.mask[owner]
    positions = pmask.sum(1)[:, None] + torch.arange(Lc, device=device)  # (B, Lc): continue each prompt
    with fused_modules(model):  # dense MLPs and RMSNorms: forward and backward in C (engine/fused.py)
        body = forward(model, cids, torch.cat([pmask, cmask], 1), positions, cache)  # (B, Lc, V)
    logits = torch.cat([head[owner], body[:, :-1]], dim=1)  # (B, Lc, V): position t predicts token t
    return token_logprobs(logits, cids), logits, cmask


def pad_batches(model, batches: list[list[int]]) -> list[list[int]]:
    """Under FSDP2 every rank must run as many forwards and backwards (each all-gathers a layer's
    weights; each backward reduce-scatters its gradients): `batches` with empty micro-batches
    appended up to the most any rank has. Unsharded: `batches` as they are."""
    if not distributed.is_sharded(model):
        return batches
    return batches + [[] for _ in range(int(distributed.max_across(len(batches))) - len(batches))]


def rollout_logprobs(model, gen: Generation, batches: list[list[int]], pad: int) -> list[torch.Tensor]:
    """Detached log-probs (b, Lc) of every micro-batch under `model` (π_ref, or π_old when μ > 1)."""
    with torch.no_grad():
        prompts = prompt_pass(model, gen, pad)
        return [completion_logprobs(model, prompts, gen, b, pad)[0] for b in batches]


# --- 2. the micro-batch loss -------------------------------------------------------------------


def microbatch_loss(lp: torch.Tensor, tmask: torch.Tensor, old: torch.Tensor, ref: torch.Tensor | None,
                    adv: torch.Tensor, weights: torch.Tensor, g, sampler_lp: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss of one micro-batch (its share of the rollout's loss) and detached statistics.

    lp, old, ref: (b, Lc) log-probs under π_θ, π_old, π_ref (None: no KL term); tmask (b, Lc) the
    completion tokens; adv (b,); weights (b, Lc) from grpo.token_weights over the whole rollout;
    sampler_lp (b, Lc): the rollout engine's own log-probs, when it is not the trainer (then each
    token's term is multiplied by a truncated importance weight, grpo.truncated_is_weights)."""
    isw = None if sampler_lp is None else truncated_is_weights(old, sampler_lp, g.tis_cap) * tmask  # (b, Lc)
    loss, stats = grpo_loss(lp, old, ref, adv, weights, g.beta, g.eps_low, g.eps_high, isw, g.loss)
    if isw is not None:
        stats["is_weight_sum"] = float(isw.sum())
    return loss, stats


@torch.no_grad()
def mean_entropy(logits: torch.Tensor, tmask: torch.Tensor) -> float:
    """The policy's mean per-token entropy over the completion tokens: logits (b, Lc, V), tmask (b, Lc)."""
    logq = torch.log_softmax(logits.float(), -1)
    entropy = -(logq.exp() * logq).sum(-1)  # (b, Lc)
    return float((entropy * tmask).sum() / tmask.sum().clamp(min=1))


# --- 3. the optimizer step ---------------------------------------------------------------------


def optimizer_step(model, opt, g, loss: float, step: int, log=print) -> tuple[float, bool]:
    """Sum the gradients over ranks and take one guarded step (runtime/guard.py): (gradient norm, skipped)."""
    if distributed.is_sharded(model):  # FSDP2 has reduce-scattered them in the backward
        distributed.drop_unused_grads(model.parameters())
    else:
        distributed.sum_gradients(model.parameters())  # under N ranks: the whole batch's gradient
    if all(p.grad is None for p in model.parameters()):  # every advantage is 0 and β = 0: the gradient
        for p in model.parameters():  # is exactly zero, but the optimizer still steps (Adam's momentum moves on)
            p.grad = torch.zeros_like(p) if p.requires_grad else None
    loss = distributed.sum_across([loss])[0]  # so that every rank skips or none does
    return guarded_step(opt, model.parameters(), g.grad_clip, loss, log, f"grpo step {step + 1}")


def set_lr(opt, g, step: int) -> None:
    """GRPO's learning rate at `step`: linear warm-up over `warmup_steps`, then constant."""
    for group in opt.param_groups:
        group["lr"] = g.lr * min(1.0, (step + 1) / g.warmup_steps) if g.warmup_steps else g.lr


# --- the update ----------------------------------------------------------------------------------


def update_policy(model, ref, opt, gen: Generation, adv: torch.Tensor, rows: list[int], g, pad: int, step: int,
                  log=print) -> dict:
    """μ GRPO updates on the samples `rows` of a rollout (adv: (P*G,) per sample); returns detached
    statistics. Under N ranks `rows` is this rank's share: the loss is normalised by the whole
    batch's counts and the gradients are summed across ranks (runtime/distributed.py)."""
    stats = {"loss": 0.0, "clip_frac": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0, "skipped_steps": 0,
             "time_logprobs": 0.0}
    tis = gen.sampler_logprobs is not None and g.tis_cap > 0  # an off-policy engine (vLLM): TIS
    drift = Drift(gen, g.sampling.temperature)
    if tis:  # the same on every rank, so every rank sums it below
        stats["is_weight_mean"] = 0.0
    device = model_device(model)
    lengths = torch.tensor([len(gen.completion_ids[i]) for i in rows], dtype=torch.long, device=device)
    n_rows, n_tokens = distributed.sum_across([len(rows), float(lengths.sum())])
    if not n_rows:
        return {**stats, **Drift(gen, g.sampling.temperature, skip=True).stats()}
    columns = torch.arange(int(lengths.max()) if rows else 0, device=device)
    tmask_all = columns[None, :] < lengths[:, None]  # (B, Lc) in `rows` order
    weights = token_weights(tmask_all, g.aggregation, g.sampling.max_new_tokens, int(n_rows), n_tokens)  # (B, Lc)
    index_of = {r: j for j, r in enumerate(rows)}
    adv_list = adv.tolist()  # one device-to-host copy, not one per row
    active = [i for i in rows if g.beta > 0 or adv_list[i] != 0]  # the rest contribute exactly nothing
    batches = pad_batches(model, length_batches(gen, active, g.micro_batch, g.micro_tokens))
    scale = distributed.world_size() if distributed.is_sharded(model) else 1  # FSDP2 averages over ranks
    t0 = time.time()
    ref_lp = rollout_logprobs(ref, gen, batches, pad) if ref else None  # π_ref: only β > 0 needs it
    old_lp = rollout_logprobs(model, gen, batches, pad) if g.mu > 1 else None  # π_old: only μ > 1
    stats["time_logprobs"] = time.time() - t0
    set_lr(opt, g, step)
    for it in range(g.mu):
        prompts = prompt_pass(model, gen, pad) if batches else None
        update_loss = 0.0
        for j, chunk in enumerate(batches):
            lp, logits, tmask = completion_logprobs(model, prompts, gen, chunk, pad)
            if not chunk:  # FSDP2's padding: the forward and backward every rank runs, with no loss
                (lp.sum() * 0).backward()
                continue
            sampler_lp = torch.tensor([gen.sampler_logprobs[i] + [0.0] * (lp.shape[1] - len(gen.sampler_logprobs[i]))
                                       for i in chunk], device=device) if tis else None  # (b, Lc) as lp
            loss, s = microbatch_loss(lp, tmask, old_lp[j] if old_lp else lp.detach(),  # μ = 1: π_old = π_θ
                                      ref_lp[j] if ref_lp else None, adv[chunk],
                                      weights[[index_of[i] for i in chunk], : lp.shape[1]], g, sampler_lp)
            (loss * scale).backward()
            s["entropy"] = mean_entropy(logits, tmask)  # after the backward: the graph's memory is free
            if it == 0:  # the rollout's policy: the first update's forward
                drift.add(logits, lp, tmask, chunk)
            update_loss += float(loss.detach())
            share = float(tmask.sum()) / n_tokens / g.mu
            stats["loss"] += float(loss.detach()) / g.mu
            for key in ("clip_frac", "kl", "entropy"):
                stats[key] += s[key] * share
            if tis:
                stats["is_weight_mean"] += s["is_weight_sum"] / n_tokens / g.mu
        if prompts is not None:
            prompts.backward()  # the completions' gradients, through the one prompt pass
        stats["grad_norm"], skipped = optimizer_step(model, opt, g, update_loss, step, log)
        stats["skipped_steps"] += skipped
    keys = ("loss", "clip_frac", "kl", "entropy") + (("is_weight_mean",) if tis else ())  # each normalised
    stats.update(zip(keys, distributed.sum_across([stats[k] for k in keys])))  # by the global batch: sums over ranks
    stats.update(drift.stats())
    return stats


class Drift:
    """Rollout-vs-trainer drift: each drawn token's log-prob as the decoder computed it
    (Generation.draw_logprobs: under the distribution it drew from, temperature applied, before
    top-p) against the trainer's log-prob of the same token at the same temperature, from the
    update's own forward (no extra pass; so over the tokens the update runs: kept groups, non-zero
    advantages when β = 0). An off-policy engine's raw log-probs (vLLM's sampler_logprobs,
    untempered) are compared at temperature 1. Mean and max absolute difference, and the k3
    estimate of KL(π_sampler || π_trainer) per token; None when the rollout carries no log-probs."""

    def __init__(self, gen: Generation, temperature: float, skip: bool = False):
        self.gen, self.t = gen, temperature
        self.drawn = None if skip else gen.draw_logprobs  # skip: no update ran, nothing to compare
        if self.drawn is None and gen.sampler_logprobs is not None and not skip:
            self.drawn, self.t = gen.sampler_logprobs, 1.0
        self.abs_sum = self.kl_sum = self.tokens = self.max = 0.0

    @torch.no_grad()
    def add(self, logits: torch.Tensor, lp: torch.Tensor, tmask: torch.Tensor, chunk: list[int]) -> None:
        """logits (b, Lc, V) and lp (b, Lc) of the update's forward over the completions `chunk`."""
        if self.drawn is None:
            return
        width = lp.shape[1]
        drawn = torch.tensor([self.drawn[i] + [0.0] * (width - len(self.drawn[i])) for i in chunk], device=lp.device)
        if self.t != 1.0:
            targets = torch.tensor([self.gen.completion_ids[i] + [0] * (width - len(self.gen.completion_ids[i]))
                                    for i in chunk], device=lp.device)
            lp = token_logprobs(logits.detach() / self.t, targets)  # (b, Lc) at the rollout's temperature
        on = tmask.bool()
        diff = (lp.detach() - drawn)[on].double()  # trainer - sampler, per token (float64: k3 of ~1e-7 is ~1e-14)
        self.abs_sum += float(diff.abs().sum())
        self.kl_sum += float((torch.expm1(diff) - diff).sum())  # k3: samples from the sampler; >= 0
        self.tokens += float(on.sum())
        self.max = max(self.max, float(diff.abs().max()) if diff.numel() else 0.0)

    def stats(self) -> dict:
        if self.drawn is None:
            return {"drift_logp_mean": None, "drift_logp_max": None, "drift_kl": None}
        abs_sum, kl_sum, tokens = distributed.sum_across([self.abs_sum, self.kl_sum, self.tokens])
        return {"drift_logp_mean": abs_sum / max(tokens, 1), "drift_logp_max": distributed.max_across(self.max),
                "drift_kl": kl_sum / max(tokens, 1)}
