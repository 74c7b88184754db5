"""Which problems a stage works on: the data settings of RL, rejection sampling and the reports.

    task = build_task(cfg.data)                       # a built-in task, or the user's data file
    train = task.problems("train", cfg.data.n_train, seed=cfg.seed + TRAIN_SEED, langs=tuple(cfg.data.langs))

`TaskConfig` names the task: a built-in one (`task`, `task_args`, `langs`: arithmetic, countdown,
code, ...; tasks/) or, with task="file", the user's JSONL / Parquet / datasets file (`path` and
its field names; tasks/files.py). `DataConfig` adds how many problems RL draws from each split
and the share of general prompts (stage 4). A stage that samples or measures the same task as
another gets its `TaskConfig` from it (`DataConfig.task_config()`), so the two cannot drift
apart. The seed offsets keep the pools apart: RL's training prompts are not the pretraining
corpus's problems (the same generator), and the held-out problems every report measures are the
same for every model of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from r1lab.errors import UserError
from r1lab.tasks import Task, make_task, register_task

TRAIN_SEED, TEST_SEED, SAMPLE_SEED = 1000, 1, 3000  # offsets from a run's seed: RL prompts, held-out, stage 3


@dataclass
class TaskConfig:
    task: str = "arithmetic"  # a built-in task (arithmetic, signs, countdown, math, code, ...), or "file" for `path`
    task_args: dict[str, int] = field(default_factory=lambda: {"digits": 4, "terms": 2})  # the task's own settings
    path: str | None = None  # JSONL / parquet / saved datasets dir, with task="file"
    question_field: str = "problem"  # with task="file": the field that holds the question
    answer_field: str = "answer"  # with task="file": the field that holds the gold answer
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ja", "ko"])  # prompt languages drawn from (en, zh, ja, ko)

    def validate(self) -> None:
        if self.path is not None and self.task != "file":
            raise UserError(f"path: read only with task=file (add data.task=file), but task is {self.task!r}")
        if self.task == "file" and not self.path:
            raise UserError("path: task 'file' needs a path to a JSONL/parquet file or datasets dir")


@dataclass
class DataConfig(TaskConfig):
    n_train: int = 20000  # size of the training prompt pool
    n_test: int = 100  # held-out problems for evaluation
    general_share: float = 0.0  # fraction of each step's prompts that are general ones (stage 4; needs reward_model)

    def validate(self) -> None:
        super().validate()
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not 0 <= self.general_share < 1:
            raise UserError(f"general_share: expected a fraction in [0, 1), got {self.general_share}")

    def task_config(self) -> TaskConfig:
        """The task part of these settings, for a stage that samples or measures the same problems."""
        return TaskConfig(**{f.name: getattr(self, f.name) for f in fields(TaskConfig)})


def build_task(data: TaskConfig) -> Task:
    """The task `data` names, registered so that `get_task(problem.task)` grades its problems; a data
    file's mistakes surface here, before any model is loaded."""
    if data.task == "file":
        if not data.path:
            raise UserError("data.path: task 'file' needs a path to a JSONL/parquet file or datasets dir")
        task = make_task("file", path=data.path, question_field=data.question_field, answer_field=data.answer_field)
    else:
        task = make_task(data.task, **data.task_args)
    return register_task(task)
