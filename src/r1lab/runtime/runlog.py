"""A run's metrics, for every trainer: one JSON line per step in metrics.jsonl, optionally
TensorBoard scalars and a live progress bar.

    log = RunLog(run, history, total=steps, bar="grpo", tensorboard=True, postfix=describe)
    log.log(record)  # each step: a flat dict with its "step"
    log.close()

`history` is the records of the steps already done: [] for a new run; on --resume, the records
saved with the resumed checkpoint. metrics.jsonl is rewritten atomically to hold exactly them
(lines of steps that will be redone, or a line torn by a crash, are gone), so a resumed run's
metrics equal an uninterrupted one's, and each later record is appended and flushed at once. The
keys of a trainer's records are made in one function of that trainer (rl/step.py lists GRPO's).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from r1lab.runtime.files import write_jsonl


class RunLog:
    def __init__(self, run: Path, history: list[dict] | None = None, total: int | None = None, bar: str | None = None,
                 tensorboard: bool = False, postfix: Callable[[dict], str] | None = None):
        self.path = Path(run) / "metrics.jsonl"
        self.history = list(history or [])
        write_jsonl(self.path, self.history)
        self.file = self.path.open("a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow to import; only runs that write it

            purge = len(self.history) + 1 if self.history else None  # steps past the resumed one are redone
            self.tb = SummaryWriter(str(Path(run) / "tensorboard"), purge_step=purge)
        self.postfix = postfix
        self.bar = None if bar is None else tqdm(total=total, initial=len(self.history), desc=bar, unit="step",
                                                  dynamic_ncols=True)

    def log(self, record: dict) -> None:
        self.history.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])
        if self.bar is not None:
            if self.postfix is not None:
                self.bar.set_postfix_str(self.postfix(record))
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.file.close()
        if self.tb is not None:
            self.tb.close()
