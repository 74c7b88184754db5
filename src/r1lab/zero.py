"""Stage R1-Zero: reinforcement learning straight from a base model (DeepSeek-R1 §2.2).

    r1lab zero [recipe.yaml] [key=value ...] [--resume]

1. Get the base: r1lab's own tiny DeepSeek-V3 (pretrained once, cached; see pretrain.py) or
   any Hugging Face causal LM directory (`base=path/to/model`).
2. Evaluate the base on the held-out test split, and gate: print its mix of styles (reasoning /
   direct answer / unformatted) and the accuracy of each, and refuse to start when the reasoning
   style is not reliably right (RL can select a behaviour; it cannot create one at this scale).
3. GRPO with rule-based rewards (accuracy + format) under the R1-Zero template, one flat loop:
   sample G completions per prompt, score them, group-normalised advantages, a clipped
   policy-gradient update with optional k3 KL to the frozen base.
4. Evaluate the final policy the same way; write summary.json and report.md with plots.

Departures from the paper, all for a CPU-sized run: a tiny model and a procedurally generated
task instead of DeepSeek-V3-Base on competition math; a much lower learning rate relative to
batch size than usual (the probe in issue 2 saw a larger first Adam step flip the style and
break the worked solutions); groups whose rewards are all equal are dropped from the update
(DAPO's dynamic-sampling filter, without re-sampling to refill the batch), since they carry no
gradient and only dilute the aggregation; β defaults to 0 (no reference model), as in DAPO and
Dr. GRPO, where R1-Zero used a small KL term (set `grpo.beta`).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from r1lab.config import config_to_dict, save_config
from r1lab.errors import UserError
from r1lab.evaluate import REFLECTION_RE, EvalResult, evaluate, style_of
from r1lab.grpo import AGGREGATIONS, group_advantages, grpo_loss, token_logprobs, token_weights
from r1lab.pretrain import PretrainConfig, pretrain
from r1lab.rewards import combine_rewards, get_reward
from r1lab.sampler import HFSampler, SamplingParams
from r1lab.tasks import apply_template, make_task, register_task


@dataclass
class DataConfig:
    task: str = "arithmetic"  # a built-in task, or "file" for `path`
    task_args: dict[str, int] = field(default_factory=lambda: {"digits": 4, "terms": 2})
    path: str | None = None  # JSONL / parquet / saved datasets dir, with task="file"
    question_field: str = "problem"
    answer_field: str = "answer"
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ja", "ko"])
    n_train: int = 20000  # size of the training prompt pool
    n_test: int = 100  # held-out problems for evaluation


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
    micro_batch: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 200

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
        if self.beta < 0:
            raise UserError(f"beta: expected >= 0, got {self.beta}")
        if not 0 <= self.eps_low <= self.eps_high:
            raise UserError(f"eps_high: expected 0 <= eps_low <= eps_high, got {self.eps_low} and {self.eps_high}")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature, top_p: expected temperature > 0 and 0 < top_p <= 1")


@dataclass
class EvalConfig:
    k: int = 8  # samples per problem: pass@1 averaged over k, cons@k, pass@k' for k' <= k
    base_pass_k: int = 64  # the base's pass@k curve up to this k (0: skip), on base_pass_k_problems
    base_pass_k_problems: int = 50
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 200

    def validate(self) -> None:
        if self.k < 1 or self.max_new_tokens < 1:
            raise UserError(f"k, max_new_tokens: expected >= 1, got {self.k} and {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature, top_p: expected temperature >= 0 and 0 < top_p <= 1")


@dataclass
class ZeroConfig:
    base: str = "builtin"  # "builtin": r1lab's tiny DeepSeek-V3 (pretrained, cached); else a HF model dir
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.1})
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: bool = True  # refuse to start RL when the base's reasoning style is not reliably right
    gate_min_accuracy: float = 0.5
    run_dir: str = "runs/zero-{time}"  # {time}: start time; --resume picks the newest match
    save_every: int = 10
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if not self.rewards:
            raise UserError("rewards: at least one reward function is needed")
        for name in self.rewards:
            get_reward(name)  # raises a UserError naming the choices


# ---------------------------------------------------------------------------------------------


def load_policy(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise UserError(f"base: '{path}' is not a Hugging Face model directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(p)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    return model, tok


def build_task(data: DataConfig):
    if data.task == "file":
        if not data.path:
            raise UserError("data.path: task 'file' needs a path to a JSONL/parquet file or datasets dir")
        task = make_task("file", path=data.path, question_field=data.question_field, answer_field=data.answer_field)
    else:
        task = make_task(data.task, **data.task_args)
    register_task(task)
    return task


def sequence_batch(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad: int):
    """Left-padded prompts + right-padded completions as one (B, Lp + Lc) batch.

    Returns input_ids, attention_mask, position_ids, completion targets (B, Lc) and their
    mask (B, Lc): the logits at positions Lp-1 .. Lp+Lc-2 predict the completion tokens."""
    Lp = max(len(p) for p in prompt_ids)
    Lc = max(len(c) for c in completion_ids)
    ids, mask, tgt, tmask = [], [], [], []
    for p, c in zip(prompt_ids, completion_ids):
        ids.append([pad] * (Lp - len(p)) + p + c + [pad] * (Lc - len(c)))
        mask.append([0] * (Lp - len(p)) + [1] * (len(p) + len(c)) + [0] * (Lc - len(c)))
        tgt.append(c + [pad] * (Lc - len(c)))
        tmask.append([1] * len(c) + [0] * (Lc - len(c)))
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions, torch.tensor(tgt), torch.tensor(tmask)


def completion_logprobs(model, ids, mask, positions, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of `targets` (B, Lc) and the logits they came from (B, Lc, V)."""
    Lc = targets.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=Lc + 1).logits
    logits = logits[:, :-1]  # (B, Lc, V): drop the prediction after the last token
    return token_logprobs(logits, targets), logits


