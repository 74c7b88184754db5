"""Crash-safe checkpoints and run directories, shared by every training command (zero, sft, rm,
pretrain).

A checkpoint is a directory `checkpoint-<step>`: the model (and tokenizer) in Hugging Face format
and `trainer_state.pt`, which holds the step, the optimizer state, the global RNG states and
whatever else the loop needs to continue exactly (each loop's learning rate is a function of the
step; the data order is a function of the seed and the step, or saved with the checkpoint).
It is written to a temporary directory, every file fsynced, then renamed, and `latest` (itself
replaced atomically) names it: a run killed at any moment leaves only complete checkpoints, and
`latest` names the newest or the one before.

On resume, a checkpoint that fails to load (truncated, missing a file, corrupt: a copy gone wrong,
a filesystem without atomic rename, bit rot) is named in one line and the one before it is tried.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from r1lab.runtime.device import to_cpu
from r1lab.errors import UserError
from r1lab.runtime.lora import is_lora, load_weights, save_weights


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_dir_atomically(out: Path, fill: Callable[[Path], None]) -> Path:
    """`fill(tmp)` writes a temporary directory, which is fsynced and renamed to `out`: `out` is
    never seen half-written (an older `out` is replaced)."""
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    for f in tmp.rglob("*"):
        if f.is_file():
            fsync(f)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    fsync(out.parent)
    return out


def write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    fsync(tmp)
    tmp.replace(path)
    fsync(path.parent)


def rng_state() -> dict:
    """The global RNG states. The loops draw their data order and sampling seeds from their own
    seeded generators, but dropout or a user's reward function may draw from these. With CUDA,
    the CUDA generators' states too (CPU tensors, like the rest of trainer_state.pt)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(run: Path, step: int, model, tok, state: dict, info: dict | None = None,
                    info_name: str = "info.json", state_dict: dict | None = None) -> Path:
    """Write run/checkpoint-<step> atomically and point run/latest at it. `state` (the optimizer's
    state dict and whatever else the loop resumes from) goes to trainer_state.pt with the step and
    the RNG states; `info`, if given, to `info_name` (a human-readable note of what this is);
    `state_dict`: the weights to write instead of the model's own (an FSDP2 model's gathered ones)."""

    def fill(tmp: Path) -> None:
        save_weights(model, tmp, state_dict)  # a LoRA model: the merged weights, and the adapters in adapter/
        tok.save_pretrained(tmp)
        # tensors on the CPU (a CUDA optimizer state's too): the file loads on any machine, and
        # `opt.load_state_dict` moves the state back to its parameters' device
        torch.save(to_cpu({**state, "step": step, "rng": rng_state()}), tmp / "trainer_state.pt")
        if info is not None:
            (tmp / info_name).write_text(json.dumps(info, indent=2))

    out = write_dir_atomically(run / f"checkpoint-{step}", fill)
    write_text_atomically(run / "latest", out.name)
    return out


def checkpoint_step(path: Path) -> int | None:
    number = path.name[len("checkpoint-"):]
    return int(number) if path.name.startswith("checkpoint-") and number.isdigit() else None


def resume_candidates(run: Path) -> list[Path]:
    """The checkpoints to try on resume, best first: the one `latest` names, then every
    checkpoint-N below it, newest first (all of them when `latest` is missing or unreadable)."""
    found = sorted((p for p in run.glob("checkpoint-*") if checkpoint_step(p) is not None),
                   key=checkpoint_step, reverse=True)
    try:
        named = run / (run / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return found
    top = checkpoint_step(named)
    if top is None:
        return found
    return [named] + [p for p in found if checkpoint_step(p) < top]


def load_checkpoint(ckpt: Path, model) -> dict:
    """Load `ckpt`'s weights into `model` (in place) and return its trainer state; raises on a
    missing, truncated or corrupt file."""
    if not ckpt.is_dir():
        raise FileNotFoundError(f"{ckpt} does not exist")
    for name in ("config.json", "trainer_state.pt"):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"{name} is missing")
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False, map_location="cpu")
    if not isinstance(state, dict) or not {"step", "optimizer", "rng"} <= state.keys():
        raise ValueError("trainer_state.pt lacks step/optimizer/rng")
    base = model.get_base_model() if is_lora(model) else model
    # the same class: same keys, same layout; load_state_dict copies into the model's device and dtype
    saved = type(base).from_pretrained(ckpt, dtype=torch.float32)
    load_weights(model, ckpt, saved)  # a LoRA model: its adapters only, from ckpt/adapter
    return state


def resume(run: Path, model, opt, log=print) -> dict:
    """Load the newest usable checkpoint of `run` into `model` and `opt`, restore the RNG states,
    and return its trainer state; UserError when no checkpoint is usable."""
    for ckpt in resume_candidates(run):
        try:
            state = load_checkpoint(ckpt, model)
            opt.load_state_dict(state["optimizer"])
            break
        except Exception as e:  # noqa: BLE001 -- any load failure means "unusable checkpoint"
            why = (str(e).splitlines() or [""])[0][:200]
            log(f"resume: checkpoint {ckpt} is unusable ({type(e).__name__}: {why}); trying the previous one")
    else:
        raise UserError(f"--resume: no loadable checkpoint in '{run}' (all checkpoint-N are missing files or corrupt)")
    set_rng_state(state["rng"])
    log(f"resume: from {ckpt} at step {state['step']}")
    return state


def open_metrics(run: Path, history: list[dict]):
    """run/metrics.jsonl holding exactly `history` (on resume: the resumed checkpoint's records,
    so that lines of steps to be redone, or torn by a crash, are gone), open to append a line a step."""
    write_text_atomically(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    return (run / "metrics.jsonl").open("a")


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


def check_run_dir(run: Path, resume: bool) -> None:
    """A new run needs an empty (or no) run_dir; a resumed one needs a checkpoint in it."""
    if run.exists() and any(run.iterdir()) and not resume:
        raise UserError(f"run_dir: '{run}' already holds a run; pass --resume to continue it or choose another run_dir=")
    if resume and not ((run / "latest").exists() or resume_candidates(run)):
        raise UserError(f"--resume: no checkpoint in '{run}' to resume from")
