"""`r1lab grade`: order kept, completions and bare answers, `$...$` golds, --out, one-line errors."""

import json

import pytest

from r1lab.cli import main

LINES = [
    {"id": "a", "answer": "$\\frac{1}{2}$", "completion": "Half of it. \\boxed{0.5}"},  # boxed, $-gold
    {"id": "b", "answer": "18", "prediction": "18"},  # bare answer in the fallback field
    {"id": "c", "answer": "18", "response": "<think>16-3-4=9, 9*2</think> <answer>17</answer>"},
    {"id": "d", "answer": "Janet sells 9 eggs.\n#### 18", "output": "so the answer is 18."},  # rationale gold
    {"id": "e", "answer": 7, "completion": 7.0},  # numbers, not strings
    {"id": "f", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "completion": "\\boxed{(3,\\pi/2)}"},  # symbolic
    {"id": "g", "answer": "5", "completion": None},  # a null prediction is wrong
    {"id": "h", "answer": "5", "completion": "I am not sure."},  # nothing to extract: graded as bare text
]
EXPECTED = [("0.5", True), ("18", True), ("17", False), ("18", True), ("7", True), ("(3,\\pi/2)", True),
            (None, False), ("I am not sure.", False)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_grades_in_input_order_to_stdout(tmp_path, capsys):
    path = write_jsonl(tmp_path / "preds.jsonl", LINES)
    assert main(["grade", str(path)]) == 0
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [(o["extracted"], o["correct"]) for o in out] == EXPECTED
    assert [{k: v for k, v in o.items() if k not in ("extracted", "correct")} for o in out] == LINES  # fields kept
    assert "graded 8 predictions: 5 correct" in captured.err


def test_out_file_and_chosen_fields(tmp_path, capsys):
    rows = [{"gold": "$3$", "completion": "\\boxed{4}", "mine": "\\boxed{3}"}, {"gold": "0.25", "mine": "1/4"}]
    path = write_jsonl(tmp_path / "preds.jsonl", rows)
    out = tmp_path / "graded.jsonl"
    assert main(["grade", str(path), "--gold-field", "gold", "--pred-field", "mine", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(g["extracted"], g["correct"]) for g in graded] == [("3", True), ("1/4", True)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graded.jsonl", "preds.jsonl"]  # no temp file left


def test_a_failed_grade_leaves_an_existing_out_file_alone(tmp_path, capsys):
    out = tmp_path / "graded.jsonl"
    out.write_text("old\n")
    path = write_jsonl(tmp_path / "preds.jsonl", [{"answer": "1", "completion": "1"}, {"completion": "2"}])
    assert main(["grade", str(path), "--out", str(out)]) == 2
    assert out.read_text() == "old\n"


@pytest.mark.parametrize(
    "content, args, needles",
    [
        (None, [], ["missing.jsonl", "no such file"]),
        ('{"answer": "1", "completion": "1"}\n{"answer": "2", "completion": \n', [],
         ["preds.jsonl:2:", "malformed JSON"]),
        ('{"answer": "1", "completion": "1"}\n\n{"completion": "2"}\n', [], ["preds.jsonl:3:", "'answer'"]),
        ('{"answer": "1", "text": "1"}\n', [], ["preds.jsonl:1:", "completion, prediction, response, output"]),
        ('{"answer": "1", "completion": "1"}\n', ["--pred-field", "guess"], ["preds.jsonl:1:", "'guess'"]),
        ('{"answer": "1", "completion": ["1"]}\n', [], ["preds.jsonl:1:", "'completion' is list"]),
        ('{"answer": null, "completion": "1"}\n', [], ["preds.jsonl:1:", "'answer' is null"]),
        ('{"answer": "1", "completion": "1"}\n', ["--out", "{tmp}/no/dir/out.jsonl"], ["no such directory"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, args, needles):
    path = tmp_path / ("missing.jsonl" if content is None else "preds.jsonl")
    if content is not None:
        path.write_text(content)
    code = main(["grade", str(path)] + [a.format(tmp=tmp_path) for a in args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("r1lab: error: ") and captured.err.count("\n") == 1, captured.err
    for needle in needles:
        assert needle in captured.err, (needle, captured.err)


# --------------------------------------------------------------------------------------------
# --task code

CODE_LINES = [
    {"id": "mbpp", "completion": "```python\ndef add(a, b):\n    return a + b\n```",
     "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 1"]},  # 1 of 2
    {"id": "humaneval-body", "completion": "    return a - b\n", "prompt": "def sub(a, b):\n    \"\"\"a - b\"\"\"\n",
     "test": "def check(candidate):\n    assert candidate(3, 1) == 2\n    assert candidate(1, 1) == 0\n",
     "entry_point": "sub"},  # a completion of the body: 2 of 2
    {"id": "bare", "prediction": "def neg(x):\n    return -x\n", "tests": ["assert neg(2) == -2"],
     "test_setup_code": "import math"},  # bare code
    {"id": "null", "completion": None, "tests": ["assert f() == 1"]},
    {"id": "fake", "completion": "print('all tests passed')\nimport os\nos._exit(0)", "tests": ["assert f() == 1"]},
]


def test_code_is_run_against_each_lines_tests(tmp_path, capsys):
    path = write_jsonl(tmp_path / "preds.jsonl", CODE_LINES)
    assert main(["grade", str(path), "--task", "code"]) == 0
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [{k: v for k, v in o.items() if k in CODE_LINES[i]} for i, o in enumerate(out)] == CODE_LINES  # kept
    assert [(o["correct"], o["pass_fraction"], o["tests_passed"], o["tests_total"]) for o in out] == [
        (False, 0.5, 1, 2), (True, 1.0, 2, 2), (True, 1.0, 1, 1), (False, 0.0, 0, 1), (False, 0.0, 0, 1)]
    assert [o["status"] for o in out] == ["failed", "passed", "passed", "error", "exited"]
    assert out[0]["extracted"] == "def add(a, b):\n    return a + b\n" and out[3]["extracted"] is None
    assert "graded 5 predictions: 2 correct (40.0%), mean pass fraction 0.500" in captured.err


@pytest.mark.parametrize(
    "line, needles",
    [
        ({"completion": "x = 1"}, ["preds.jsonl:2:", "no tests", "'tests'", "'test'", "'entry_point'"]),
        ({"completion": "x = 1", "tests": "assert x == 1"}, ["preds.jsonl:2:", "non-empty list of strings"]),
        ({"completion": "x = 1", "tests": ["assert x =="]}, ["preds.jsonl:2:", "test 1 is not valid Python"]),
        ({"completion": "x = 1", "test": "def check(c): pass"}, ["preds.jsonl:2:", "no tests"]),
        ({"text": "x = 1", "tests": ["assert x == 1"]}, ["preds.jsonl:2:", "completion, prediction, response, output"]),
    ],
)
def test_bad_code_input_is_one_line_and_exit_2(tmp_path, capsys, line, needles):
    path = write_jsonl(tmp_path / "preds.jsonl", [{"completion": "x = 1", "tests": ["assert x == 1"]}, line])
    code = main(["grade", str(path), "--task", "code"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("r1lab: error: ") and captured.err.count("\n") == 1, captured.err
    for needle in needles:
        assert needle in captured.err, (needle, captured.err)
