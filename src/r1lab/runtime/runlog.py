"""A run's metrics: one JSON line per step in metrics.jsonl, TensorBoard scalars, a live bar.

On resume the existing metrics.jsonl is read back (lines past the resumed checkpoint are
dropped, since those steps will be redone, and so is a line torn by a crash mid-write) and
rewritten atomically, so that the report covers the whole run and a resumed run's metrics
equal an uninterrupted one's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm


class RunLog:
    def __init__(self, run: Path, resume: bool = False, total: int | None = None, start: int = 0):
        self.path = run / "metrics.jsonl"
        self.history: list[dict] = []
        if resume and self.path.exists():
            rows = []
            for line in self.path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line torn by a crash mid-write (or blank)
                    continue
            self.history = [r for r in rows if isinstance(r, dict) and r.get("step", start + 1) <= start]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            tmp.replace(self.path)
        self.file = self.path.open("a")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=start + 1 if resume else None)
        self.bar = tqdm(total=total, initial=start, desc="grpo", unit="step", dynamic_ncols=True)

    def log(self, record: dict) -> None:
        self.history.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for k, v in record.items():
            if isinstance(v, (int, float)) and k != "step":
                self.tb.add_scalar(k, v, record["step"])
        acc = record.get("accuracy")
        self.bar.set_postfix_str(
            f"reward {record['reward']:.3f} acc {acc if acc is None else round(acc, 3)} "
            f"len {record['len_mean']:.0f} {record['time_step']:.1f}s/step"
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        self.file.close()
        self.tb.close()
