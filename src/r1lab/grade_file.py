"""`r1lab grade`: grade a JSONL file of predictions against gold answers.

    r1lab grade INPUT.jsonl [--gold-field answer] [--pred-field completion] [--out FILE]

Each line of INPUT is a JSON object holding
  * a gold answer, in `--gold-field` (default `answer`): a plain answer, with or without `$...$`,
    or a rationale (GSM8K's "... #### 18", a solution ending in \\boxed{}), which
    `verify.gold_answer` reduces to its final answer;
  * a prediction, in `--pred-field`, else in the first of `completion`, `prediction`,
    `response`, `output` that the line has: a full completion, whose final answer is extracted as
    `r1lab eval` does (`<answer>` tags, `\\boxed{}`, `#### X`, "the answer is X"), or a bare answer
    such as `0.5`, graded as it is when nothing can be extracted (`verify.grade(..., bare=True)`).
    A null prediction is graded wrong.

The output has one line per input line, in input order: the input object with `extracted` (the
answer that was graded, or null) and `correct` (bool) added. It goes to stdout, or to --out,
which is written to a temporary file and then renamed, so it is never left half-written. The
count of correct predictions goes to stderr. Every line is checked before any is graded; a
missing file, malformed JSON or a missing field stops with `FILE:LINE: ...` (exit status 2).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from r1lab import verify
from r1lab.benchmarks import read_jsonl
from r1lab.tasks.files import text_field
from r1lab.errors import UserError

PRED_FIELDS = ("completion", "prediction", "response", "output")


@dataclass
class GradeConfig:
    input: str = ""  # the JSONL file of predictions
    gold_field: str = "answer"
    pred_field: str | None = None  # default: the first of PRED_FIELDS the line has
    out: str | None = None  # default: stdout


@dataclass
class Item:
    line: int  # line number in the input file
    record: dict  # the input object
    gold: str  # final gold answer
    prediction: str | None  # the completion or bare answer; None is graded wrong


def grade_file(cfg: GradeConfig, log=lambda message: print(message, file=sys.stderr)) -> dict:
    """Grade every line of `cfg.input`, write the graded lines, return {"graded", "correct"}."""
    items = read_items(Path(cfg.input), cfg.gold_field, cfg.pred_field)
    out = Path(cfg.out) if cfg.out else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"{out}: no such directory {str(out.parent)!r}")
    lines, n_correct = [], 0
    for item in items:
        extracted, correct = grade_prediction(item.prediction, item.gold)
        n_correct += correct
        lines.append(json.dumps({**item.record, "extracted": extracted, "correct": correct}, ensure_ascii=False) + "\n")
    text = "".join(lines)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    share = f" ({n_correct / len(lines):.1%})" if lines else ""
    log(f"graded {len(lines)} predictions: {n_correct} correct{share}" + (f"; wrote {out}" if out else ""))
    return {"graded": len(lines), "correct": n_correct}


def grade_prediction(prediction: str | None, gold: str) -> tuple[str | None, bool]:
    """(the answer graded, is it correct): a completion's extracted answer, else the bare answer."""
    if prediction is None:
        return None, False
    return verify.grade(prediction, gold, bare=True)


def read_items(path: Path, gold_field: str, pred_field: str | None) -> list[Item]:
    """Every line of `path` as an Item; UserError `FILE:LINE: ...` for the first bad one."""
    items = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        gold = verify.gold_answer(text_field(record, gold_field, where))
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
