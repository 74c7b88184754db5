"""`r1lab grade`: grade a JSONL file of predictions against gold answers, or code against tests.

    r1lab grade INPUT.jsonl [--task math|code] [--gold-field answer] [--pred-field completion] [--out FILE]

Each line of INPUT is a JSON object holding
  * a gold answer, in `--gold-field` (default `answer`): a plain answer, with or without `$...$`,
    or a rationale (GSM8K's "... #### 18", a solution ending in \\boxed{}, "the answer is 500"),
    which `extract.gold_answer(..., prose=True)` reduces to its final answer;
  * a prediction, in `--pred-field`, else in the first of `completion`, `prediction`,
    `response`, `output` that the line has: a full completion, whose final answer is extracted as
    `r1lab eval` does (`<answer>` tags, `\\boxed{}`, `#### X`, "the answer is X" in several
    languages, else the value of its last sentence; text after a chat turn marker is cut), or a bare answer
    such as `0.5`, graded as it is when nothing can be extracted (`verify.grade(..., bare=True)`).
    A null prediction is graded wrong.

The output has one line per input line, in input order: the input object with `extracted` (the
answer that was graded, or null) and `correct` (bool) added. It goes to stdout, or to --out,
which is written to a temporary file and then renamed, so it is never left half-written. The
count of correct predictions goes to stderr. Every line is checked before any is graded; a
missing file, malformed JSON or a missing field stops with `FILE:LINE: ...` (exit status 2).

`--task code` grades programs instead (tasks/code.py, r1lab.grading.sandbox). Each line holds the
prediction (a completion, whose last ```python block or `<answer>` content is the code, or bare
code) and its tests: `tests` (or MBPP's `test_list`), a list of assert statements, with an
optional `test_setup_code` run after the program; or HumanEval's `test` (defining
`check(candidate)`) and `entry_point`, with an optional `prompt` that a completion of the
function's body continues. The gold field is not used. Each output line gets `extracted` (the
code run), `correct` (true only when every test passed), `pass_fraction`, `tests_passed`,
`tests_total` and `status` (sandbox.Result's). Programs run in parallel, one sandbox each.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from r1lab.errors import UserError
from r1lab.grading import verify
from r1lab.grading.extract import gold_answer
from r1lab.runtime.files import read_jsonl, text_field, write_atomically
from r1lab.tasks.code import checked_record_tests, extract_code, run_codes

PRED_FIELDS = ("completion", "prediction", "response", "output")
GRADE_TASKS = ("math", "code")


@dataclass
class GradeConfig:
    input: str = ""  # the JSONL file of predictions
    gold_field: str = "answer"
    pred_field: str | None = None  # default: the first of PRED_FIELDS the line has
    out: str | None = None  # default: stdout
    task: str = "math"  # or "code": run the prediction against the line's tests


@dataclass
class Item:
    line: int  # line number in the input file
    record: dict  # the input object
    gold: object  # final gold answer (str), or for --task code the tests (tasks.code.CodeTests)
    prediction: str | None  # the completion or bare answer; None is graded wrong


def grade_file(cfg: GradeConfig, log=lambda message: print(message, file=sys.stderr)) -> dict:
    """Grade every line of `cfg.input`, write the graded lines, return {"graded", "correct"}."""
    if cfg.task not in GRADE_TASKS:
        raise UserError(f"task: expected one of {', '.join(GRADE_TASKS)}, got {cfg.task!r}")
    if cfg.task == "code":
        items = read_code_items(Path(cfg.input), cfg.pred_field)
    else:
        items = read_items(Path(cfg.input), cfg.gold_field, cfg.pred_field)
    out = Path(cfg.out) if cfg.out else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"{out}: no such directory {str(out.parent)!r}")
    graded = grade_code_items(items) if cfg.task == "code" else [
        dict(zip(("extracted", "correct"), grade_prediction(item.prediction, item.gold))) for item in items]
    n_correct = sum(g["correct"] for g in graded)
    lines = [json.dumps({**item.record, **g}, ensure_ascii=False) + "\n" for item, g in zip(items, graded)]
    text = "".join(lines)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(out, text)
    share = f" ({n_correct / len(lines):.1%})" if lines else ""
    if cfg.task == "code" and lines:
        share += f", mean pass fraction {sum(g['pass_fraction'] for g in graded) / len(lines):.3f}"
    log(f"graded {len(lines)} predictions: {n_correct} correct{share}" + (f"; wrote {out}" if out else ""))
    return {"graded": len(lines), "correct": n_correct}


def grade_prediction(prediction: str | None, gold: str) -> tuple[str | None, bool]:
    """(the answer graded, is it correct): a completion's extracted answer, else the bare answer."""
    if prediction is None:
        return None, False
    return verify.grade(prediction, gold, bare=True, prose=True)


def grade_code_items(items: list[Item]) -> list[dict]:
    """Run each item's code (`gold` holds its tasks.code.CodeTests) in the sandbox, in parallel."""
    codes = [None if item.prediction is None or not item.prediction.strip()
             else extract_code(item.prediction) or item.prediction for item in items]
    results = run_codes(codes, [item.gold for item in items])
    return [{"extracted": code, "correct": r.total > 0 and r.passed == r.total, "pass_fraction": r.fraction,
             "tests_passed": r.passed, "tests_total": r.total, "status": r.status} for code, r in zip(codes, results)]


def read_code_items(path: Path, pred_field: str | None) -> list[Item]:
    """Every line of `path` with its tests (in `Item.gold`); UserError `FILE:LINE: ...` for the first bad one."""
    items = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        items.append(Item(number, record, checked_record_tests(record, where), _prediction(record, pred_field, where)))
    return items


def read_items(path: Path, gold_field: str, pred_field: str | None) -> list[Item]:
    """Every line of `path` as an Item; UserError `FILE:LINE: ...` for the first bad one."""
    items = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        gold = gold_answer(text_field(record, gold_field, where), prose=True)
        items.append(Item(number, record, gold, _prediction(record, pred_field, where)))
    return items


def _prediction(record: dict, pred_field: str | None, where: str) -> str | None:
    """The prediction text of `record` (numbers as text); None for a null prediction."""
    name = pred_field or next((f for f in PRED_FIELDS if f in record), None)
    if name is None or name not in record:
        wanted = repr(pred_field) if pred_field else "one of " + ", ".join(PRED_FIELDS)
        available = ", ".join(repr(k) for k in record) or "none"
        raise UserError(f"{where}: missing prediction field {wanted} (fields: {available}); pass --pred-field")
    value = record[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: field {name!r} is {type(value).__name__}, expected a string or number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
