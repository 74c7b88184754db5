"""A Bradley-Terry reward model for general prompts (DeepSeek-R1 §3, stage 4's preference rewards).

    r1lab rm [recipe.yaml] [data=PAIRS.jsonl] [base=DIR] [key=value ...] [--resume]

A sequence-classification head (one output: the score of the last token; runtime/loading.py,
`head="score"`) on a causal LM, trained on preference pairs with the Bradley-Terry loss
-log σ(r(prompt, chosen) - r(prompt, rejected)) (rl/reward_model.py). The text scored is the
prompt in the R1-Zero template followed by the response, as the policy sees and writes it.

Data: the built-in pairs (data/preferences.py: greetings, facts, harmful requests in four languages,
each preferred answer against wrong, unhelpful, other-language, harmful and repetitive ones) or
a JSONL of {"prompt", "chosen", "rejected"} lines. The built-in test split's pairs (prompts
never seen in training) measure the held-out ranking accuracy, reported with the run.

`device` and `dtype` place the model as in every trainer (runtime/device.py).

Departure from the paper: one reward model for helpfulness and harmlessness (the paper trains
preference models for each); stage 4 scores the summary and the whole response with it.

A batch whose loss or gradient norm is not finite is skipped (runtime/guard.py), counted in the epoch's
`skipped_steps` in rm.json's history, and logged. Each batch's record goes to run_dir/metrics.jsonl;
a checkpoint (runtime/checkpoint.py: weights, optimizer, records) is written every `save_every` batches,
and `--resume` continues a killed run from the newest usable one to the same weights (SIGTERM
writes one at the step under way's end, then exits 143: runtime/preempt.py).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from r1lab.data.preferences import PreferencePair, preference_pairs
from r1lab.data.prompting import chat_template_to_save
from r1lab.errors import UserError
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.rl.reward_model import bt_loss, pair_accuracy, scores
from r1lab.runtime import distributed, preempt
from r1lab.runtime.card import CARD_NAME, model_card
from r1lab.runtime.checkpoint import resume as resume_from
from r1lab.runtime.checkpoint import save_checkpoint, save_model
from r1lab.runtime.config import at_least, check_config, config_to_dict, save_config
from r1lab.runtime.device import check as check_device
from r1lab.runtime.device import model_device
from r1lab.runtime.files import read_jsonl, write_json
from r1lab.runtime.guard import guarded_step
from r1lab.runtime.loading import load, resolve_model
from r1lab.runtime.run import claim_run_dir, start_run
from r1lab.runtime.runlog import RunLog, check_report_to
from r1lab.tasks.prompts import apply_template


@dataclass
class RMConfig:
    base: str = "builtin"  # "builtin" (r1lab's pretrained tiny base) or a Hugging Face model directory
    data: str = ""  # JSONL of {prompt, chosen, rejected}; "" = the built-in pairs
    run_dir: str = "runs/rm-{time}"  # output directory; {time}: start time; --resume picks the newest match
    epochs: int = 6  # passes over the preference pairs
    lr: float = 3e-4  # AdamW learning rate, constant
    batch_pairs: int = 16  # preference pairs per optimizer step
    max_tokens: int = 256  # pairs whose longer text exceeds this are dropped
    save_every: int = 50  # batches (optimizer steps) between checkpoints, and one after the last
    seed: int = 0  # seeds the shuffle and the score head's initialisation
    threads: int = 0  # torch CPU threads; 0: torch's default
    device: str = "auto"  # auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (runtime/device.py)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the reward model's weights while training
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the built-in base (used when base=builtin)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # trackers that also get each step's metrics: tensorboard, wandb, trackio (or [])
    TRL_NAMES: ClassVar[dict[str, str]] = {  # TRL's RewardConfig names → these keys (docs/trl.md)
        "learning_rate": "lr", "num_train_epochs": "epochs", "max_length": "max_tokens", "output_dir": "run_dir",
        "per_device_train_batch_size": "batch_pairs", "save_steps": "save_every", "bf16": "dtype"}

    def validate(self) -> None:
        check_device(self)
        check_report_to(self.report_to)
        at_least(self, 0, "seed")
        for name in ("epochs", "batch_pairs", "max_tokens", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.threads < 0:
            raise UserError(f"threads: expected >= 0 (0: torch's default), got {self.threads}")


def read_pairs(path: str | Path) -> list[PreferencePair]:
    pairs = []
    for number, row in read_jsonl(path):
        if not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise UserError(f"{path}:{number}: expected string fields 'prompt', 'chosen' and 'rejected'")
        pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"], row.get("lang", ""), "user"))
    if not pairs:
        raise UserError(f"{path}: no preference pairs")
    return pairs


def train_rm(model, tok, pairs: list[PreferencePair], cfg: RMConfig, log=print, run: Path | None = None,
             resume: bool = False) -> list[dict]:
    """Train `model` in place; returns one record per epoch (pair-weighted mean loss, skipped steps).

    With a `run` directory: each batch's record is appended to run/metrics.jsonl and a checkpoint
    (model, optimizer, the records so far) is written every `save_every` batches and after the
    last. `resume` continues from the newest usable one exactly: each epoch's order comes from one
    generator seeded once, so replaying the shuffles of the epochs before gives the same order."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps: list[dict] = resume_from(run, model, opt, log)["steps"] if resume else []
    main = distributed.is_main()
    total = math.ceil(len(pairs) / cfg.batch_pairs) * cfg.epochs
    metrics = RunLog(run, steps, total, "rm", cfg.report_to, config=config_to_dict(cfg)) if run and main else None
    rng = random.Random(cfg.seed)
    t0 = time.time() - (steps[-1]["seconds"] if steps else 0.0)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for i in range(0, len(order), cfg.batch_pairs):
            if step < len(steps):  # done before the checkpoint resumed from
                step += 1
                continue
            batch = [pairs[j] for j in order[i : i + cfg.batch_pairs]]
            b = [batch[j] for j in distributed.shard(len(batch), distributed.rank(), distributed.world_size())]
            loss = torch.zeros((), device=model_device(model))
            if b:  # this rank's pairs; the mean is over the whole batch's (the gradients summed over ranks)
                both = scores(model, tok, [p.prompt for p in b] * 2, [p.chosen for p in b] + [p.rejected for p in b])
                loss = bt_loss(both[: len(b)], both[len(b) :]) * (len(b) / len(batch))
                loss.backward()
            distributed.sum_gradients(model.parameters())
            loss = torch.tensor(distributed.sum_across([float(loss.detach())])[0], device="cpu")  # a statistic
            _, skipped = guarded_step(opt, model.parameters(), 1.0, loss.detach(), log,
                                      f"rm epoch {epoch + 1} batch {i // cfg.batch_pairs + 1}")
            step += 1
            steps.append({"step": step, "epoch": epoch + 1, "loss": float(loss), "pairs": len(batch),
                          "skipped_steps": int(skipped), "seconds": time.time() - t0})
            if metrics:
                metrics.log(steps[-1])
            stop = preempt.requested()  # SIGTERM on any rank: a checkpoint at this step, then the end
            if main and run and (step % cfg.save_every == 0 or step == total or stop):  # written once
                save_checkpoint(run, step, model, tok, {"optimizer": opt.state_dict(), "steps": steps},
                                chat_template=chat_template_to_save("r1zero", tok))
            if run and stop:
                preempt.stop(run / f"checkpoint-{step}", run, metrics)
        r = epoch_records(steps)[-1]
        log(f"rm epoch {r['epoch']}/{cfg.epochs} loss {r['loss']:.4f} [{r['seconds']:.0f}s]")
    if metrics:
        metrics.close()
    return epoch_records(steps)


