"""Model directories and crash-safe checkpoints: the one saver, shared by every trainer.

`save_model(model, tok, out, ...)` writes a Hugging Face model directory (`AutoModelForCausalLM.
from_pretrained` loads it; a LoRA model's merged weights, with its adapters in adapter/) with the
tokenizer and, optionally, a JSON note of what it is (`info`), a trainer state and extra text files,
all through a temporary directory that is fsynced and renamed (files.write_dir_atomically): the
directory is never seen half-written, and an older one of the same name stays whole until then.
A model directory carries its tokenizer's chat template (chat_template.jinja, where transformers
keeps it), or the `chat_template` the caller passes instead: the prompt format the model was
trained on (data/prompting.chat_template_to_save; r1lab's own tokenizer carries the R1-Zero one),
so that `transformers chat`/`serve`, vLLM and `r1lab chat` render its prompts as training did.
The tokenizer in memory is left as it is.

A checkpoint is `run/checkpoint-<step>`: such a directory with `trainer_state.pt`, which holds the
step, the optimizer state, the global RNG states and whatever else the loop needs to continue
exactly (each loop's learning rate is a function of the step; the data order is a function of the
seed and the step, or saved with the checkpoint; the metrics records so far). `latest` (itself
replaced atomically) names the newest: a run killed at any moment leaves only complete
checkpoints, and `latest` names the newest or the one before.

A checkpoint of an FSDP2-sharded run (`save_sharded_checkpoint`, runtime/distributed.py) is the
same model directory, its weights gathered to rank 0 to be written, with the optimizer state left
sharded: optimizer/rank-R-of-N.pt holds rank R's part (Adam's moments of its shards of the
parameters), written by that rank. It resumes under N ranks, each loading its own file; the
weights come from the model directory.

On resume, a checkpoint that fails to load (truncated, missing a file, corrupt: a copy gone wrong,
a filesystem without atomic rename, bit rot) is named in one line and the one before it is tried.

Three more ways a machine ends a run, each leaving it resumable:
  * SIGTERM (preemption by a scheduler, a spot machine's shutdown): the step under way finishes,
    a checkpoint is written at that step, and the command ends with one line naming it and the
    command that continues the run (`--resume`), exit status 143 (runtime/preempt.py). Under
    torchrun every rank stops after the same step. A second SIGTERM changes nothing; a SIGKILL
    while the checkpoint is written leaves the previous one, and `latest` naming it.
  * A full disk or quota (ENOSPC, EDQUOT) while a checkpoint or a final model is written: the
    partial copy is removed, `latest` still names the previous checkpoint, and the command ends
    with a one-line UserError (exit status 2) naming the directory and the cause (runtime/files.py).
    Under FSDP2 a rank whose optimizer shard does not fit ends every rank the same way: it names
    its file, the others the checkpoint and that rank.
  * A second run on the same run directory, new or --resume, is refused in one line naming the
    running one (pid, host): rank 0 holds a flock on run/.lock, which dies with its process, so a
    killed run leaves no stale lock (runtime/run.py).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import torch

from r1lab.errors import UserError
from r1lab.runtime import distributed
from r1lab.runtime.device import to_cpu
from r1lab.runtime.files import not_written, write_atomically, write_dir_atomically
from r1lab.runtime.loading import load_model
from r1lab.runtime.lora import is_lora, load_weights, save_weights


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


def save_model(model, tok, out: Path, info: dict | None = None, info_name: str = "info.json",
               state: dict | None = None, state_dict: dict | None = None, files: dict[str, str] | None = None,
               chat_template: str | None = None, dirs: dict[str, Path] | None = None) -> Path:
    """Write the model directory `out` atomically (see the module docstring). `info`: a JSON note
    saved as `info_name`; `state`: the trainer state (trainer_state.pt, with the RNG states added);
    `state_dict`: the weights to write instead of the model's own (an FSDP2 model's gathered ones);
    `files`: more text files, by name; `chat_template`: saved instead of the tokenizer's own;
    `dirs`: directories already written (on the same filesystem) moved in, by name."""
    if chat_template is not None and chat_template != getattr(tok, "chat_template", None):
        tok = copy.copy(tok)  # the caller's tokenizer is left as it is: its prompts stay as they were
        tok.chat_template = chat_template

    def fill(tmp: Path) -> None:
        save_weights(model, tmp, state_dict)  # a LoRA model: the merged weights, and the adapters in adapter/
        tok.save_pretrained(tmp)
        if state is not None:  # tensors on the CPU (a CUDA optimizer state's too): the file loads on any
            # machine, and `opt.load_state_dict` moves the state back to its parameters' device
            with open(tmp / "trainer_state.pt", "wb") as f:  # through Python's file: a full disk is an OSError
                torch.save(to_cpu({**state, "rng": rng_state()}), f)  # (torch's own writer reports no errno)
        if info is not None:
            (tmp / info_name).write_text(json.dumps(info, indent=2))
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        for name, path in (dirs or {}).items():
            path.rename(tmp / name)

    return write_dir_atomically(out, fill)


def save_checkpoint(run: Path, step: int, model, tok, state: dict, info: dict | None = None,
                    info_name: str = "info.json", state_dict: dict | None = None,
                    chat_template: str | None = None, dirs: dict[str, Path] | None = None) -> Path:
    """Write run/checkpoint-<step> (`save_model` with `state` and the step in trainer_state.pt) and
    point run/latest at it."""
    out = save_model(model, tok, run / f"checkpoint-{step}", info, info_name, {**state, "step": step}, state_dict,
                     chat_template=chat_template, dirs=dirs)
    write_atomically(run / "latest", out.name)
    return out


def save_sharded_checkpoint(run: Path, step: int, model, opt, tok, state: dict, info: dict | None = None,
                            info_name: str = "info.json", chat_template: str | None = None) -> None:
    """`save_checkpoint` for an FSDP2 model; collective (every rank calls it). The weights are
    gathered to rank 0, which writes the model directory; the optimizer state is not gathered:
    each rank writes its own part into a staging directory, which rank 0 moves into the
    checkpoint before renaming it into place, so the checkpoint appears whole or not at all. A
    rank that cannot write its part (a full disk) fails every rank at once, none left waiting."""
    rank, world = distributed.rank(), distributed.world_size()
    weights = distributed.full_state_dict(model)  # rank 0: every tensor; the others: nothing
    staging = run / f".optimizer-{step}"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while writing it
        staging.mkdir()
    distributed.barrier()
    mine = opt.state_dict()
    mine["state"] = {i: {k: distributed.local(v) for k, v in s.items()} for i, s in mine["state"].items()}
    shard = staging / f"rank-{rank}-of-{world}.pt"

    def write_shard() -> None:
        try:
            with open(shard, "wb") as f:  # through Python's file: ENOSPC is an OSError
                torch.save(to_cpu(mine), f)
        except BaseException as e:
            not_written(shard, e)  # a full disk: one line
            raise

    def write_checkpoint() -> None:
        if rank == 0:
            save_checkpoint(run, step, model, tok, {**state, "optimizer": None, "optimizer_shards": world}, info,
                            info_name, weights, chat_template, dirs={"optimizer": staging})

    out = run / f"checkpoint-{step}"
    _on_every_rank(write_shard, out, staging, "its optimizer shard")
    _on_every_rank(write_checkpoint, out, staging, "the checkpoint")  # no rank goes on before it exists


def _on_every_rank(write, out: Path, staging: Path, what: str) -> None:
    """Run this rank's `write`, then learn whether every rank's succeeded (a collective, so no rank
    waits at a barrier for one that has failed): a rank that failed raises its own error, the
    others one line naming it; rank 0 removes the staging directory."""
    failed = None
    try:
        write()
    except BaseException as e:  # noqa: BLE001 -- re-raised below, once the other ranks have heard of it
        failed = e
    bad = distributed.max_across(0.0 if failed is None else distributed.rank() + 1.0)  # the last failed rank, + 1
    if bad:
        if distributed.rank() == 0:
            shutil.rmtree(staging, ignore_errors=True)
        if failed is not None:
            raise failed
        raise UserError(f"{out}: not written: rank {int(bad) - 1} could not write {what} (its own error says why); "
                        "the checkpoints written before are unchanged")


def load_optimizer_shard(ckpt: Path, opt) -> None:
    """This rank's part of an FSDP2 run's optimizer state (`save_sharded_checkpoint`) into `opt`,
    whose parameters are DTensor shards: each moment becomes a DTensor laid out as its parameter."""
    rank, world = distributed.rank(), distributed.world_size()
    opt.load_state_dict(torch.load(ckpt / "optimizer" / f"rank-{rank}-of-{world}.pt", weights_only=False,
                                   map_location="cpu"))
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if v.dim() > 0:  # Adam's moments; `step` is a scalar on every rank
                    opt.state[p][k] = distributed.shard_like(v, p)


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
    saved = load_model(ckpt, "cpu", "float32", head=type(base))
    if distributed.is_sharded(model):  # FSDP2: each rank takes its shards of the full weights
        distributed.load_full_state_dict(model, saved.state_dict())
    else:
        load_weights(model, ckpt, saved)  # a LoRA model: its adapters only, from ckpt/adapter
    return state


def check_ranks(ckpt: Path, state: dict, sharded: bool) -> None:
    """A sharded checkpoint resumes as it was written: sharded, under as many ranks; a replicated
    one (one process, DDP) does not resume sharded."""
    shards, world = state.get("optimizer_shards"), distributed.world_size()
    if shards and (not sharded or shards != world):
        raise UserError(f"--resume: {ckpt} holds an FSDP2 run's optimizer state in {shards} shards; resume it "
                        f"with parallel=fsdp2 under {shards} ranks (torchrun --nproc_per_node {shards}), or start a "
                        f"new run from its weights (base={ckpt})")
    if sharded and not shards:
        raise UserError(f"--resume: {ckpt} was written by a run that was not sharded; resume it as it ran "
                        f"(parallel=ddp, or one process), or start a new run from its weights (base={ckpt})")


def resume(run: Path, model, opt, log=print) -> dict:
    """Load the newest usable checkpoint of `run` into `model` and `opt`, restore the RNG states,
    and return its trainer state; UserError when no checkpoint is usable."""
    sharded = distributed.is_sharded(model)
    for ckpt in resume_candidates(run):
        try:
            state = load_checkpoint(ckpt, model)
            check_ranks(ckpt, state, sharded)
            if sharded:
                load_optimizer_shard(ckpt, opt)
            else:
                opt.load_state_dict(state["optimizer"])
            break
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 -- any load failure means "unusable checkpoint"
            why = (str(e).splitlines() or [""])[0][:200]
            log(f"resume: checkpoint {ckpt} is unusable ({type(e).__name__}: {why}); trying the previous one")
    else:
        raise UserError(f"--resume: no loadable checkpoint in '{run}' (all checkpoint-N are missing files or corrupt)")
    set_rng_state(state["rng"])
    log(f"resume: from {ckpt} at step {state['step']}")
    return state