def update_policy(model, ref, opt, gen, adv: torch.Tensor, rows: list[int], g: GRPOConfig, pad: int, step: int) -> dict:
    """μ GRPO updates on the samples `rows` of a rollout; returns detached statistics.

    adv: (P*G,) per-sample advantages. Micro-batches accumulate gradients; the token weights
    are computed over all kept rows first, so micro-batching does not change the loss."""
    stats = {"clip_frac": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0, "skipped_steps": 0}
    if not rows:
        return stats
    prompt_of = [gen.prompt_ids[i // gen.n] for i in rows]
    ids, mask, pos, tgt, tmask = sequence_batch(prompt_of, [gen.completion_ids[i] for i in rows], pad)
    advantages = adv[rows]  # (B,)
    weights = token_weights(tmask, g.aggregation, g.max_new_tokens)  # (B, Lc)
    chunks = [slice(i, i + g.micro_batch) for i in range(0, len(rows), g.micro_batch)]
    with torch.no_grad():
        ref_lp = [completion_logprobs(ref, ids[c], mask[c], pos[c], tgt[c])[0] for c in chunks] if ref else None
        old_lp = [completion_logprobs(model, ids[c], mask[c], pos[c], tgt[c])[0] for c in chunks] if g.mu > 1 else None
    for group in opt.param_groups:
        group["lr"] = g.lr * min(1.0, (step + 1) / g.warmup_steps) if g.warmup_steps else g.lr
    for _ in range(g.mu):
        for j, c in enumerate(chunks):
            lp, logits = completion_logprobs(model, ids[c], mask[c], pos[c], tgt[c])
            old = old_lp[j] if old_lp else lp.detach()  # μ = 1: π_old is the current policy
            loss, s = grpo_loss(lp, old, ref_lp[j] if ref_lp else None, advantages[c], weights[c],
                                g.beta, g.eps_low, g.eps_high)
            loss.backward()
            share = float(tmask[c].sum() / tmask.sum()) / g.mu
            with torch.no_grad():
                logq = torch.log_softmax(logits.float(), -1)
                ent = -(logq.exp() * logq).sum(-1)  # (b, Lc)
                s["entropy"] = float((ent * tmask[c]).sum() / tmask[c].sum().clamp(min=1))
            for key in ("clip_frac", "kl", "entropy"):
                stats[key] += s[key] * share
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), g.grad_clip)
        if torch.isfinite(grad_norm):
            opt.step()
        else:  # never apply a non-finite update
            stats["skipped_steps"] += 1
        opt.zero_grad(set_to_none=True)
        stats["grad_norm"] = float(grad_norm)
    return stats


def eval_model(sampler, problems, cfg: ZeroConfig, seed: int, k: int | None = None) -> EvalResult:
    params = SamplingParams(cfg.eval.temperature, cfg.eval.top_p, cfg.eval.max_new_tokens, seed=seed)
    return evaluate(sampler, problems, [apply_template(p.prompt) for p in problems], k or cfg.eval.k, params)


def print_eval(name: str, res: EvalResult, log) -> None:
    m = res.metrics
    styles = ", ".join(
        f"{s} {v['share']:.0%}" + (f" (acc {v['accuracy']:.0%})" if v["accuracy"] is not None else "")
        for s, v in m["styles"].items()
    )
    log(f"{name}: pass@1 {m['pass@1']:.3f}  cons@{res.k} {m[f'cons@{res.k}']:.3f}  pass@{res.k} "
        f"{m['pass@k'][str(res.k)]:.3f}  format {m['format_rate']:.2f}  length {m['mean_length']:.1f}  "
        f"styles: {styles}  [{res.seconds:.0f}s]")


