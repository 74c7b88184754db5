"""Benchmarks for `r1lab eval`: a data SPEC becomes a list of math or code `Problem`s, in file order.

SPEC is one of
  * a preset name (`math500`, `gsm8k`, `aime24`, `aime25`, `amc23`, and the code benchmarks
    `humaneval`, `mbpp`; table `PRESETS`): its Hugging
    Face hub dataset, loaded through `datasets`. That needs the internet, or a copy in the hub
    cache and HF_HUB_OFFLINE=1; offline, it fails at once with a one-line UserError instead of
    retrying for half a minute;
  * a local `.jsonl` or `.parquet` file, or a directory written by `datasets`' `save_to_disk`
    (e.g. the offline copies in ../shared/data);
  * any other hub dataset id (`owner/name`);
  * `task:<name>` for a built-in task (`task:arithmetic`, `task:countdown`, `task:signs`, `task:code`, default
    settings): its held-out test split, `limit` problems (default 100) in the task's prompt
    languages (the four, or English for code and signs), drawn as `r1lab zero` draws its held-out set
    (seed 1), so `r1lab eval CHECKPOINT --data task:signs --limit 200` re-measures a default R1-Zero
    run's final evaluation (`task:arithmetic` one of recipes/zero-arithmetic.yaml). Graded by the task's own `grade`.

Code benchmarks (`Benchmark.kind == "code"`): a preset's kind, or records with tests, `tests` /
`test_list` (MBPP) or `test` + `entry_point` (HumanEval), detected from the first record. Their
problems are made by tasks.code.code_problem (`task="code"`, the tests in `meta`), and the gold
is the reference solution, kept as it is. A local file whose records have a `split` field (the
MBPP copy in ../shared/data: prompt/train/validation/test) is cut to `--split` when one is given.

Fields. A preset (the SPEC itself, or `--preset` for a local copy in the hub's schema) names the
question, answer and breakdown fields. Otherwise they are detected from the first record:
question = the first of problem, question, prompt; answer = the first of answer, final_answer,
solution; breakdowns = those of subject, level, type that the record has. `question_field` /
`answer_field` override either. Every gold goes through `extract.gold_answer`, so a rationale
(GSM8K's hub answer "... #### 18", a MATH solution ending in \\boxed{}) becomes its final answer
and a plain answer is kept as it is: no per-preset gold transform is needed.

Math problems keep the data's order (`limit` takes the first N), carry `task="math"` so that
`get_task(problem.task).grade` and the RL accuracy reward grade them unchanged, and keep
`meta = {"id", <breakdown fields>}`; the id is the record's `id` field, else its 0-based row.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from r1lab.data.problems import TEST_SEED
from r1lab.errors import UserError
from r1lab.grading.extract import gold_answer
from r1lab.runtime.files import hub_rows, read_rows, text_field
from r1lab.tasks import LANGS, get_task
from r1lab.tasks.base import Problem
from r1lab.tasks.code import code_problem

QUESTION_FIELDS = ("problem", "question", "prompt")
ANSWER_FIELDS = ("answer", "final_answer", "solution")
BREAKDOWN_FIELDS = ("subject", "level", "type")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class Preset:
    """Where a standard benchmark lives on the hub and what its fields are called there."""

    hub_id: str
    split: str
    question: str
    answer: str
    breakdowns: tuple[str, ...] = ()
    config: str | None = None
    kind: str = "math"  # or "code": graded by running tests (tasks/code.py)


PRESETS = {
    "math500": Preset("HuggingFaceH4/MATH-500", "test", "problem", "answer", ("subject", "level")),
    "gsm8k": Preset("openai/gsm8k", "test", "question", "answer", config="main"),  # gold: "... #### 18"
    "aime24": Preset("HuggingFaceH4/aime_2024", "train", "problem", "answer"),
    # AIME 2025: yentinglin/aime_2025 holds I and II in one split (opencompass/AIME2025 needs two configs).
    "aime25": Preset("yentinglin/aime_2025", "train", "problem", "answer"),
    "amc23": Preset("math-ai/amc23", "test", "question", "answer"),
    "humaneval": Preset("openai/openai_humaneval", "test", "prompt", "canonical_solution", kind="code"),
    "mbpp": Preset("google-research-datasets/mbpp", "test", "text", "code", config="full", kind="code"),
}
CODE_FIELDS = ("tests", "test_list", "entry_point")  # a record with one of these holds a code problem


@dataclass
class DataSpec:
    """Which benchmark to evaluate on (see the module docstring for what `source` may be)."""

    source: str = ""  # preset name, local file/dir, or hub dataset id
    preset: str | None = None  # force a preset's field mapping onto `source`
    question_field: str | None = None  # default: the preset's, else detected
    answer_field: str | None = None
    split: str | None = None  # for hub ids and saved DatasetDicts; default: the preset's, else "test"
    limit: int | None = None  # only the first N problems

    def validate(self) -> None:
        if not self.source:
            raise UserError("data: give a preset name, a .jsonl/.parquet file, a saved datasets dir or a hub id")
        if self.preset is not None and self.preset not in PRESETS:
            raise UserError(f"preset: unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit: expected >= 1, got {self.limit}")


@dataclass
class Benchmark:
    name: str  # short name for tables and run directories: the preset, or the file's stem
    source: str  # what was loaded: a path or a hub id
    problems: list[Problem]
    question_field: str
    answer_field: str
    breakdowns: tuple[str, ...]  # meta fields to report metrics by, e.g. ("subject", "level")
    kind: str = "math"  # or "code" (see the module docstring)


def load_benchmark(spec: DataSpec) -> Benchmark:
    """The problems of `spec`, validated; UserError naming the file, line and field otherwise."""
    spec.validate()
    if spec.source.startswith("task:"):
        return _task_benchmark(spec)
    preset_name = spec.preset or (spec.source if spec.source in PRESETS else None)
    preset = PRESETS.get(preset_name) if preset_name else None
    path = Path(spec.source)
    if spec.source in PRESETS:
        source, name = preset.hub_id, spec.source
        rows = hub_rows(preset.hub_id, preset.config, spec.split or preset.split)
    elif path.exists():
        source, name = str(path), path.stem if path.is_file() else path.name
        rows = read_rows(path, spec.split or (preset.split if preset else None))
    elif _HUB_ID.fullmatch(spec.source) and path.suffix not in (".jsonl", ".parquet", ".json"):
        source, name = spec.source, spec.source.split("/")[-1]
        rows = hub_rows(spec.source, None, spec.split or "test")
    else:
        raise UserError(
            f"{spec.source}: no such file or directory, and not a preset ({', '.join(PRESETS)}) "
            "or a hub dataset id (owner/name)"
        )

    problems: list[Problem] = []
    fields, kind = None, "math"
    local_split = spec.split if path.exists() and path.is_file() else None  # hub and datasets dirs split themselves
    index = -1
    for where, row in rows:
        if fields is None:  # the first record decides what to look for in all of them
            fields = _choose_fields(row, spec, preset, where)
            kind = preset.kind if preset else ("code" if any(f in row for f in CODE_FIELDS) else "math")
            if local_split is not None and "split" not in row:
                raise UserError(f"{where}: --split {local_split} given, but the records have no 'split' field")
        if local_split is not None and str(row.get("split")) != local_split:
            continue
        index += 1
        if spec.limit is not None and index >= spec.limit:
            break
        question_field, answer_field, breakdowns = fields
        question = text_field(row, question_field, where)
        id_ = str(row["id"]) if row.get("id") is not None else str(index)
        if kind == "code":
            problem = code_problem(row, question, text_field(row, answer_field, where), id_, where)
        else:
            problem = Problem(key=question, prompt=question, answer=gold_answer(text_field(row, answer_field, where)),
                              task="math", meta={"id": id_})
        problem.meta.update({b: _breakdown_value(row.get(b)) for b in breakdowns})
        problems.append(problem)
    if fields is None:
        raise UserError(f"{source}: holds no records")
    if not problems:
        raise UserError(f"{source}: holds no records of split {local_split!r}")
    return Benchmark(name, source, problems, *fields, kind=kind)


TASK_EVAL_PROBLEMS = 100  # the arithmetic recipe's data.n_test; the seed is r1lab zero's held-out one (seed 0 + TEST_SEED)


def _task_benchmark(spec: DataSpec) -> Benchmark:
    """The held-out problems of a built-in task (see the module docstring), broken down by language."""
    name = spec.source.removeprefix("task:")
    if name in ("file", "math") or ":" in name:
        raise UserError(f"{spec.source}: task: takes a built-in task (arithmetic, countdown, signs, code); "
                        "pass a file as the SPEC itself")
    task = get_task(name)  # UserError naming the choices for an unknown name
    langs = tuple(getattr(task, "langs", LANGS))
    problems = task.problems("test", spec.limit or TASK_EVAL_PROBLEMS, seed=TEST_SEED, langs=langs)
    problems = [dataclasses.replace(p, meta={**p.meta, "id": f"{p.key} [{p.lang}]", "lang": p.lang}) for p in problems]
    kind = "code" if name == "code" else "math"
    return Benchmark(name, spec.source, problems, "prompt", "answer", ("lang",) if len(langs) > 1 else (), kind=kind)


def _choose_fields(row: dict, spec: DataSpec, preset: Preset | None, where: str) -> tuple[str, str, tuple[str, ...]]:
    """(question field, answer field, breakdown fields): given, the preset's, or detected in `row`."""
    available = ", ".join(repr(k) for k in row) or "none"

    def pick(given: str | None, from_preset: str | None, candidates: tuple[str, ...], what: str) -> str:
        if given or from_preset:
            return given or from_preset
        for name in candidates:
            if name in row:
                return name
        raise UserError(
            f"{where}: no {what} field found (looked for {', '.join(candidates)}; fields: {available}); "
            f"pass --{what}-field"
        )

    question = pick(spec.question_field, preset.question if preset else None, QUESTION_FIELDS, "question")
    answer = pick(spec.answer_field, preset.answer if preset else None, ANSWER_FIELDS, "answer")
    breakdowns = preset.breakdowns if preset else tuple(b for b in BREAKDOWN_FIELDS if b in row)
    return question, answer, breakdowns


def _breakdown_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
