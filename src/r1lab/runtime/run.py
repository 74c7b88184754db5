"""Run directories, and the start-up every training command shares.

    run, log = start_run(cfg.run_dir, resume, cfg.threads, log)

`start_run` sets torch's thread count (`threads` > 0), makes torch pick its deterministic kernels
where it has them (so that a rerun with the same seed gives the same numbers: without it, two
threads summed the MoE's expert outputs in a varying order and a GRPO run's per-step gradient
norms differed by up to 1.6e-4 relative), joins the launcher's process group when
there is one (distributed.py), silences `log` on every rank but 0 (rank 0's log is the run's),
names the run directory after rank 0's clock (`{time}` in the pattern; on --resume, the newest
existing match), locks it on rank 0 when it exists, checks it on every rank (a new run needs an
empty directory, a resumed one a checkpoint), and waits until every rank has checked it before any
rank writes to it.

One run at a time writes a run directory. Rank 0 holds an exclusive `flock` on `run/.lock` (which
names its holder: pid and host) from the moment the directory exists until the process ends: a
second run on the same directory, new or --resume, is refused in one line naming the holder.
`start_run` takes it when the directory already exists (a resume), and a trainer takes it when it
creates the directory (`claim_run_dir`, which checks the directory again, now that no one else
can write it). The OS drops the lock when its process dies, even by SIGKILL, so a killed run
leaves no stale lock; a lock file alone counts as an empty directory. The lock is advisory (only
r1lab's commands ask for it) and, on NFS, as good as the server's locking.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from r1lab.errors import UserError
from r1lab.runtime import distributed
from r1lab.runtime.checkpoint import resume_candidates

LOCK = ".lock"  # in the run directory: its flock is the run's claim on it
_held: dict[Path, IO] = {}  # run directory (resolved) → its open, locked lock file, kept until exit


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
    """A new run needs an empty (or no) run_dir, its lock file aside; a resumed one needs a checkpoint in it."""
    if run.exists() and any(p.name != LOCK for p in run.iterdir()) and not resume:
        raise UserError(f"run_dir: '{run}' already holds a run; pass --resume to continue it or choose another "
                        "run_dir=")
    if resume and not ((run / "latest").exists() or resume_candidates(run)):
        raise UserError(f"--resume: no checkpoint in '{run}' to resume from")


def start_run(pattern: str, resume: bool, threads: int = 0, log: Callable = print) -> tuple[Path, Callable]:
    """(run directory, log) of a training command (see the module docstring)."""
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, where an op has no such kernel
    distributed.init()
    if not distributed.is_main():
        log = _silent
    run = distributed.broadcast(resolve_run_dir(pattern, resume))  # rank 0's clock names the run
    refusal, made_lock = None, False
    if distributed.is_main() and run.is_dir():  # before any rank reads it: a resume must not read a live run
        made_lock = not (run / LOCK).exists()
        try:
            lock_run_dir(run)
        except UserError as e:
            refusal = str(e)
    if refusal := distributed.broadcast(refusal):  # every rank stops, not rank 0 alone
        raise UserError(refusal)
    try:
        check_run_dir(run, resume)
    except UserError:
        if made_lock:  # a refused run leaves nothing behind
            _unlock(run)
        raise
    distributed.barrier()  # every rank has checked run_dir before rank 0 writes to it
    return run, log


def lock_run_dir(run: Path) -> None:
    """Make `run` and hold its lock until this process ends (again: nothing to do); UserError naming
    the holder when another process holds it."""
    key = run.resolve()
    if key in _held and _is_file(_held[key], run / LOCK):  # (not when the directory was removed and made again)
        return
    run.mkdir(parents=True, exist_ok=True)
    f = open(run / LOCK, "a+")  # "a+": the holder's note stays readable until the lock is ours
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise UserError(f"run_dir: '{run}' is in use by another run ({holder}); wait for it to end, or choose "
                        "another run_dir=") from None
    f.truncate(0)
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    _held[key] = f


def _unlock(run: Path) -> None:
    """Let go of `run`'s lock and remove its lock file."""
    f = _held.pop(run.resolve(), None)
    if f is not None:
        (run / LOCK).unlink(missing_ok=True)
        f.close()


def _is_file(f: IO, path: Path) -> bool:
    """Whether the open file `f` is the file at `path`."""
    try:
        return os.path.samestat(os.fstat(f.fileno()), path.stat())
    except OSError:
        return False


def claim_run_dir(run: Path, resume: bool) -> None:
    """Make `run`, lock it (`lock_run_dir`) and check it again (`check_run_dir`): what a trainer
    does before it writes the first file of a run (on rank 0)."""
    lock_run_dir(run)
    check_run_dir(run, resume)


def _silent(*args, **kwargs) -> None:
    """The log of every rank but 0."""