def check_gate(res: EvalResult, cfg: ZeroConfig) -> None:
    r = res.metrics["styles"]["reasoning"]
    if r["accuracy"] is None or r["accuracy"] < cfg.gate_min_accuracy:
        acc = "never used" if r["accuracy"] is None else f"right {r['accuracy']:.0%} of the time"
        raise UserError(
            f"gate: the base model's reasoning style is {acc} (need >= {cfg.gate_min_accuracy:.0%}); "
            "RL can only select a behaviour the base already has. Pretrain longer or set gate=false"
        )


def save_checkpoint(run: Path, step: int, model, tok, opt) -> None:
    """Write checkpoint-<step> atomically (temp dir, then rename) and point `latest` at it.

    No RNG state is needed: prompt order and sampling seeds are functions of (seed, step)."""
    final = run / f"checkpoint-{step}"
    tmp = run / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": opt.state_dict()}, tmp / "trainer_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (run / "latest.tmp").write_text(final.name)
    (run / "latest.tmp").replace(run / "latest")


def resolve_run_dir(pattern: str, resume: bool) -> Path:
    """`pattern` with {time} filled in: now for a new run, the newest existing match to resume."""
    if "{time}" not in pattern:
        return Path(pattern)
    if resume:
        matches = sorted(Path().glob(pattern.replace("{time}", "*")))
        if not matches:
            raise UserError(f"--resume: no run matching '{pattern}' to resume; pass run_dir=")
        return matches[-1]
    return Path(pattern.replace("{time}", time.strftime("%Y%m%d-%H%M%S")))


