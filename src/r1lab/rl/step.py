"""The GRPO step shared by every RL stage: rollout, rule-based rewards, group advantages, update.

    record, gen = grpo_step(model, ref, opt, sampler, problems, prompts, reward_fns, weights, g, ...)

One call is one step of DeepSeek-R1 §2.2.1: sample G completions for each of P prompts through
the shared `Sampler`, score them with the reward functions, normalise rewards within each group
(`grpo.group_advantages`), and take μ clipped policy-gradient steps (`grpo.grpo_loss`) over
micro-batches. It returns one metrics record (rewards, accuracy, lengths, styles, the update's
statistics, and the step time split into generate / score / logprobs / update) and the rollout.
The R1-Zero stage (zero.py) and the later RL stages call it in their own loops; so does
bench/grpo_vs_trl.py, so the benchmark times the very code the stages run.

Work that is not needed is not done: no reference model forward when β = 0, no separate π_old
pass when μ = 1 (π_old is the current policy, whose log-probs the loss computes anyway), and
groups whose rewards are all equal (zero advantage, no gradient) are dropped from the update
when `drop_zero_spread`. The update computes each prompt once (`prompt_pass`) and runs the
completions on its cache in length-sorted micro-batches capped by rows and padded tokens
(`length_batches`); docs/perf.md has the measurements behind each choice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from r1lab.runtime import distributed
from r1lab.runtime.device import model_device
from r1lab.errors import UserError
from r1lab.eval.metrics import REFLECTION_RE, language_mixing, style_of
from r1lab.engine.fused import fused_modules
from r1lab.rl.grpo import AGGREGATIONS, group_advantages, grpo_loss, token_logprobs, token_weights, truncated_is_weights
from r1lab.runtime.guard import guarded_step
from r1lab.rl.rewards import combine_rewards
from r1lab.engine.hf import left_padded
from r1lab.engine.sampler import Generation, Sampler, SamplingParams
from r1lab.tasks.base import Problem


@dataclass
class GRPOConfig:
    steps: int = 30
    prompts_per_step: int = 8
    group_size: int = 16  # G
    lr: float = 5e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta: float = 0.0  # k3 KL coefficient; 0 loads no reference model
    eps_low: float = 0.2
    eps_high: float = 0.2  # > eps_low: DAPO clip-higher (e.g. 0.28)
    mu: int = 1  # policy updates per rollout batch; 1 needs no separate old-log-prob pass
    aggregation: str = "sequence_mean"  # sequence_mean (GRPO) | token_mean (DAPO) | constant (Dr. GRPO)
    scale_rewards: bool = True  # False: Dr. GRPO, no std division
    drop_zero_spread: bool = True
    micro_batch: int = 64  # at most this many rows per forward/backward
    micro_tokens: int = 2048  # and at most this many padded completion tokens (0: no limit)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 200
    # truncated importance sampling cap C, used when the rollout carries the sampler's own
    # log-probs (rollout.backend=vllm): each token's loss × min(π_old / π_sampler, C); 0: off
    tis_cap: float = 2.0

    def validate(self) -> None:
        if self.group_size < 2:
            raise UserError(f"group_size: GRPO needs at least 2 samples per prompt, got {self.group_size}")
        if not self.lr > 0:
            raise UserError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.aggregation not in AGGREGATIONS:
            raise UserError(f"aggregation: expected one of {sorted(AGGREGATIONS)}, got '{self.aggregation}'")
        for name in ("steps", "prompts_per_step", "mu", "micro_batch", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.grad_clip > 0:  # a negative clip norm would flip the gradient's sign
            raise UserError(f"grad_clip: expected > 0, got {self.grad_clip}")
        if self.warmup_steps < 0:
            raise UserError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.micro_tokens < 0:
            raise UserError(f"micro_tokens: expected >= 0 (0: no limit), got {self.micro_tokens}")
        if self.beta < 0:
            raise UserError(f"beta: expected >= 0, got {self.beta}")
        if not 0 <= self.eps_low <= self.eps_high:
            raise UserError(f"eps_high: expected 0 <= eps_low <= eps_high, got {self.eps_low} and {self.eps_high}")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature, top_p: expected temperature > 0 and 0 < top_p <= 1")
        if self.tis_cap < 0:
            raise UserError(f"tis_cap: expected >= 0 (0: no importance-sampling correction), got {self.tis_cap}")



# ---------------------------------------------------------------------------------------------


def length_batches(gen: Generation, rows: list[int], size: int, tokens: int = 0) -> list[list[int]]:
    """`rows` in micro-batches sorted by completion length, each padded only to its own longest.

    A micro-batch holds at most `size` rows and, if `tokens` > 0, at most `tokens` padded
    completion tokens (rows x its longest length; a single row may exceed it). Lengths within a
    rollout range from a few tokens to the limit, so sorting keeps padding small; the token budget
    cuts it further and keeps each micro-batch's activations small enough to stay in cache."""
    order = sorted(rows, key=lambda i: len(gen.completion_ids[i]))
    batches: list[list[int]] = []
    for i in order:
        n = len(gen.completion_ids[i])  # the longest so far, as `order` is sorted
        if batches and len(batches[-1]) < size and (not tokens or (len(batches[-1]) + 1) * n <= tokens):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


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
    cache = DynamicCache(config=model.config)
    with fused_modules(model):
        head = model(input_ids=ids, attention_mask=pmask, position_ids=ppos, past_key_values=cache,
                     use_cache=True, logits_to_keep=1).logits  # (P, 1, V): predicts each first token
    outputs = [head] + [t for layer in cache.layers for t in (layer.keys, layer.values)]
    inputs = [t.detach().requires_grad_(t.requires_grad) for t in outputs]
    return PromptPass(outputs, inputs, pmask)


