"""Run directories, and the start-up every training command shares.

    run, log = start_run(cfg.run_dir, resume, cfg.threads, log)

`start_run` sets torch's thread count (`threads` > 0), makes torch pick its deterministic kernels
where it has them (so that a rerun with the same seed gives the same numbers: without it, two
threads summed the MoE's expert outputs in a varying order and a GRPO run's per-step gradient
norms differed by up to 1.6e-4 relative), joins the launcher's process group when
there is one (distributed.py), silences `log` on every rank but 0 (rank 0's log is the run's),
names the run directory after rank 0's clock (`{time}` in the pattern; on --resume, the newest
existing match), checks it on every rank (a new run needs an empty directory, a resumed one a
checkpoint), and waits until every rank has checked it before any rank writes to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from r1lab.errors import UserError
from r1lab.runtime import distributed
from r1lab.runtime.checkpoint import resume_candidates


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
    check_run_dir(run, resume)
    distributed.barrier()  # every rank has checked run_dir before rank 0 writes to it
    return run, log


def _silent(*args, **kwargs) -> None:
    """The log of every rank but 0."""
