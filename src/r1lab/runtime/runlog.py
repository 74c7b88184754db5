"""A run's metrics, for every trainer: one JSON line per step in metrics.jsonl, optionally
TensorBoard scalars and a live progress bar.

    log = RunLog(run, history, total=steps, bar="grpo", report_to=["tensorboard"], postfix=describe)
    log.log(record)  # each step: a flat dict with its "step"
    log.close()

`history` is the records of the steps already done: [] for a new run; on --resume, the records
saved with the resumed checkpoint. metrics.jsonl is rewritten atomically to hold exactly them
(lines of steps that will be redone, or a line torn by a crash, are gone), so a resumed run's
metrics equal an uninterrupted one's, and each later record is appended and flushed at once. The
keys of a trainer's records are made in one function of that trainer (rl/step.py lists GRPO's).

`report_to` names the trackers that also get every record, each scalar under its own key at the
record's step: "tensorboard" (run/tensorboard/), "wandb" and "trackio" (optional extras:
`pip install 'r1lab[wandb]'`, `'r1lab[trackio]'`; project "r1lab", the run directory's name as
the run's, the config as the run's config). Both work offline: WANDB_MODE=offline keeps wandb's
run under run/wandb/ for a later `wandb sync`, and trackio writes to its local database
(TRACKIO_DIR, default ~/.cache/huggingface/trackio). The progress bar is tqdm's, shown on a
terminal and hidden otherwise; R1LAB_PROGRESS=1 forces every r1lab bar on, 0 off (`progress`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from r1lab.errors import UserError
from r1lab.runtime.files import write_jsonl

REPORTERS = ("tensorboard", "wandb", "trackio")
EXTRAS = {"wandb": "wandb", "trackio": "trackio"}  # tracker → the pip extra that installs it


def check_report_to(report_to: list[str]) -> None:
    """UserError for an unknown tracker, or one whose package is not installed (before any run starts)."""
    import importlib.util

    for name in report_to:
        if name not in REPORTERS:
            raise UserError(f"report_to: expected a list of {', '.join(REPORTERS)} (or []), got {name!r}")
        if name in EXTRAS and importlib.util.find_spec(name) is None:
            raise UserError(f"report_to: {name} is not installed (pip install 'r1lab[{EXTRAS[name]}]')")


def progress(iterable: Iterable | None = None, **kw) -> tqdm:
    """A tqdm bar for one of r1lab's long loops: shown on a terminal, or as R1LAB_PROGRESS says (1 on, 0 off)."""
    forced = os.environ.get("R1LAB_PROGRESS", "")
    disable = None if forced not in ("0", "1") else forced == "0"  # None: tqdm's own choice (a tty or not)
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kw)


class RunLog:
    def __init__(self, run: Path, history: list[dict] | None = None, total: int | None = None, bar: str | None = None,
                 report_to: Iterable[str] = (), postfix: Callable[[dict], str] | None = None, config: dict | None = None):
        run = Path(run)
        self.path = run / "metrics.jsonl"
        self.history = list(history or [])
        write_jsonl(self.path, self.history)
        self.file = self.path.open("a")
        self.trackers: dict[str, object] = {}
        report_to = list(report_to)
        check_report_to(report_to)
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter  # slow to import; only runs that write it

            purge = len(self.history) + 1 if self.history else None  # steps past the resumed one are redone
            self.trackers["tensorboard"] = SummaryWriter(str(run / "tensorboard"), purge_step=purge)
        if "wandb" in report_to:
            import wandb

            self.trackers["wandb"] = wandb.init(project="r1lab", name=run.name, dir=str(run), config=config or {},
                                                reinit="create_new")
        if "trackio" in report_to:
            import trackio

            self.trackers["trackio"] = trackio.init(project="r1lab", name=run.name, config=config or {},
                                                    resume="allow", embed=False)
        self.postfix = postfix
        self.bar = None if bar is None else progress(total=total, initial=len(self.history), desc=bar, unit="step")

    def log(self, record: dict) -> None:
        self.history.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k != "step"}
        step = record["step"]
        for name, tracker in self.trackers.items():
            if name == "tensorboard":
                for k, v in scalars.items():
                    tracker.add_scalar(k, v, step)
            else:  # wandb's and trackio's runs share log(dict, step=)
                tracker.log(scalars, step=step)
        if self.bar is not None:
            if self.postfix is not None:
                self.bar.set_postfix_str(self.postfix(record))
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.file.close()
        for name, tracker in self.trackers.items():
            tracker.close() if name == "tensorboard" else tracker.finish()  # wandb's and trackio's runs finish
