"""Supervised fine-tuning: DeepSeek-R1's cold start (stage 1), its rejection-sampling SFT (stage 3)
and distillation all train a causal LM on (prompt, completion) pairs.

    r1lab sft [recipe.yaml] data=FILE.jsonl [key=value ...] [--resume]

Data: JSONL, one example per line, either `{"prompt": ..., "completion": ...}` or
`{"messages": [{"role": "user", "content": ...}, ..., {"role": "assistant", "content": ...}]}`
(the last message is the completion, everything before it the prompt). Templates:
  * chat: the tokenizer's chat template (prompt rendered with the generation prompt, so the
    completion is exactly what the model is asked to generate);
  * r1zero: the R1-Zero template around the prompt (`tasks.prompts.apply_template`), the format
    r1lab's own base and RL stages use; with `messages`, the last user message is the prompt;
  * plain: the prompt text as given;
  * auto (default): chat if the tokenizer has a chat template, else r1zero
(data/prompting.py resolves and renders them, as for evaluation).
The completion is followed by the tokenizer's EOS, so the model learns to stop.

Loss: token-level cross-entropy on completion tokens (and that EOS) only; prompt tokens and
padding carry no loss. The mean is over every completion token of an optimizer step, so a long
completion weighs in proportion to its length (as in the paper's SFT; TRL's default).

Packing: examples are packed into rows of at most `seq_len` tokens by first-fit decreasing,
position ids restarting at 0 for each example and no attention mask, which transformers turns
into a block-diagonal causal mask: an example never attends to another in its row (the result
equals training on each example alone; tests/stages/test_sft.py checks it). Examples longer than
`seq_len` are dropped and counted, not truncated, because a cut chain of thought would teach the
model to stop mid-thought. `pack=false` gives one example per row instead (padded).

Optimisation: AdamW (no weight decay on norms and biases), linear warm-up then cosine (or
constant) learning rate, gradient clipping, `epochs` passes over the data in a seeded order. A
step whose loss or gradient norm is not finite is skipped (runtime/guard.py) and counted in its record's
`skipped_steps`; the schedule counts it as a step. For
r1lab's DeepSeek-V3 base the expert-routing biases keep their auxiliary-loss-free update, as in
pretraining. A checkpoint (the model in Hugging Face format, with the optimizer state and the
records so far; under `parallel=fsdp2`, each rank's optimizer shard, which resumes under the same
number of ranks; runtime/checkpoint.py) is written to `run_dir/checkpoint-<step>` every `save_every` steps
and at the end of every epoch, atomically (a temporary directory, fsync, rename); once training is
done `run_dir/final` names the last one. `r1lab sft ... --resume` continues a killed run from its
newest usable checkpoint to the same weights and per-step records as an uninterrupted run; SIGTERM
checkpoints the step under way first and exits 143 (runtime/preempt.py).
With `lora.r` > 0 only LoRA adapters train (runtime/lora.py), and each checkpoint holds the merged model
plus the adapters in `adapter/`. `device` and `dtype` place the model (runtime/device.py); `dtype=bfloat16`
trains bfloat16 weights directly (no float32 master copy: a step below half a weight's bfloat16
spacing, |w|/512 to |w|/256, rounds away), so float32 is the default.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from r1lab.data.prompting import adds_special_tokens, chat_template_to_save, render_prompt, resolve_template
from r1lab.errors import UserError
from r1lab.model.architecture import RouterLoadTracker
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.runtime import distributed, preempt
from r1lab.runtime.card import write_model_card
from r1lab.runtime.checkpoint import resume as resume_from
from r1lab.runtime.checkpoint import save_checkpoint, save_sharded_checkpoint
from r1lab.runtime.config import at_least, check_config, config_to_dict, save_config
from r1lab.runtime.device import check as check_device
from r1lab.runtime.device import model_device
from r1lab.runtime.files import hub_rows, is_hub_id, read_jsonl, write_atomically
from r1lab.runtime.guard import guarded_step
from r1lab.runtime.loading import load, resolve_model
from r1lab.runtime.lora import LoRAConfig, add_adapters
from r1lab.runtime.run import claim_run_dir, start_run
from r1lab.runtime.runlog import RunLog, check_report_to

IGNORE = -100  # label of tokens that carry no loss


@dataclass
class SFTConfig:
    base: str = "builtin"  # "builtin" (r1lab's pretrained tiny base) or a Hugging Face model directory
    data: str = ""  # JSONL of {prompt, completion} or {messages}
    template: Literal["auto", "chat", "r1zero", "plain"] = "auto"  # prompt format; auto: chat if the tokenizer has a chat template, else r1zero
    run_dir: str = "runs/sft-{time}"  # output directory; {time}: start time; --resume picks the newest match
    epochs: int = 2  # passes over the data (R1 §3 stage 3: two epochs)
    lr: float = 1e-4  # AdamW peak learning rate
    schedule: Literal["cosine", "constant"] = "cosine"  # learning rate after warm-up: cosine decay to min_lr_ratio × lr, or constant
    warmup_steps: int = 5  # linear warm-up optimizer steps
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # gradient-norm clip (> 0)
    seq_len: int = 1024  # tokens per packed row; longer examples are dropped
    rows_per_step: int = 8  # packed rows per optimizer step
    micro_rows: int = 4  # rows per forward/backward (gradient accumulation); memory, not results
    pack: bool = True  # pack several examples per row (loss masks keep them apart); false: one example per row
    max_examples: int = 0  # train on the first this many examples; 0: all
    save_every: int = 50  # optimizer steps between checkpoints (and one at each epoch's end)
    seed: int = 0  # seeds the shuffle and any random initialisation
    threads: int = 0  # torch CPU threads; 0: torch's default
    parallel: Literal["ddp", "fsdp2"] = "ddp"  # under torchrun: replicated weights, or sharded (runtime/distributed.py)
    device: str = "auto"  # auto (CUDA if present, cuda:LOCAL_RANK under torchrun, else cpu) | cpu | cuda | cuda:N
    dtype: Literal["float32", "bfloat16"] = "float32"  # the model's weights (runtime/device.py)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the built-in base (used when base=builtin)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # lora.r > 0: train adapters; checkpoints are merged
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # trackers that also get each step's metrics: tensorboard, wandb, trackio (or [])
    TRL_NAMES: ClassVar[dict[str, str]] = {  # TRL's SFTConfig names → these keys (docs/trl.md)
        "learning_rate": "lr", "num_train_epochs": "epochs", "max_length": "seq_len", "packing": "pack",
        "max_grad_norm": "grad_clip", "lr_scheduler_type": "schedule", "output_dir": "run_dir",
        "per_device_train_batch_size": "micro_rows", "save_steps": "save_every", "bf16": "dtype"}

    def validate(self) -> None:
        check_device(self)
        check_report_to(self.report_to)
        at_least(self, 0, "weight_decay", "seed")
        for name in ("epochs", "seq_len", "rows_per_step", "micro_rows", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.warmup_steps < 0 or self.max_examples < 0 or self.threads < 0:
            raise UserError("warmup_steps, max_examples, threads: expected >= 0")
        if not self.grad_clip > 0:  # a negative clip norm would flip the gradient's sign
            raise UserError(f"grad_clip: expected > 0, got {self.grad_clip}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"min_lr_ratio: expected a fraction in [0, 1], got {self.min_lr_ratio}")


# --- data -------------------------------------------------------------------------------------


@dataclass
class Example:
    prompt_ids: list[int]
    completion_ids: list[int]  # ends with EOS
    source: str  # FILE:LINE

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


def read_pairs(path: str | Path, limit: int = 0) -> list[tuple[str, object, str]]:
    """(source, prompt, completion) per JSONL line; the prompt is a string or a message list."""
    if not str(path):
        raise UserError("data: give the training data, data=FILE.jsonl ({prompt, completion} or {messages} per line)")
    pairs = []
    rows = hub_rows(str(path), None, "train") if is_hub_id(path) else (
        (f"{path}:{number}", row) for number, row in read_jsonl(path))
    for where, row in rows:
        if "messages" in row:
            msgs = row["messages"]
            ok = isinstance(msgs, list) and len(msgs) >= 2 and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs)
            if not ok or msgs[-1]["role"] != "assistant":
                raise UserError(f"{where}: 'messages' must be a list of {{role, content}} strings ending with an "
                                "assistant message")
            pairs.append((where, msgs[:-1], msgs[-1]["content"]))
        elif isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
            pairs.append((where, row["prompt"], row["completion"]))
        else:
            raise UserError(f"{where}: expected string fields 'prompt' and 'completion', or a 'messages' list")
        if limit and len(pairs) == limit:
            break
    if not pairs:
        raise UserError(f"{path}: no examples")
    return pairs


def tokenize_examples(pairs, template: str, tokenizer) -> list[Example]:
    """Token ids of each (prompt, completion); the completion ends with EOS. A chat-rendered prompt
    already holds its special tokens, so none are added to it."""
    if tokenizer.eos_token_id is None:
        raise UserError("base: the tokenizer has no EOS token, so the model could not learn to stop")
    prompts = [render_prompt(p, template, tokenizer) for _, p, _ in pairs]
    p_ids = tokenizer(prompts, add_special_tokens=adds_special_tokens(template))["input_ids"]
    c_ids = tokenizer([c for _, _, c in pairs], add_special_tokens=False)["input_ids"]
    return [Example(p, c + [tokenizer.eos_token_id], src) for (src, _, _), p, c in zip(pairs, p_ids, c_ids)]


def pack(examples: list[Example], seq_len: int) -> list[list[Example]]:
    """First-fit decreasing: each row holds examples whose lengths sum to at most `seq_len`."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for ex in sorted(examples, key=len, reverse=True):
        j = next((j for j, r in enumerate(room) if r >= len(ex)), None)
        if j is None:
            rows.append([ex])
            room.append(seq_len - len(ex))
        else:
            rows[j].append(ex)
            room[j] -= len(ex)
    return rows