def run_zero(cfg: ZeroConfig, resume: bool = False, log=print) -> dict:
    from r1lab.report import write_report
    from r1lab.runlog import RunLog

    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = resolve_run_dir(cfg.run_dir, resume)
    cfg.run_dir = str(run)
    if run.exists() and any(run.iterdir()) and not resume:
        raise UserError(f"run_dir: '{run}' already holds a run; pass --resume to continue it or choose another run_dir=")
    if resume and not (run / "latest").exists():
        raise UserError(f"--resume: no checkpoint in '{run}' to resume from")

    # Everything the user can get wrong is checked before any expensive work or any write.
    task = build_task(cfg.data)
    langs = tuple(cfg.data.langs)
    # A seed offset so that RL prompts are not the pretraining corpus's problems (same generator).
    train = task.problems("train", cfg.data.n_train, seed=cfg.seed + 1000, langs=langs)
    test = task.problems("test", cfg.data.n_test, seed=cfg.seed + 1, langs=langs)
    if not train or not test:
        raise UserError(f"data: need train and test problems, got {len(train)} train and {len(test)} test")

    base_path = pretrain(cfg.pretrain, log=log) if cfg.base == "builtin" else Path(cfg.base)
    model, tok = load_policy(base_path)
    sampler = HFSampler(model, tok)
    state_path = run / "state.json"
    if resume:
        state = json.loads(state_path.read_text())
        base_res_metrics, base_samples = state["base"], state["base_samples"]
    else:
        base_res = eval_model(sampler, test, cfg, seed=cfg.seed + 7)
        print_eval("base", base_res, log)
        if cfg.gate:
            check_gate(base_res, cfg)
        base_res_metrics = base_res.metrics
        if cfg.eval.base_pass_k > 0:
            # How many problems can the base solve at all, given many samples? Compared with the
            # final pass@1 this tells selection (RL sharpening what the base can already do)
            # from new capability (cf. the "does RL expand reasoning?" debate after R1).
            wide = eval_model(sampler, test[: cfg.eval.base_pass_k_problems], cfg, seed=cfg.seed + 11,
                              k=cfg.eval.base_pass_k)
            base_res_metrics["pass@k_large"] = wide.metrics["pass@k"]
            log(f"base: pass@{cfg.eval.base_pass_k} {wide.metrics['pass@k'][str(cfg.eval.base_pass_k)]:.3f} "
                f"on {len(wide.problems)} problems [{wide.seconds:.0f}s]")
        base_samples = [base_res.completions[i][0] for i in range(min(4, len(test)))]
        run.mkdir(parents=True, exist_ok=True)  # the run directory appears only once RL starts
        save_config(cfg, run / "config.yaml")
        state_path.write_text(json.dumps({"base": base_res_metrics, "base_samples": base_samples}))

    g = cfg.grpo
    ref = None
    if g.beta > 0:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, weight_decay=g.weight_decay, betas=(0.9, 0.99))
    start_step = 0
    if resume:
        ckpt = run / (run / "latest").read_text().strip()
        model_ckpt, _ = load_policy(ckpt)
        model.load_state_dict(model_ckpt.state_dict())
        if ref is not None:  # the reference stays the base; reload it from base_path
            ref = load_policy(base_path)[0].eval().requires_grad_(False)
        trainer_state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        opt.load_state_dict(trainer_state["optimizer"])
        start_step = trainer_state["step"]
        log(f"resume: from {ckpt} at step {start_step}")
    reward_fns = {name: get_reward(name) for name in cfg.rewards}
    stop_ids = tuple(i for i in [tok.convert_tokens_to_ids("</answer>")] if i is not None and i != tok.unk_token_id)
    logger = RunLog(run, resume=resume, total=g.steps, start=start_step)

    model.train()
    for step in range(start_step, g.steps):
        t0 = time.time()
        # --- rollout: G samples for each of P prompts (the order depends only on seed and step) ---
        rng = random.Random(cfg.seed * 1_000_003 + step)
        batch = rng.sample(train, min(g.prompts_per_step, len(train)))
        prompts = [apply_template(p.prompt) for p in batch]
        params = SamplingParams(g.temperature, g.top_p, g.max_new_tokens, stop_ids, seed=cfg.seed * 7919 + step)
        gen = sampler.generate(prompts, g.group_size, params)
        t_gen = time.time()

        # --- rewards and advantages ---
        problems = [p for p in batch for _ in range(g.group_size)]
        per_fn = {name: fn(gen.texts, problems) for name, fn in reward_fns.items()}
        rewards = torch.tensor(combine_rewards(per_fn, cfg.rewards)).view(len(batch), g.group_size)  # (P, G)
        adv = group_advantages(rewards, scale=g.scale_rewards)  # (P, G)
        spread = rewards.max(1).values > rewards.min(1).values  # (P,)
        keep = spread if g.drop_zero_spread else torch.ones_like(spread)
        t_score = time.time()

        # --- policy update ---
        rows = [i for i in range(len(gen.texts)) if keep[i // g.group_size]]
        stats = update_policy(model, ref, opt, gen, adv.flatten(), rows, g, tok.pad_token_id, step)
        t_update = time.time()

        # --- log ---
        lengths = [len(c) for c in gen.completion_ids]
        acc_list = per_fn.get("accuracy", [])
        record = {
            "step": step + 1,
            "reward": float(rewards.mean()),
            **{f"reward/{k}": sum(v) / len(v) for k, v in per_fn.items()},
            "accuracy": sum(acc_list) / len(acc_list) if acc_list else None,
            "format_rate": sum(per_fn["format"]) / len(lengths) if "format" in per_fn else None,
            "reasoning_rate": sum(style_of(t) == "reasoning" for t in gen.texts) / len(lengths),
            "reflection_rate": sum(bool(REFLECTION_RE.search(t)) for t in gen.texts) / len(lengths),
            "len_mean": sum(lengths) / len(lengths),
            "len_max": max(lengths),
            "truncation_rate": sum(gen.truncated) / len(lengths),
            "zero_spread_frac": float((~spread).float().mean()),
            **stats,
            "time_generate": t_gen - t0,
            "time_score": t_score - t_gen,
            "time_update": t_update - t_score,
            "time_step": t_update - t0,
            "gen_tokens_per_s": gen.num_tokens / max(gen.seconds, 1e-9),
        }
        logger.log(record)
        if (step + 1) % cfg.save_every == 0 or step + 1 == g.steps:
            save_checkpoint(run, step + 1, model, tok, opt)
    logger.close()

    final_res = eval_model(sampler, test, cfg, seed=cfg.seed + 7)
    print_eval("final", final_res, log)
    summary = {
        "base": base_res_metrics,
        "final": final_res.metrics,
        "base_model": str(base_path),
        "wall_seconds": time.time() - t_start,
        "first_mean_length": logger.history[0]["len_mean"] if logger.history else None,
        "last_mean_length": logger.history[-1]["len_mean"] if logger.history else None,
        "steps": g.steps,
        "config": config_to_dict(cfg),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    final_samples = [final_res.completions[i][0] for i in range(min(4, len(test)))]
    write_report(run, summary, logger.history, test[: len(final_samples)], base_samples, final_samples)
    log(f"zero: pass@1 {base_res_metrics['pass@1']:.3f} -> {final_res.metrics['pass@1']:.3f}, "
        f"wrote {run}/summary.json and {run}/report.md in {summary['wall_seconds']:.0f}s")
    return summary