def epoch_records(steps: list[dict]) -> list[dict]:
    """Per-batch records -> one per epoch: the loss averaged over pairs, skipped batches, seconds."""
    epochs: dict[int, list[dict]] = {}
    for r in steps:
        epochs.setdefault(r["epoch"], []).append(r)
    return [{"epoch": e, "loss": sum(r["loss"] * r["pairs"] for r in rs) / sum(r["pairs"] for r in rs),
             "skipped_steps": sum(r["skipped_steps"] for r in rs), "seconds": rs[-1]["seconds"]}
            for e, rs in epochs.items()]


def run_rm(cfg: RMConfig, resume: bool = False, log=print) -> Path:
    """The `r1lab rm` command: train, measure held-out pair accuracy, save; returns the model dir.
    `resume`: continue the run in run_dir from its newest usable checkpoint (a finished run, one
    with run_dir/model, is left as it is)."""
    check_config(cfg)
    # under torchrun / accelerate: each rank scores its share of every batch's pairs
    run, log = start_run(cfg.run_dir, resume, cfg.threads, log)
    if resume and (run / "model").exists():
        log(f"rm: {run} is finished; nothing to resume")
        return run / "model"
    train = read_pairs(cfg.data) if cfg.data else preference_pairs("train", cfg.seed)
    held_out = preference_pairs("test", cfg.seed)
    base = distributed.main_first(lambda: pretrain(cfg.pretrain, log=log) if cfg.base == "builtin"
                                  else resolve_model(cfg.base))  # rank 0 downloads a hub id first
    torch.manual_seed(cfg.seed)  # the new score head's initialisation: reproducible, and the same on every rank
    model, tok = load(base, cfg.device, cfg.dtype, head="score")
    fits = lambda p: max(len(tok(apply_template(p.prompt) + " " + r)["input_ids"]) for r in (p.chosen, p.rejected)) <= cfg.max_tokens  # noqa: E731
    kept = [p for p in train if fits(p)]
    if not kept:
        raise UserError(f"max_tokens: every pair is longer than {cfg.max_tokens} tokens; raise max_tokens")
    before = pair_accuracy(model, tok, held_out)  # of the base, also on resume (before its checkpoint is loaded)
    log(f"rm: {len(kept)} training pairs ({len(train) - len(kept)} too long), {len(held_out)} held-out pairs; "
        f"held-out accuracy before training {before:.3f}")
    if distributed.is_main():
        claim_run_dir(run, resume)  # made, locked (runtime/run.py) and checked again
        if not resume:
            save_config(cfg, run / "config.yaml")
    with preempt.watch():  # SIGTERM: the step under way finishes and is checkpointed (runtime/preempt.py)
        history = train_rm(model, tok, kept, cfg, log, run=run, resume=resume)
    if not distributed.is_main():  # rank 0 measures and writes the model
        return run / "model"
    info = {"base": str(base), "data": cfg.data or "built-in", "pairs": len(kept), "held_out_pairs": len(held_out),
            "held_out_accuracy_before": before, "held_out_accuracy": pair_accuracy(model, tok, held_out),
            "train_accuracy": pair_accuracy(model, tok, kept), "history": history}
    write_json(run / "rm.json", info)
    card = model_card("r1lab rm", "A Bradley-Terry reward model (DeepSeek-R1 §3, stage 4's helpfulness and "
                      "harmlessness rewards).", str(base), config_to_dict(cfg), f"{cfg.data or 'the built-in pairs'}: "
                      f"{len(kept)} training pairs, {len(held_out)} held out",
                      f"Held-out pair accuracy {before:.3f} before training, {info['held_out_accuracy']:.3f} after "
                      f"(training pairs: {info['train_accuracy']:.3f}).")
    save_model(model, tok, run / "model", info, "rm.json", files={CARD_NAME: card},
               chat_template=chat_template_to_save("r1zero", tok))  # last: run/model marks the run finished
    log(f"rm: held-out pair accuracy {before:.3f} -> {info['held_out_accuracy']:.3f} "
        f"(train {info['train_accuracy']:.3f}), wrote {run / 'model'}")
    return run / "model"
