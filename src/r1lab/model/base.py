"""The built-in base model: r1lab's own tiny DeepSeek-V3, pretrained on the synthetic corpus and cached.

    base_dir = pretrain(PretrainConfig())    # the cached directory, or pretraining first

Every stage whose `base` is "builtin" calls `pretrain`, and `r1lab pretrain` (stages/pretrain.py)
runs it as a command.

Not part of the R1 paper (which starts from DeepSeek-V3-Base); it exists so that the recipe
runs with nothing downloaded. Trains a byte-level BPE tokenizer and a tiny
`DeepseekV3ForCausalLM` on documents made from the task's *train* split (corpus.py), packed
whole into rows whose ends are filled with worked-solution openings and digit-fact drills
instead of padding, then saves both in Hugging Face format. The result is cached under `.cache/r1lab/base-<hash>` keyed by
the whole configuration, so a second `make demo` skips this stage. The directory appears only
once complete (written to a temporary name, fsynced, then renamed), with each step's record in its
metrics.jsonl. Checkpoints are written every `save_every` steps to `base-<hash>.partial`, and
pretraining the same config again after a crash (any command that needs this base) continues from
the newest usable one (runtime/checkpoint.py), to the same weights; SIGTERM writes a checkpoint at the
step under way's end and stops (runtime/preempt.py), to continue the same way. A step whose loss or gradient norm is
not finite is skipped (runtime/guard.py; its place in the learning-rate schedule is still used) and the
count is saved as `skipped_steps` in pretrain.json.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from r1lab.errors import Preempted, UserError
from r1lab.model.architecture import ModelConfig, RouterLoadTracker, build_model, count_parameters
from r1lab.model.corpus import (PLAIN_FRAME, CorpusConfig, build_documents, build_signs_documents, drill_text,
                                 verdict_drill_text, worked_lines)
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime import preempt
from r1lab.runtime.checkpoint import resume as resume_from
from r1lab.runtime.card import CARD_NAME, model_card
from r1lab.runtime.checkpoint import resume_candidates, save_checkpoint, save_model
from r1lab.runtime.config import at_least, config_to_dict, fractions
from r1lab.runtime.guard import guarded_step
from r1lab.runtime.runlog import RunLog, check_report_to
from r1lab.tasks import make_task
from r1lab.tasks.signs import expression

SIGNS_PROBLEMS = 15_000  # distinct signs problems the corpus draws its documents from (of ~20k train ones)
CACHE_VERSION = 7  # bump when corpus/model code changes in a way the config does not show


@dataclass
class PretrainConfig:
    task: str = "arithmetic"  # the task whose problems the corpus's arithmetic documents are made of
    task_args: dict[str, int] = field(default_factory=lambda: {"digits": 4, "terms": 2})  # that task's settings (arithmetic: digits per number, terms per sum)
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ja", "ko"])  # prompt languages of the corpus
    corpus: CorpusConfig = field(default_factory=CorpusConfig)  # what the pretraining documents are (model/corpus.py)
    model: ModelConfig = field(default_factory=ModelConfig)  # the base's architecture and size
    vocab_size: int = 1024  # BPE vocabulary trained on the corpus (>= 300)
    seq_len: int = 768  # tokens per training sequence (documents are packed; >= 64)
    batch_size: int = 8  # sequences per optimizer step
    steps: int = 1800  # optimizer steps (~15 min on 2 CPU cores at the defaults)
    lr: float = 3e-3  # AdamW peak learning rate, after warm-up, then cosine decay
    min_lr_ratio: float = 0.1  # the cosine schedule ends at lr × this, in [0, 1]
    warmup_steps: int = 50  # linear warm-up steps from 0 to lr
    weight_decay: float = 0.1  # AdamW decoupled weight decay (on matrices only)
    router_bias_rate: float = 1e-3  # DeepSeek-V3's auxiliary-loss-free load balancing: expert bias step per update
    seed: int = 0  # seeds the corpus, the initial weights and the batches (the cached base is keyed on it)
    threads: int = 0  # torch CPU threads; 0: torch's default
    save_every: int = 200  # steps between checkpoints (in <cache dir>/base-<hash>.partial)
    cache_dir: str = ".cache/r1lab"  # where pretrained bases are cached, keyed by a hash of this config
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # trackers that also get each step's metrics: tensorboard, wandb, trackio (or [])

    def validate(self) -> None:
        for name, low in (("steps", 1), ("batch_size", 1), ("seq_len", 64), ("vocab_size", 300), ("save_every", 1)):
            if getattr(self, name) < low:
                raise UserError(f"{name}: expected >= {low}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.threads < 0:
            raise UserError(f"threads: expected >= 0 (0: torch's default), got {self.threads}")
        check_report_to(self.report_to)
        at_least(self, 0, "warmup_steps", "weight_decay", "router_bias_rate", "seed")
        fractions(self, "min_lr_ratio")
        self.model.validate()


def cache_key(cfg: PretrainConfig) -> str:
    d = config_to_dict(cfg)
    d.pop("cache_dir"), d.pop("threads"), d.pop("save_every"), d.pop("report_to")  # none changes the weights
    if d["model"]["arch"] == "deepseek_v3":  # keys from before the dense archs existed stay valid
        d["model"].pop("arch"), d["model"].pop("num_kv_heads")
    blob = json.dumps({"v": CACHE_VERSION, "cfg": d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def base_dir(cfg: PretrainConfig) -> Path:
    return Path(cfg.cache_dir) / f"base-{cache_key(cfg)}"


def pack_rows(docs: list[list[int]], seq_len: int, filler: Callable[[int], list[int]]) -> torch.Tensor:
    """Greedily pack whole documents into rows of `seq_len + 1` tokens. (rows, seq_len + 1)

    Documents are never cut: a cut document would teach the model to continue a scratchpad
    whose problem it cannot see. The space left at the end of a row is not padding but
    `filler(n)`, n tokens of digit-fact drill, so no compute is spent on pad tokens."""
    rows, cur = [], []
    for d in docs:
        d = d[: seq_len + 1]
        if len(cur) + len(d) > seq_len + 1:
            rows.append(cur + filler(seq_len + 1 - len(cur)))
            cur = []
        cur = cur + d
    if cur:
        rows.append(cur + filler(seq_len + 1 - len(cur)))
    return torch.tensor(rows, dtype=torch.long)


def make_filler(problems: list, tok, rng: random.Random, signs: list | None = None) -> Callable[[int], list[int]]:
    """Row-end filler: openings of worked solutions (problem, first register line, first fact),
    then digit-fact drills. The two skills a tiny model learns last are copying the operands
    out of the prompt and the digit-sum table; a full worked document practises the first only
    once per ~180 tokens, an opening once per ~45. With `signs` problems, a third of the openings are
    theirs (a guessed candidate copied from the prompt, its first register line and fact) and a
    third are drills of a check's verdict read off its difference register (`verdict_drill_text`)."""
    signs = signs or []
    ops = sorted({op for p in problems for op in p.meta.get("ops", ["+"])} | ({"+", "-"} if signs else set()))
    with_operands = [p for p in problems if "operands" in p.meta]

    def opening() -> list[int]:
        u = rng.random() if signs else 1.0
        if u < 1 / 3:
            return tok(verdict_drill_text(rng, 4) + "\n")["input_ids"]
        if u < 2 / 3:
            p = rng.choice(signs)
            pattern = [rng.choice("+-") for _ in p.meta["numbers"][1:]]
            lines, _ = worked_lines(p.meta["numbers"], pattern, grow=False)
            lines = [f"try {expression(p.meta['numbers'], pattern)}", *lines[:2]]
        else:
            p = rng.choice(with_operands)
            lines = worked_lines(p.meta["operands"], p.meta["ops"])[0][:2]
        return tok(PLAIN_FRAME.format(prompt=p.prompt) + "<think>\n" + "\n".join(lines) + "\n")["input_ids"]

    def filler(n: int) -> list[int]:
        out: list[int] = []
        while with_operands and n - len(out) >= 60:
            out += opening()
        rest = n - len(out)
        if rest > 1:
            out += ([tok.bos_token_id] + tok(drill_text(ops, rng, rest // 8 + 1), add_special_tokens=False)["input_ids"])
        return (out + [tok.eos_token_id] * n)[:n]

    return filler


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(cfg: PretrainConfig, log=print) -> Path:
    """Train (or find in the cache) the base model; returns its directory. One process trains a
    given config at a time (a lock file); another asking for it waits, then reads the cache."""
    out = base_dir(cfg)
    if (out / "config.json").exists():
        log(f"pretrain: cached base model {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the OS if this process dies
        if (out / "config.json").exists():
            log(f"pretrain: cached base model {out}")
            return out
        with preempt.watch():  # SIGTERM: the step under way finishes and is checkpointed (runtime/preempt.py)
            return train_base(cfg, out, log)


def train_base(cfg: PretrainConfig, out: Path, log=print) -> Path:
    """Pretrain into `out`. Checkpoints go to `<out>.partial` every `save_every` steps, and a run
    killed mid-way continues from the newest usable one when pretraining the same config again
    (the directory is keyed by the whole config, so they can only be this run's), to the same
    weights as an uninterrupted run; the data order is the permutation and position saved with it."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    task = make_task(cfg.task, **cfg.task_args)
    n_problems = cfg.corpus.n_docs
    problems = task.problems("train", n_problems, seed=cfg.seed, langs=tuple(cfg.langs))
    docs = build_documents(problems, cfg.corpus, seed=cfg.seed)
    signs = []
    if cfg.corpus.signs.n_docs:  # the aha-moment task (tasks/signs.py), English prompts
        signs_task = make_task("signs", n_numbers=cfg.corpus.signs.n_numbers)
        signs = signs_task.problems("train", min(cfg.corpus.signs.n_docs, SIGNS_PROBLEMS), seed=cfg.seed)
        docs += build_signs_documents(signs, cfg.corpus.signs, seed=cfg.seed)
    sample = docs[:4000] + docs[n_problems : n_problems + 1000]  # both tasks' words in the vocabulary
    tok = train_tokenizer((p + c for p, c in sample), vocab_size=cfg.vocab_size)
    eos = tok.eos_token_id
    prompt_ids = tok([p for p, _ in docs])["input_ids"]
    completion_ids = tok([c for _, c in docs], add_special_tokens=False)["input_ids"]
    token_docs = [p + c + [eos] for p, c in zip(prompt_ids, completion_ids)]
    random.Random(cfg.seed).shuffle(token_docs)
    filler = make_filler(problems, tok, random.Random(cfg.seed + 1), signs)
    data = pack_rows(token_docs, cfg.seq_len, filler)
    n_tokens = data.numel()
    log(f"pretrain: {len(docs)} documents, {n_tokens / 1e6:.2f}M tokens in {len(data)} rows (row ends filled with drills), "
        f"vocab {len(tok)}, corpus built in {time.time() - t0:.0f}s")

    def fresh():
        model = build_model(cfg.model, len(tok), tok.pad_token_id, tok.bos_token_id, eos, seed=cfg.seed)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )
        return model, opt

    model, opt = fresh()
    total, active = count_parameters(model)
    log(f"pretrain: {type(model).__name__} {total / 1e6:.2f}M parameters ({active / 1e6:.2f}M active)")
    gen = torch.Generator().manual_seed(cfg.seed)
    order, seen, history = torch.randperm(len(data), generator=gen), 0, []
    work = out.with_name(out.name + ".partial")
    if resume_candidates(work):
        try:
            state = resume_from(work, model, opt, log)
            order, seen, history = state["order"], state["seen"], state["history"]
            gen.set_state(state["gen"])
        except UserError as e:  # nothing usable: start over (the model may hold a half-loaded checkpoint)
            log(f"pretrain: {e}; starting over")
            model, opt = fresh()
    if not history:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    metrics = RunLog(work, history, total=cfg.steps, bar="pretrain", report_to=cfg.report_to, config=config_to_dict(cfg))
    history = metrics.history  # the records so far, extended by every `metrics.log`
    tracker = RouterLoadTracker(model)
    model.train()
    t_train = time.time()
    for step in range(len(history), cfg.steps):
        if seen + cfg.batch_size > len(order):  # next epoch
            order, seen = torch.randperm(len(data), generator=gen), 0
        batch = data[order[seen : seen + cfg.batch_size]]
        seen += cfg.batch_size
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        inputs, targets = batch[:, :-1], batch[:, 1:].clone()
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        _, skipped = guarded_step(opt, model.parameters(), 1.0, loss.detach(), log, f"pretrain step {step}")
        imbalance = tracker.update_router_bias(0.0 if skipped else cfg.router_bias_rate)  # skipped: no bias move either
        metrics.log({"step": step + 1, "loss": loss.item(), "lr": lr_at(step, cfg), "skipped_steps": int(skipped)})
        if step % 50 == 0 or step == cfg.steps - 1:
            el = time.time() - t_train
            load = f"expert-load max/mean {imbalance:.2f} " if tracker.counts else ""
            log(f"pretrain step {step:4d}/{cfg.steps} loss {loss.item():.4f} lr {lr_at(step, cfg):.2e} {load}{el:.0f}s")
        stop = preempt.requested(across_ranks=False)  # SIGTERM: a checkpoint at this step, then the end
        if ((step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps) or stop:
            save_checkpoint(work, step + 1, model, tok, {"optimizer": opt.state_dict(), "history": history,
                                                         "order": order, "seen": seen, "gen": gen.get_state()})
        if stop:  # (rank 0 alone pretrains, so no other rank is asked or waited for)
            metrics.close()
            raise Preempted(work / f"checkpoint-{step + 1}", None)
    tracker.remove()
    metrics.close()

    losses = [r["loss"] for r in history]
    info = {"config": config_to_dict(cfg), "tokens": n_tokens, "seconds": time.time() - t0,
            "final_loss": sum(losses[-20:]) / len(losses[-20:]), "skipped_steps": sum(r["skipped_steps"] for r in history),
            "parameters": total, "active": active}

    card = model_card("r1lab pretrain", f"r1lab's tiny {cfg.model.arch} base ({total / 1e6:.2f}M parameters, "
                      f"{active / 1e6:.2f}M active), pretrained from scratch on its synthetic corpus.", "none (from scratch)",
                      info["config"], f"the built-in corpus ({cfg.corpus.n_docs} arithmetic and {cfg.corpus.signs.n_docs} "
                      f"signs documents, prompts in {', '.join(cfg.langs)}), {n_tokens} tokens",
                      f"Final training loss {info['final_loss']:.4f} (mean of the last 20 steps) after {cfg.steps} steps.")
    save_model(model, tok, out, info, "pretrain.json", files={"metrics.jsonl": (work / "metrics.jsonl").read_text(),
                                                              CARD_NAME: card})
    shutil.rmtree(work)  # the checkpoints of a finished pretraining are not needed
    log(f"pretrain: saved {out} in {time.time() - t0:.0f}s")
    return out
