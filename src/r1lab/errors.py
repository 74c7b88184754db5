"""The exceptions the CLI reports in one line: user mistakes, and a preempted run.

Anything the user can fix (a missing file, a malformed JSONL line, an unknown config key, an
impossible value, a full disk) raises `UserError` with a one-line message naming the file, line or
field and what was expected. The CLI turns it into `r1lab: error: <message>` and exit status 2;
everything else is a bug and keeps its traceback. A training command stopped by SIGTERM
(runtime/preempt.py) raises `Preempted` once its checkpoint is written: one line, exit status 143.
"""

from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input: reported in one line, exit status 2."""


class Preempted(Exception):
    """A training loop stopped by SIGTERM after writing `checkpoint`; `run` is the run_dir= that
    continues it (None when running the same command again continues it, as for pretraining)."""

    def __init__(self, checkpoint: Path, run: Path | None):
        super().__init__(f"stopped by SIGTERM after writing {checkpoint}")
        self.checkpoint, self.run = checkpoint, run
