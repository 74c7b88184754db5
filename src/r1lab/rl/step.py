"""One GRPO step, shared by every RL stage: rollout, rule-based rewards, group advantages, update.

    record, gen = grpo_step(model, ref, opt, sampler, problems, prompts, reward_fns, weights, g, ...)

One call is one step of DeepSeek-R1 §2.2.1: sample G completions for each of P prompts through
the shared `Sampler`, score them with the reward functions, normalise rewards within each group
(`grpo.ADVANTAGES`, by name), drop the groups whose rewards are all equal (they carry no gradient;
DAPO's dynamic-sampling filter, without re-sampling) and take μ clipped policy-gradient steps
(update.py). It returns one metrics record (`step_record`; every key is listed with its meaning
in `RECORD_KEYS`) and the rollout. The R1-Zero stage and the pipeline's RL stages call it in their
loops; so does bench/grpo_vs_trl.py, so the benchmark times the very code the stages run.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import astuple, dataclass, replace
from typing import Callable, ClassVar

import torch

from r1lab.engine.params import SamplingConfig, sampling
from r1lab.engine.sampler import Generation, Sampler
from r1lab.errors import UserError
from r1lab.grading.language import language_mixing
from r1lab.grading.shape import REFLECTION_RE, style_of
from r1lab.rl.grpo import ADVANTAGES, AGGREGATIONS, LOSSES
from r1lab.rl.rewards import combine_rewards, overlong_penalty, score
from r1lab.rl.update import update_policy
from r1lab.runtime import distributed
from r1lab.runtime.config import at_least
from r1lab.runtime.device import model_device
from r1lab.tasks.attempts import attempt_metrics, attempts_of
from r1lab.tasks.base import Problem
from r1lab.tasks.signs import Attempts


@dataclass
class GRPOConfig:
    steps: int = 30  # GRPO steps, one rollout batch and its update(s) each (TRL: max_steps)
    prompts_per_step: int = 8  # prompts per step, each sampled group_size times
    group_size: int = 16  # G, samples per prompt whose rewards are normalised together (R1 §2.2.1; TRL: num_generations)
    lr: float = 5e-5  # AdamW learning rate, constant after warm-up
    warmup_steps: int = 0  # linear learning-rate warm-up steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # gradient-norm clip (> 0; TRL: max_grad_norm)
    beta: float = 0.0  # k3 KL coefficient to the reference (R1 §2.2.1, k3 estimator); 0 loads no reference model
    eps_low: float = 0.2  # PPO/GRPO clip range below 1 on the probability ratio (TRL: epsilon)
    eps_high: float = 0.2  # clip range above 1; > eps_low: DAPO clip-higher (DAPO: 0.28; TRL: epsilon_high)
    mu: int = 1  # policy updates per rollout batch (TRL: num_iterations); 1 needs no separate old-log-prob pass
    aggregation: str = "sequence_mean"  # loss over tokens: sequence_mean (GRPO) | token_mean (DAPO) | constant (Dr. GRPO); TRL: loss_type
    advantage: str = "grpo"  # estimator (grpo.ADVANTAGES): grpo (group z-score) | dr_grpo (centred, no std) | rloo (leave-one-out) | reinforce_pp (REINFORCE++-baseline: batch-normalised)
    loss: str = "ppo_clip"  # policy loss (grpo.LOSSES): ppo_clip (GRPO's per-token ratio) | gspo (sequence-level ratio) | cispo (clipped detached weights on a REINFORCE loss)
    drop_zero_spread: bool = True  # leave out groups whose rewards are all equal (their advantages are 0 anyway)
    # DAPO's length control (arXiv 2503.14476): the soft overlong punishment, a reward `overlong`
    overlong_buffer: int = 0  # tokens before sampling.max_new_tokens over which `overlong` falls from 0 to -1 (0: off; DAPO: 4096 of 20480)
    overlong_weight: float = 1.0  # the `overlong` reward's weight in the sum of rewards
    overlong_filter: bool = False  # DAPO's overlong filtering: truncated completions are left out of the loss
    resample_rounds: int = 0  # DAPO's dynamic sampling: zero-spread groups replaced by fresh prompts' groups, at most this many extra rounds (0: drop only)
    micro_batch: int = 64  # at most this many rows per forward/backward (memory only, never results)
    micro_tokens: int = 2048  # and at most this many padded completion tokens (0: no limit)
    sampling: SamplingConfig = sampling(temperature=1.0, top_p=1.0, max_new_tokens=200)  # how rollouts are sampled (R1-Zero: temperature 1)
    # truncated importance sampling cap C, used when the rollout carries the sampler's own
    # log-probs (rollout.backend=vllm): each token's loss × min(π_old / π_sampler, C); 0: off
    tis_cap: float = 2.0
    RENAMED: ClassVar[dict[str, str]] = {"temperature": "sampling.temperature", "top_p": "sampling.top_p",
                                         "max_new_tokens": "sampling.max_new_tokens",
                                         "scale_rewards": "advantage (true: grpo, false: dr_grpo)"}
    # TRL's GRPOConfig names → these keys (docs/trl.md has the table, with where values differ)
    TRL_NAMES: ClassVar[dict[str, str]] = {
        "num_generations": "group_size", "num_iterations": "mu", "loss_type": "aggregation", "learning_rate": "lr",
        "max_steps": "steps", "epsilon": "eps_low", "epsilon_high": "eps_high", "max_grad_norm": "grad_clip",
        "max_completion_length": "sampling.max_new_tokens", "generation_batch_size": "prompts_per_step",
        "per_device_train_batch_size": "micro_batch", "vllm_importance_sampling_cap": "tis_cap"}

    def validate(self) -> None:
        if self.group_size < 2:
            raise UserError(f"group_size: GRPO needs at least 2 samples per prompt, got {self.group_size}")
        if not self.lr > 0:
            raise UserError(f"lr: expected a positive learning rate, got {self.lr}")
        for name, known in (("aggregation", AGGREGATIONS), ("advantage", ADVANTAGES), ("loss", LOSSES)):
            if getattr(self, name) not in known:
                raise UserError(f"{name}: expected one of {sorted(known)}, got '{getattr(self, name)}'")
        for name in ("steps", "prompts_per_step", "mu", "micro_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.grad_clip > 0:  # a negative clip norm would flip the gradient's sign
            raise UserError(f"grad_clip: expected > 0, got {self.grad_clip}")
        if self.warmup_steps < 0:
            raise UserError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")
        at_least(self, 0, "weight_decay")
        if self.micro_tokens < 0:
            raise UserError(f"micro_tokens: expected >= 0 (0: no limit), got {self.micro_tokens}")
        if self.beta < 0:
            raise UserError(f"beta: expected >= 0, got {self.beta}")
        if not 0 <= self.eps_low <= self.eps_high:
            raise UserError(f"eps_high: expected 0 <= eps_low <= eps_high, got {self.eps_low} and {self.eps_high}")
        if not self.sampling.temperature > 0:
            raise UserError(f"sampling.temperature: expected > 0 (a group needs different samples), "
                            f"got {self.sampling.temperature}")
        if not 0 <= self.overlong_buffer <= self.sampling.max_new_tokens:
            raise UserError(f"overlong_buffer: expected 0..sampling.max_new_tokens ({self.sampling.max_new_tokens}), "
                            f"got {self.overlong_buffer}")
        at_least(self, 0, "overlong_weight")
        at_least(self, 0, "resample_rounds")
        if self.tis_cap < 0:
            raise UserError(f"tis_cap: expected >= 0 (0: no importance-sampling correction), got {self.tis_cap}")


def group_seeds(seed: int, step: int, groups: range) -> tuple[int, ...]:
    """The sampling seed of each group (global prompt index) of a step: a function of (seed, step,
    group) only, so a rollout split across any number of ranks draws the same samples."""
    return tuple((seed * 7919 + step) * 1_000_003 + i for i in groups)


def batch_moments(x: torch.Tensor) -> tuple[float, float]:
    """Mean and population std of `x` over the whole rollout batch, every rank's share included
    (so that an estimator normalising over the batch gives the same advantages under N ranks)."""
    n, total, squares = distributed.sum_across([float(x.numel()), float(x.sum()), float((x * x).sum())])
    mean = total / n
    return mean, max(squares / n - mean * mean, 0.0) ** 0.5


Refill = Callable[[int], tuple[list[Problem], list[str], tuple[int, ...]]]


def grpo_step(model, ref, opt, sampler: Sampler, problems: list[Problem], prompts: list[str], reward_fns: dict,
              reward_weights: dict, g: GRPOConfig, pad: int, stop_ids: tuple[int, ...], seed: int | tuple[int, ...],
              step: int, log=print, refill: Refill | None = None) -> tuple[dict, Generation]:
    """One GRPO step on `problems` (P of them, rendered as `prompts`); returns (record, rollout).

    `seed`: the rollout's sampling seed, or one per prompt (`group_seeds`). Under N ranks each
    passes its own share of the step's prompts; the update and the record cover the whole batch.
    `refill(round)`: fresh (problems, prompts, seeds) for DAPO's dynamic sampling with re-sampling
    (g.resample_rounds > 0): groups with zero reward spread are replaced by fresh prompts' groups,
    round after round, until P groups have spread or the rounds run out."""
    t0 = time.time()
    # --- rollout: G samples for each of P prompts, then rewards; fresh groups for the flat ones ---
    params = g.sampling.params(stop_ids, seed)
    params.logprobs = True  # the drawn tokens' log-probs: the drift metric (update.py)
    if g.overlong_buffer:  # DAPO's soft overlong punishment: a reward by length in tokens
        reward_weights = {**reward_weights, "overlong": g.overlong_weight}
    rounds = [scored_rollout(sampler, problems, prompts, params, reward_fns, reward_weights, g, step)]
    kept = [(0, k) for k in range(len(problems)) if rounds[0].spread[k]]
    while refill is not None and len(kept) < len(problems) and len(rounds) <= g.resample_rounds:
        more, more_prompts, seeds = refill(len(rounds))
        params = replace(params, seed=seeds)
        rounds.append(scored_rollout(sampler, more, more_prompts, params, reward_fns, reward_weights, g, step))
        kept += [(len(rounds) - 1, k) for k in range(len(more)) if rounds[-1].spread[k]]
    if len(rounds) > 1:  # the first P groups with spread, then (if too few) the first round's flat ones
        flat = [(0, k) for k in range(len(problems)) if not rounds[0].spread[k]]
        batch = merge_groups(rounds, (kept + flat)[: len(problems)])
    else:
        batch = rounds[0]
    gen, per_fn, problems = batch.gen, batch.per_fn, batch.problems
    grouped = [p for p in problems for _ in range(g.group_size)]
    rewards = torch.tensor(batch.rewards, device=model_device(model)).view(len(problems), g.group_size)  # (P, G)
    adv = ADVANTAGES[g.advantage](rewards, batch_moments)  # (P, G)
    spread = batch.spread  # (P,); False for a group holding a NaN
    # a NaN/inf reward (a broken reward function) would otherwise vanish into the zero-spread
    # drop unseen, or, without the drop, poison the whole step's update (then skipped by the guard)
    nonfinite = int((~torch.isfinite(rewards).all(1)).sum())
    if nonfinite:
        log(f"grpo step {step + 1}: {nonfinite} of {len(problems)} groups have a non-finite reward"
            + (" (dropped)" if g.drop_zero_spread else ""))
    t_gen = t0 + sum(r.seconds_generate for r in rounds)
    t_score = time.time()

    # --- policy update ---
    rows = [i for i in range(len(gen.texts)) if (spread[i // g.group_size] or not g.drop_zero_spread)
            and not (g.overlong_filter and gen.truncated[i])]  # DAPO's overlong filtering
    stats = update_policy(model, ref, opt, gen, adv.flatten(), rows, g, pad, step, log)
    t_update = time.time()

    # the record describes the whole batch: under N ranks, every rank's share of it in order
    attempts = [a and astuple(a) for a in attempts_of(gen.texts, grouped)]
    every = distributed.concat_across({"attempts": attempts,
        "texts": gen.texts, "lengths": [len(c) for c in gen.completion_ids], "truncated": gen.truncated,
        "langs": [p.lang for p in grouped], "rewards": rewards.flatten().tolist(),
        "spread": [s for r in rounds for s in r.spread],  # every group sampled, re-sampled ones included
        **{f"reward/{k}": list(v) for k, v in per_fn.items()}})
    times = {"time_generate": t_gen - t0, "time_score": t_score - t_gen,
             "time_update": t_update - t_score - stats["time_logprobs"], "time_step": t_update - t0,
             "gen_tokens_per_s": sum(every["lengths"]) / max(gen.seconds, 1e-9)}  # all ranks' tokens: decoded at once
    stats["overlong_filtered"] = sum(every["truncated"]) if g.overlong_filter else 0
    stats["generations"], stats["groups_kept"], stats["resample_rounds"] = resampling_stats(rounds, spread)
    return step_record(step, every, list(per_fn), g.group_size, stats, times), gen


@dataclass
class Scored:
    """One rollout round: its Generation, each reward function's values, the combined rewards, and
    per group whether its rewards differ."""
    gen: Generation
    problems: list[Problem]
    per_fn: dict[str, list]
    rewards: list[float]
    spread: list[bool]
    seconds_generate: float


def scored_rollout(sampler: Sampler, problems: list[Problem], prompts: list[str], params, reward_fns: dict,
                   reward_weights: dict, g: GRPOConfig, step: int) -> Scored:
    t0 = time.time()
    gen = sampler.generate(prompts, g.group_size, params)
    seconds = time.time() - t0
    grouped = [p for p in problems for _ in range(g.group_size)]
    per_fn = score(reward_fns, gen.texts, grouped, [p for p in prompts for _ in range(g.group_size)],
                   gen.completion_ids, step, g.steps)
    if g.overlong_buffer:
        per_fn["overlong"] = overlong_penalty([len(c) for c in gen.completion_ids], g.sampling.max_new_tokens,
                                              g.overlong_buffer)
    rewards = combine_rewards(per_fn, reward_weights)
    as_float32 = array("f", rewards)  # the values the update's float32 tensor holds
    groups = [as_float32[k:k + g.group_size] for k in range(0, len(rewards), g.group_size)]
    spread = [max(x) > min(x) and not any(map(math.isnan, x)) for x in groups]  # (P,); a NaN: no spread
    return Scored(gen, problems, per_fn, rewards, spread, seconds)


def merge_groups(rounds: list[Scored], picks: list[tuple[int, int]]) -> Scored:
    """The groups `picks` ((round, group) pairs) of several rounds, as one batch in that order."""
    G = rounds[0].gen.n
    samples = [(r, k * G + j) for r, k in picks for j in range(G)]
    def column(get):  # noqa: E306
        return [get(rounds[r])[i] for r, i in samples]
    gens = [r.gen for r in rounds]
    lp = (lambda r: r.gen.draw_logprobs) if all(x.draw_logprobs is not None for x in gens) else None
    slp = (lambda r: r.gen.sampler_logprobs) if all(x.sampler_logprobs is not None for x in gens) else None
    gen = Generation([rounds[r].gen.prompt_ids[k] for r, k in picks], column(lambda r: r.gen.completion_ids),
                     column(lambda r: r.gen.texts), column(lambda r: r.gen.truncated), G,
                     sum(x.seconds for x in gens), column(slp) if slp else None, column(lp) if lp else None)
    return Scored(gen, [rounds[r].problems[k] for r, k in picks],
                  {name: column(lambda r, name=name: r.per_fn[name]) for name in rounds[0].per_fn},
                  column(lambda r: r.rewards), [rounds[r].spread[k] for r, k in picks],
                  sum(r.seconds_generate for r in rounds))


def resampling_stats(rounds: list[Scored], spread: list[bool]) -> tuple[int, int, int]:
    """(samples generated, groups with spread in the batch, re-sampling rounds), over every rank."""
    generated, kept = distributed.sum_across([float(sum(len(r.gen.texts) for r in rounds)), float(sum(spread))])
    return int(generated), int(kept), int(distributed.max_across(float(len(rounds) - 1)))


RECORD_KEYS = {
    "step": "the step number, from 1",
    "reward": "mean total reward (the weighted sum of the reward functions) over the step's samples",
    "reward/<name>": "mean of each reward function's own value (over the samples it applies to: a TRL-style "
                     "function may return None)",
    "accuracy": "mean of the accuracy reward (None without one): the share of correct samples",
    "format_rate": "mean of the format reward (None without one)",
    "reasoning_rate": "share of samples that reason inside <think> (grading.shape.style_of)",
    "reflection_rate": "share of samples with a reflection phrase (grading.shape.REFLECTION_RE)",
    "self_check_rate": "share of samples that evaluated a candidate and compared it with the target (tasks/attempts.py; "
                       "None for a task that cannot tell a check)",
    "self_check_rate_reasoning": "the same among samples that reason", "attempts_mean": "candidates tried per sample",
    "first_candidate_accuracy": "share of samples whose first candidate was right",
    "rejection_rate": "share of samples that rejected at least one wrong candidate",
    "rejected_accuracy": "accuracy of the samples that rejected a wrong candidate (None without an accuracy reward)",
    "unrejected_accuracy": "accuracy of the other samples",
    "evaluation_accuracy": "share of written-out candidate evaluations that reach the candidate's true value",
    "language_mixing": "share of samples for zh/ja/ko prompts whose chain of thought mixes languages",
    "len_mean": "mean completion length in tokens", "len_max": "longest completion in tokens",
    "truncation_rate": "share of samples cut off at sampling.max_new_tokens",
    "zero_spread_frac": "share of the groups sampled (re-sampled ones included) whose rewards are all equal "
                        "(dropped from the update by default)",
    "overlong_filtered": "truncated samples left out of the loss (grpo.overlong_filter; 0 without it)",
    "generations": "samples generated this step, re-sampling rounds included",
    "groups_kept": "groups with reward spread in the step's batch (the ones that carry a gradient)",
    "resample_rounds": "extra rounds of fresh prompts sampled to replace zero-spread groups (grpo.resample_rounds)",
    "groups_nonfinite_reward": "groups holding a NaN or infinite reward",
    "loss": "the GRPO loss (mean over the μ updates)", "clip_frac": "share of tokens whose ratio was clipped",
    "kl": "mean k3 KL to the reference over the updated tokens (0 with β = 0)",
    "entropy": "the policy's mean per-token entropy over the updated tokens",
    "grad_norm": "gradient norm before clipping (the last of the μ updates)",
    "skipped_steps": "optimizer steps skipped for a non-finite loss or gradient (runtime/guard.py)",
    "is_weight_mean": "mean truncated importance weight (only with an off-policy engine, vLLM)",
    "drift_logp_mean": "rollout-vs-trainer drift: mean |trainer log-prob - the decoder's own log-prob| of the drawn "
                       "tokens, at the rollout temperature, over the updated tokens (update.Drift; None without them)",
    "drift_logp_max": "the largest such difference", "drift_kl": "k3 estimate of KL(sampler || trainer) per token",
    "time_logprobs": "seconds for the π_ref / π_old log-prob passes (β > 0, μ > 1)",
    "time_generate": "seconds of rollout", "time_score": "seconds of reward functions",
    "time_update": "seconds of the update, log-prob passes excluded", "time_step": "seconds of the whole step",
    "gen_tokens_per_s": "generated tokens per second of rollout",
}


def step_record(step: int, every: dict[str, list], reward_names: list[str], group_size: int, stats: dict,
                times: dict) -> dict:
    """The metrics record of one step (`RECORD_KEYS`) from the whole batch's per-sample values."""
    texts, lengths, rewards = every["texts"], every["lengths"], every["rewards"]
    n = len(lengths)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    mean_of = lambda xs: mean(known) if (known := [x for x in xs if x is not None]) else None  # noqa: E731  None: n/a
    return {
        "step": step + 1,
        "reward": mean(rewards),
        **{f"reward/{k}": mean_of(every[f"reward/{k}"]) for k in reward_names},
        "accuracy": mean(every["reward/accuracy"]) if "accuracy" in reward_names else None,
        "format_rate": mean(every["reward/format"]) if "format" in reward_names else None,
        "reasoning_rate": sum(style_of(t) == "reasoning" for t in texts) / n,
        "reflection_rate": sum(bool(REFLECTION_RE.search(t)) for t in texts) / n,
        **attempt_metrics([a and Attempts(*a) for a in every["attempts"]], [style_of(t) for t in texts],
                          [r > 0.5 for r in every["reward/accuracy"]] if "accuracy" in reward_names else None),
        "language_mixing": language_mixing(texts, every["langs"])["language_mixing"],
        "len_mean": mean(lengths),
        "len_max": max(lengths),
        "truncation_rate": sum(every["truncated"]) / n,
        "zero_spread_frac": sum(not s for s in every["spread"]) / len(every["spread"]),
        "groups_nonfinite_reward": sum(not all(map(math.isfinite, rewards[k : k + group_size]))
                                       for k in range(0, len(rewards), group_size)),
        **stats,
        **times,
    }