def completion_logprobs(model, prompts: PromptPass, gen: Generation, chunk: list[int], pad: int):
    """Per-token log-probs of the completions `chunk`, run on top of their prompts' cache.

    Each completion gets its prompt's cached keys and values (a differentiable index into
    `prompts.inputs`); the log-prob of its first token comes from the prompt pass's last
    position. Same numbers as one forward over prompt+completion per row (tests/test_rl.py).
    Returns log-probs (B, Lc), logits (B, Lc, V) and the completion mask (B, Lc)."""
    device = prompts.mask.device
    owner = torch.tensor([i // gen.n for i in chunk], device=device)  # (B,) the prompt of each completion
    head, *kv = prompts.inputs
    cache = DynamicCache(config=model.config)
    for layer in range(len(kv) // 2):
        cache.update(kv[2 * layer][owner], kv[2 * layer + 1][owner], layer)
    completions = [gen.completion_ids[i] for i in chunk]
    Lc = max(map(len, completions))
    cids = torch.tensor([c + [pad] * (Lc - len(c)) for c in completions], device=device)  # (B, Lc) right-padded
    cmask = torch.tensor([[1] * len(c) + [0] * (Lc - len(c)) for c in completions], device=device)
    pmask = prompts.mask[owner]
    positions = pmask.sum(1)[:, None] + torch.arange(Lc, device=device)  # (B, Lc): continue each prompt
    with fused_modules(model):  # dense MLPs and RMSNorms: forward and backward in C (fused.py)
        body = model(input_ids=cids, attention_mask=torch.cat([pmask, cmask], 1), position_ids=positions,
                     past_key_values=cache, use_cache=True).logits  # (B, Lc, V)
    logits = torch.cat([head[owner], body[:, :-1]], dim=1)  # (B, Lc, V): position t predicts token t
    return token_logprobs(logits, cids), logits, cmask


def update_policy(model, ref, opt, gen, adv: torch.Tensor, rows: list[int], g: GRPOConfig, pad: int, step: int,
                  log=print) -> dict:
    """μ GRPO updates on the samples `rows` of a rollout; returns detached statistics.

    adv: (P*G,) per-sample advantages. Length-sorted micro-batches (`length_batches`) accumulate
    gradients, each distinct prompt computed once per micro-batch (`shared_prompt_logprobs`). The token
    weights are computed over all kept rows first, so neither the split into micro-batches nor
    their order changes the loss; with β = 0 a row whose advantage is exactly 0 has an exactly
    zero gradient and is not computed at all (it still counts in the weights' normalisation).
    tests/test_rl.py checks all of this against a plain implementation. An update whose loss or
    gradient norm is not finite (e.g. from a NaN reward) is skipped and counted in
    `skipped_steps` (guard.py); the learning-rate warm-up still counts its step."""
    stats = {"loss": 0.0, "clip_frac": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0, "skipped_steps": 0,
             "time_logprobs": 0.0}
    tis = gen.sampler_logprobs is not None and g.tis_cap > 0  # off-policy engine (vLLM): TIS
    if tis:  # the same on every rank, so every rank sums it below
        stats["is_weight_mean"] = 0.0
    device = model_device(model)
    lengths = torch.tensor([len(gen.completion_ids[i]) for i in rows], dtype=torch.long, device=device)
    # Under N ranks `rows` is this rank's share: the loss is normalised by the whole batch's
    # counts, and the gradients are summed across ranks below (distributed.py).
    n_rows, n_tokens = distributed.sum_across([len(rows), float(lengths.sum())])
    if not n_rows:
        return stats
    columns = torch.arange(int(lengths.max()) if rows else 0, device=device)
    tmask_all = columns[None, :] < lengths[:, None]  # (B, Lc) in `rows` order
    weights = token_weights(tmask_all, g.aggregation, g.max_new_tokens, int(n_rows), n_tokens)  # (B, Lc)
    index_of = {r: j for j, r in enumerate(rows)}
    adv_list = adv.tolist()  # one device-to-host copy, not one per row
    active = [i for i in rows if g.beta > 0 or adv_list[i] != 0]  # the rest contribute exactly nothing
    batches = length_batches(gen, active, g.micro_batch, g.micro_tokens)
    t0 = time.time()
    with torch.no_grad():  # π_ref and π_old log-probs: only β > 0 and μ > 1 need them
        def logprobs(m):
            prompts = prompt_pass(m, gen, pad)
            return [completion_logprobs(m, prompts, gen, b, pad)[0] for b in batches]
        ref_lp = logprobs(ref) if ref else None
        old_lp = logprobs(model) if g.mu > 1 else None
    stats["time_logprobs"] = time.time() - t0
    for group in opt.param_groups:
        group["lr"] = g.lr * min(1.0, (step + 1) / g.warmup_steps) if g.warmup_steps else g.lr
    for _ in range(g.mu):
        prompts = prompt_pass(model, gen, pad) if batches else None
        update_loss = 0.0
        for j, chunk in enumerate(batches):
            lp, logits, tmask = completion_logprobs(model, prompts, gen, chunk, pad)
            w = weights[[index_of[i] for i in chunk], : lp.shape[1]]
            old = old_lp[j] if old_lp else lp.detach()  # μ = 1: π_old is the current policy
            isw = None
            if tis:
                slp = torch.tensor([gen.sampler_logprobs[i] + [0.0] * (lp.shape[1] - len(gen.sampler_logprobs[i]))
                                    for i in chunk], device=device)  # (b, Lc), right-padded like lp
                isw = truncated_is_weights(old, slp, g.tis_cap) * tmask
                stats["is_weight_mean"] += float(isw.sum()) / n_tokens / g.mu
            loss, s = grpo_loss(lp, old, ref_lp[j] if ref_lp else None, adv[chunk], w, g.beta, g.eps_low, g.eps_high,
                                isw)
            loss.backward()
            share = float(tmask.sum()) / n_tokens / g.mu
            with torch.no_grad():
                logq = torch.log_softmax(logits.float(), -1)
                ent = -(logq.exp() * logq).sum(-1)  # (b, Lc)
                s["entropy"] = float((ent * tmask).sum() / tmask.sum().clamp(min=1))
            update_loss += float(loss.detach())
            stats["loss"] += float(loss.detach()) / g.mu
            for key in ("clip_frac", "kl", "entropy"):
                stats[key] += s[key] * share
        if prompts is not None:
            prompts.backward()  # the completions' gradients, through the one prompt pass
        distributed.sum_gradients(model.parameters())  # under N ranks: the whole batch's gradient
        if all(p.grad is None for p in model.parameters()):  # every advantage is 0 and β = 0: the gradient
            for p in model.parameters():  # is exactly zero, but the optimizer still steps (Adam's momentum moves on)
                p.grad = torch.zeros_like(p) if p.requires_grad else None
        update_loss = distributed.sum_across([update_loss])[0]  # so that every rank skips or none does
        # never apply a non-finite update (guard.py): skipped, counted, logged
        grad_norm, skipped = guarded_step(opt, model.parameters(), g.grad_clip, update_loss, log, f"grpo step {step + 1}")
        stats["skipped_steps"] += skipped
        stats["grad_norm"] = grad_norm
    keys = ("loss", "clip_frac", "kl", "entropy") + (("is_weight_mean",) if tis else ())  # each normalised by
    # the global batch: sums over ranks
    stats.update(zip(keys, distributed.sum_across([stats[k] for k in keys])))
    return stats


def group_seeds(seed: int, step: int, groups: range) -> tuple[int, ...]:
    """The sampling seed of each group (global prompt index) of a step: a function of (seed, step,
    group) only, so a rollout split across any number of ranks draws the same samples."""
    return tuple((seed * 7919 + step) * 1_000_003 + i for i in groups)


def grpo_step(model, ref, opt, sampler: Sampler, problems: list[Problem], prompts: list[str], reward_fns: dict,
              reward_weights: dict, g: GRPOConfig, pad: int, stop_ids: tuple[int, ...], seed: int | tuple[int, ...],
              step: int, log=print) -> tuple[dict, Generation]:
    """One GRPO step on `problems` (P of them, rendered as `prompts`); returns (record, rollout).

    `seed`: the rollout's sampling seed, or one per prompt (`group_seeds`). Under N ranks each
    passes its own share of the step's prompts; the update and the record cover the whole batch."""
    t0 = time.time()
    # --- rollout: G samples for each of P prompts ---
    params = SamplingParams(g.temperature, g.top_p, g.max_new_tokens, stop_ids, seed=seed)
    gen = sampler.generate(prompts, g.group_size, params)
    t_gen = time.time()

    # --- rewards and advantages ---
    grouped = [p for p in problems for _ in range(g.group_size)]
    per_fn = {name: fn(gen.texts, grouped) for name, fn in reward_fns.items()}
    rewards = torch.tensor(combine_rewards(per_fn, reward_weights), device=model_device(model)).view(
        len(problems), g.group_size)  # (P, G)
    adv = group_advantages(rewards, scale=g.scale_rewards)  # (P, G)
    spread = rewards.max(1).values > rewards.min(1).values  # (P,); False for a group holding a NaN
    keep = spread if g.drop_zero_spread else torch.ones_like(spread)
    # a NaN/inf reward (a broken reward function) would otherwise vanish into the zero-spread
    # drop unseen, or, without the drop, poison the whole step's update (then skipped by the guard)
    nonfinite = int((~torch.isfinite(rewards).all(1)).sum())
    if nonfinite:
        log(f"grpo step {step + 1}: {nonfinite} of {len(problems)} groups have a non-finite reward"
            + (" (dropped)" if g.drop_zero_spread else ""))
    t_score = time.time()

    # --- policy update ---
    keep_list = keep.tolist()
    rows = [i for i in range(len(gen.texts)) if keep_list[i // g.group_size]]
    stats = update_policy(model, ref, opt, gen, adv.flatten(), rows, g, pad, step, log)
    t_update = time.time()

    # the record describes the whole batch: under N ranks, every rank's share of it in order
    every = distributed.concat_across({
        "texts": gen.texts, "lengths": [len(c) for c in gen.completion_ids], "truncated": gen.truncated,
        "langs": [p.lang for p in grouped], "rewards": rewards.flatten().tolist(), "spread": spread.tolist(),
        **{f"reward/{k}": list(v) for k, v in per_fn.items()}})
    texts, lengths = every["texts"], every["lengths"]
    acc_list = every.get("reward/accuracy", [])
    record = {
        "step": step + 1,
        "reward": sum(every["rewards"]) / len(every["rewards"]),
        **{f"reward/{k}": sum(every[f"reward/{k}"]) / len(lengths) for k in per_fn},
        "accuracy": sum(acc_list) / len(acc_list) if acc_list else None,
        "format_rate": sum(every["reward/format"]) / len(lengths) if "format" in per_fn else None,
        "reasoning_rate": sum(style_of(t) == "reasoning" for t in texts) / len(lengths),
        "reflection_rate": sum(bool(REFLECTION_RE.search(t)) for t in texts) / len(lengths),
        "language_mixing": language_mixing(texts, every["langs"])["language_mixing"],
        "len_mean": sum(lengths) / len(lengths),
        "len_max": max(lengths),
        "truncation_rate": sum(every["truncated"]) / len(lengths),
        "zero_spread_frac": sum(not s for s in every["spread"]) / len(every["spread"]),
        "groups_nonfinite_reward": sum(not all(map(math.isfinite, every["rewards"][k : k + g.group_size]))
                                       for k in range(0, len(every["rewards"]), g.group_size)),
        **stats,
        "time_generate": t_gen - t0,
        "time_score": t_score - t_gen,
        "time_update": t_update - t_score - stats["time_logprobs"],
        "time_step": t_update - t0,
        "gen_tokens_per_s": sum(lengths) / max(gen.seconds, 1e-9),  # all ranks' tokens: they decode at once
    }
    return record, gen
