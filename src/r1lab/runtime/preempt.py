"""Preemption: SIGTERM ends a training loop at the next optimizer step's end, with a checkpoint.

    with preempt.watch():
        for step in ...:
            ...                                    # one optimizer step, its record logged
            stop = preempt.requested()             # on every rank: did any rank get SIGTERM?
            if periodic or stop:
                save_checkpoint(run, step, ...)
            if stop:
                preempt.stop(run / f"checkpoint-{step}", run, metrics)   # raises Preempted

A cluster scheduler (Slurm, Kubernetes), `docker stop`, systemd or a spot machine's shutdown sends
SIGTERM and, some seconds later, SIGKILL. Inside `watch`, SIGTERM only sets a flag: the step under
way finishes, the loop writes a checkpoint at that step and raises `Preempted`, which the CLI turns
into one line (what was written, the command that continues) and exit status 143, the shell's
128 + SIGTERM: not 0, so that `make`, a Kubernetes Job or a shell `&&` never takes the unfinished
run for a finished one. `--resume` then continues from that checkpoint exactly as after a crash
(runtime/checkpoint.py), to the same records and weights as an uninterrupted run.

Later SIGTERMs change nothing: the checkpoint under way is finished (a scheduler may signal the
whole process group, and torchrun forwards its own signal to its workers, so two are common). A
SIGKILL at any moment leaves the previous checkpoint whole and `latest` naming it (the atomic
writers of runtime/files.py); the temporary directory it leaves is removed when that checkpoint
is written again. Outside `watch` (loading, evaluation), SIGTERM keeps its default action: the
process ends at once, with nothing to save that the last checkpoint does not hold.

SIGINT (Ctrl-C) is left as Python's KeyboardInterrupt, exit status 130: whoever presses it wants
the command to end now, not after a step that may take minutes, and the last periodic checkpoint
resumes as usual. Schedulers send SIGTERM.

Under torchrun every rank runs the loop, and ranks can see the signal at different steps (or one
rank alone can get it), so `requested()` takes the maximum of the flags over the ranks (one
one-number all-reduce per step): every rank stops after the same step, rank 0 writes the
checkpoint as it always does, and `stop` waits for it before any rank ends. torchrun gives its
workers 30 seconds after forwarding a SIGTERM before it kills them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from r1lab.errors import Preempted
from r1lab.runtime import distributed

_signalled = False  # set by SIGTERM inside `watch`


@contextmanager
def watch() -> Iterator[None]:
    """Within the block, SIGTERM sets the flag that `requested` reads instead of ending the process;
    the previous handler is back afterwards. Off the main thread (where Python cannot set signal
    handlers) it does nothing, and SIGTERM keeps whatever action it had."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _signalled
    _signalled = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


def _on_sigterm(signum, frame) -> None:
    global _signalled
    if not _signalled and distributed.is_main():  # os.write: safe even if the signal lands mid-print
        os.write(2, b"r1lab: SIGTERM: finishing this step, then writing a checkpoint\n")
    _signalled = True


def requested(across_ranks: bool = True) -> bool:
    """Whether SIGTERM arrived (inside `watch`). `across_ranks`: whether it arrived on any rank, the
    same answer on every rank (a collective: every rank must call it at the same point)."""
    if not across_ranks:
        return _signalled
    return distributed.max_across(float(_signalled)) > 0


def stop(checkpoint: Path, run: Path | None, metrics=None) -> NoReturn:
    """End the command once `checkpoint` is written (on rank 0; the others wait for it here).
    `run`: the run_dir= that continues it with --resume (None: rerunning the command continues it);
    `metrics`: the loop's RunLog (or None), closed first, so that its trackers write what they buffer."""
    if metrics is not None:
        metrics.close()
    distributed.barrier()
    raise Preempted(checkpoint, run)