def labels_of(ex: Example) -> list[int]:
    """IGNORE for the prompt, the completion's tokens after it. A completion with no prompt before
    it cannot have its first token predicted (no position precedes it within the example), so that
    token is IGNORE too, never predicted from a packed neighbour's last token."""
    labels = [IGNORE] * len(ex.prompt_ids) + ex.completion_ids
    labels[0] = IGNORE
    return labels


def collate(rows: list[list[Example]], pad: int, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, position_ids and labels on `device`, each (B, L), L the longest row. Each example restarts
    its positions at 0; labels are its completion tokens (shifted by the model's loss), IGNORE
    elsewhere. Padding at a row's end is a sequence of its own that carries no loss."""
    L = max(sum(map(len, r)) for r in rows)
    ids, pos, labels = [], [], []
    for r in rows:
        i = [t for ex in r for t in ex.prompt_ids + ex.completion_ids]
        p = [k for ex in r for k in range(len(ex))]
        y = [t for ex in r for t in labels_of(ex)]
        ids.append(i + [pad] * (L - len(i)))
        pos.append(p + list(range(L - len(p))))
        labels.append(y + [IGNORE] * (L - len(y)))
    return (torch.tensor(ids, device=device), torch.tensor(pos, device=device),
            torch.tensor(labels, device=device))


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of each labelled token given the positions before it, and the count.

    logits (B, L, V), labels (B, L): position t predicts token t + 1; IGNORE labels carry no loss."""
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def lr_at(step: int, total: int, cfg: SFTConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- training ---------------------------------------------------------------------------------


def train_sft(model, tok, examples: list[Example], cfg: SFTConfig, log=print, run: Path | None = None,
              resume: bool = False, info: dict | None = None) -> list[dict]:
    """Fine-tune `model` in place on `examples`; returns one record per optimizer step.

    With a `run` directory: each step's record is appended to run/metrics.jsonl, and a checkpoint
    (model, tokenizer, optimizer, records so far, `info` as sft.json) is written every
    `save_every` steps and at each epoch's end. `resume` continues from the newest usable one
    exactly: the learning rate is a function of the step, and each epoch's order comes from one
    generator seeded once, so replaying the shuffles of the epochs before gives the same order."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = pack(examples, cfg.seq_len) if cfg.pack else [[ex] for ex in examples]
    steps_per_epoch = math.ceil(len(rows) / cfg.rows_per_step)
    total = steps_per_epoch * cfg.epochs
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]  # LoRA: adapters only
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    history: list[dict] = resume_from(run, model, opt, log)["history"] if resume else []
    main = distributed.is_main()
    metrics = RunLog(run, history, total, "sft", cfg.report_to, config=config_to_dict(cfg)) if run and main else None  # rank 0 writes
    tracker = RouterLoadTracker(model)  # a no-op for models without DeepSeek-V3 routers
    chat_template = chat_template_to_save(info["template"], tok) if info else None  # the format trained on
    rng = random.Random(cfg.seed)
    rank, world = distributed.rank(), distributed.world_size()
    fsdp = world > 1 and cfg.parallel == "fsdp2"  # run_sft has sharded the model
    device = model_device(model)
    model.train()
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    step = 0
    for epoch in range(cfg.epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            if step < len(history):  # done before the checkpoint resumed from
                step += 1
                continue
            batch = [rows[i] for i in order[s * cfg.rows_per_step : (s + 1) * cfg.rows_per_step]]
            n_tokens = max(1, sum(t != IGNORE for r in batch for ex in r for t in labels_of(ex)))  # the whole batch's
            mine = [batch[i] for i in distributed.shard(len(batch), rank, world)]  # this rank's rows (all in 1 process)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            total_loss = 0.0
            # FSDP2 all-gathers weights in every forward, so every rank runs as many as rank 0
            # (which has the most rows); a rank out of rows runs one pad token with no loss.
            micro = math.ceil(len(distributed.shard(len(batch), 0, world)) / cfg.micro_rows) if fsdp else 0
            for j in range(0, max(len(mine), micro * cfg.micro_rows), cfg.micro_rows):
                part = mine[j : j + cfg.micro_rows]
                # no rows left (FSDP2): one pad token, which carries no loss (labels_of)
                ids, pos, labels = collate(part or [[Example([], [pad], "")]], pad, device)
                saved = None if part else [c.clone() for c in tracker.counts.values()]
                logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
                for c, before in zip(tracker.counts.values(), saved or []):  # the pad token's routing
                    c.copy_(before)  # is not part of the batch
                loss, _ = completion_loss(logits, labels)
                (loss * (world if fsdp else 1) / n_tokens).backward()  # (FSDP2 averages over ranks)
                total_loss += float(loss.detach())
            if fsdp:  # FSDP2 has reduce-scattered the gradients during backward
                distributed.drop_unused_grads(model.parameters())
            else:
                distributed.sum_gradients(model.parameters())
            distributed.sum_tensors_(list(tracker.counts.values()))  # the router bias sees the whole batch
            total_loss = distributed.sum_across([total_loss])[0]
            grad_norm, skipped = guarded_step(opt, model.parameters(), cfg.grad_clip, total_loss, log,
                                              f"sft step {step + 1}")
            tracker.update_router_bias(0.0 if skipped else 1e-3)  # a skipped step moves no router bias either
            step += 1
            record = {"step": step, "epoch": epoch + 1, "loss": total_loss / n_tokens, "lr": lr_at(step - 1, total, cfg),
                      "grad_norm": grad_norm, "skipped_steps": int(skipped), "tokens": n_tokens,
                      "seconds": time.time() - t0}
            history.append(record)
            if step % 10 == 0 or step == total:
                log(f"sft step {step}/{total} epoch {epoch + 1} loss {record['loss']:.4f} lr {record['lr']:.2e} "
                    f"[{record['seconds']:.0f}s]")
            if metrics:
                metrics.log(record)
            stop = preempt.requested()  # SIGTERM on any rank: a checkpoint at this step, then the end
            if run and (step % cfg.save_every == 0 or s == steps_per_epoch - 1 or stop):
                note = {**(info or {}), "epoch": epoch + 1, "step": step}
                if fsdp:  # every rank writes its optimizer shard; rank 0 the gathered weights
                    save_sharded_checkpoint(run, step, model, opt, tok, {"history": history}, note, "sft.json",
                                            chat_template=chat_template)
                elif main:
                    save_checkpoint(run, step, model, tok, {"optimizer": opt.state_dict(), "history": history},
                                    note, "sft.json", chat_template=chat_template)
            if run and stop:
                preempt.stop(run / f"checkpoint-{step}", run, metrics)
    tracker.remove()
    if metrics:
        metrics.close()
    return history


def run_sft(cfg: SFTConfig, resume: bool = False, log=print) -> Path:
    """The `r1lab sft` command: read and check the data, fine-tune, write checkpoints; returns
    the final checkpoint's directory. `resume`: continue the run in run_dir from its newest usable
    checkpoint (a finished run is left as it is)."""
    check_config(cfg)
    # under torchrun / accelerate: each rank trains on its share of every step's rows
    run, log = start_run(cfg.run_dir, resume, cfg.threads, log)
    main = distributed.is_main()
    if resume and (run / "final").exists():
        log(f"sft: {run} is finished; nothing to resume")
        return run / (run / "final").read_text()
    pairs = read_pairs(cfg.data, cfg.max_examples)  # every data mistake surfaces before any training
    base = distributed.main_first(lambda: pretrain(cfg.pretrain, log=log) if cfg.base == "builtin"
                                  else resolve_model(cfg.base))  # rank 0 downloads a hub id first
    model, tok = load(base, cfg.device, cfg.dtype)
    if cfg.lora.r:
        model = add_adapters(model, cfg.lora)
    if cfg.parallel == "fsdp2" and distributed.world_size() > 1:
        distributed.shard_model(model)
    template = resolve_template(cfg.template, tok)
    examples = tokenize_examples(pairs, template, tok)
    kept = [ex for ex in examples if len(ex) <= cfg.seq_len]
    if not kept:
        raise UserError(f"seq_len: every example is longer than {cfg.seq_len} tokens; raise seq_len")
    n_rows = len(pack(kept, cfg.seq_len)) if cfg.pack else len(kept)
    log(f"sft: {len(kept)} examples ({len(examples) - len(kept)} longer than {cfg.seq_len} tokens dropped), "
        f"{sum(len(ex.completion_ids) for ex in kept)} completion tokens, template {template}, "
        f"{n_rows} rows of <= {cfg.seq_len} tokens")
    if main:
        claim_run_dir(run, resume)  # made, locked (runtime/run.py) and checked again
        if not resume:
            save_config(cfg, run / "config.yaml")
    info = {"base": str(base), "data": cfg.data, "template": template, "examples": len(kept),
            "dropped_too_long": len(examples) - len(kept)}
    with preempt.watch():  # SIGTERM: the step under way finishes and is checkpointed (runtime/preempt.py)
        history = train_sft(model, tok, kept, cfg, log=log, run=run, resume=resume, info=info)
    distributed.barrier()  # rank 0 has written the last checkpoint
    if main:  # `final` appears only once training is done: it names the last epoch's checkpoint
        write_atomically(run / "final", (run / "latest").read_text())
    distributed.barrier()
    out = run / (run / "final").read_text()
    if not main:
        return out
    write_model_card(out, "r1lab sft", "Supervised fine-tuning (DeepSeek-R1 §3: the cold start and stage 3; §4: "
                     "distillation).", str(base), config_to_dict(cfg), f"`{cfg.data}`: {len(kept)} examples "
                     f"({info['dropped_too_long']} longer than {cfg.seq_len} tokens dropped), template {template}",
                     f"Training loss {history[0]['loss']:.4f} → {history[-1]['loss']:.4f} over {len(history)} "
                     "optimizer steps; no held-out evaluation in this command.")
    log(f"sft: loss {history[0]['loss']:.4f} -> {history[-1]['loss']:.4f} over {len(history)} steps, wrote {out}")
    return out
