"""The code task: extraction, HumanEval/MBPP tests, the built-in problems, and grading in the sandbox."""

import json
from pathlib import Path

import pytest

from r1lab.errors import UserError
from r1lab.tasks import CodeTask, get_task, make_task
from r1lab.tasks.base import Problem, split_of
from r1lab.tasks.code import (
    TEMPLATES,
    CodeTests,
    assemble,
    checked_record_tests,
    code_problem,
    extract_code,
    problem_tests,
    record_tests,
    run_codes,
    split_check,
    function_under_test,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "humaneval.jsonl").exists(), reason="../shared/data not present")


pytestmark = pytest.mark.usefixtures("empty_registry")  # each test starts with no task registered


EXTRACT = [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
    ("first\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```\n", "x = 2\n"),  # the last block
    ("```\nx = 3\n```", "x = 3\n"),  # untagged
    ("```python\nx = 1\n```\n```bash\nrm -rf /\n```", "x = 1\n"),  # not Python: skipped
    ("<think>...</think><answer>def f():\n    return 2</answer>", "def f():\n    return 2"),
    ("<answer>old</answer> ... <answer>```python\nx = 4\n```</answer>", "x = 4\n"),
    ("<answer>x = 5</answer>\n```python\nx = 6", "x = 5"),  # an unfinished block does not count
    ("def f(): return 1", None),  # no block, no tag
    ("<answer>  </answer>", None),
]


@pytest.mark.parametrize("completion, expected", EXTRACT)
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


def test_assemble_continues_a_header_or_follows_it():
    header = "import math\n\ndef f(x):\n    \"\"\"Square root.\"\"\"\n"
    assert assemble("    return math.sqrt(x)\n", header, "f") == header + "    return math.sqrt(x)\n"
    full = "def f(x):\n    return math.sqrt(x)\n"
    assert assemble(full, header, "f") == header + "\n" + full  # the header's import stays
    assert assemble(full) == full


HUMANEVAL_TEST = '''
METADATA = {"author": "x"}

def helper(v):
    return v * 2

def check(candidate):
    # first, simple cases
    assert candidate(1) == 2
    assert True, "this prints if the assert fails"
    values = [helper(i) for i in range(3)]
    for v in values:
        assert candidate(v) == 2 * v
    print("done")
'''


def test_split_check_counts_each_real_assert_with_what_precedes_it():
    setup, tests = split_check(HUMANEVAL_TEST, "double")
    assert "METADATA" in setup and "def helper" in setup and setup.endswith("candidate = double\n")
    assert "def check" not in setup
    assert len(tests) == 2  # `assert True` is no test: it joins the next one
    assert tests[0] == "assert candidate(1) == 2"
    assert tests[1].startswith("assert True") and "for v in values" in tests[1] and tests[1].endswith("print('done')")


@pytest.mark.parametrize("test", ["def check(a, b):\n    assert a == b\n", "x = 1\n", "def check(c):\n    return c\n",
                                  "def check(c):\n    print(c)\n", "def check(c:\n"])
def test_split_check_falls_back_to_one_test(test):
    assert split_check(test, "f") == (test, ["check(f)"])


def test_code_tests_from_records_and_their_errors():
    assert record_tests({"tests": ["assert f() == 1"], "test_setup_code": "x = 1"}, "w") == CodeTests(("assert f() == 1",), "x = 1", entry_point="f")
    assert record_tests({"test_list": ["assert f() == 1"]}, "w").tests == ("assert f() == 1",)
    spec = record_tests({"test": HUMANEVAL_TEST, "entry_point": "double", "prompt": "def double(x):\n"}, "w")
    assert (len(spec.tests), spec.prefix, spec.entry_point) == (2, "def double(x):\n", "double")
    with pytest.raises(UserError, match=r"^f.jsonl:3: no tests: .*\(fields: 'completion'\)"):
        record_tests({"completion": "x"}, "f.jsonl:3")
    with pytest.raises(UserError, match="non-empty list of strings"):
        record_tests({"tests": "assert f() == 1"}, "w")
    with pytest.raises(UserError, match="non-empty list"):
        record_tests({"tests": []}, "w")
    with pytest.raises(UserError, match="function name"):
        record_tests({"test": "def check(c): pass", "entry_point": "not a name"}, "w")
    with pytest.raises(UserError, match=r"^f.jsonl:2: test 2 is not valid Python"):
        checked_record_tests({"tests": ["assert f() == 1", "assert f( =="]}, "f.jsonl:2")


def test_benchmark_prompts():
    mbpp = code_problem({"test_list": ["assert f(1) == 2"]}, "Write f.", "def f(x): return x + 1", "m1", "w")
    assert mbpp.prompt == "Write f.\nYour code should pass these tests:\nassert f(1) == 2"
    assert (mbpp.task, mbpp.meta["id"], mbpp.answer) == ("code", "m1", "def f(x): return x + 1")
    he = code_problem({"test": HUMANEVAL_TEST, "entry_point": "f", "prompt": "def f(x):\n"}, "def f(x):\n", "  ...", "h", "w")
    assert he.prompt == "Complete the following Python function:\n```python\ndef f(x):\n```"


# --------------------------------------------------------------------------------------------
# Built-in problems


def test_problems_are_deterministic_distinct_and_split_by_key():
    task = CodeTask()
    train = task.problems("train", 200, seed=3)
    assert [p.key for p in train] == [p.key for p in task.problems("train", 200, seed=3)]
    assert [p.key for p in train] != [p.key for p in task.problems("train", 200, seed=4)]
    assert len({p.key for p in train}) == 200 and all(split_of(p.key) == "train" for p in train)
    test = task.problems("test", 100, seed=3)
    assert not {p.key for p in test} & {p.key for p in train}
    assert len({p.meta["template"] for p in train}) >= 15  # templates first, not 85% polynomials
    # a problem's tests depend on the problem only, never on the seed that drew it
    again = {p.key: p for p in task.problems("train", 400, seed=9)}
    assert all(again[p.key].meta["tests"] == p.meta["tests"] for p in train if p.key in again)


def test_problems_are_english_only_and_bounded():
    with pytest.raises(UserError, match="English prompts only"):
        CodeTask().problems("train", 1, seed=0, langs=("en", "zh"))
    with pytest.raises(UserError, match="split"):
        CodeTask().problems("dev", 1, seed=0)
    with pytest.raises(UserError, match="found only"):
        CodeTask().problems("test", 5000, seed=0)


def test_every_template_makes_a_problem_its_reference_solves():
    problems = [template.problem(template.settings()[0]) for template in TEMPLATES]
    assert len(TEMPLATES) == 18 and sum(len(t.settings()) for t in TEMPLATES) == 7636
    for p in problems:
        assert p.prompt.startswith(f"Write a Python function `{p.meta['template']}(") and "For example" in p.prompt
        assert len(p.meta["tests"]) == 5
    results = run_codes([p.answer for p in problems], [problem_tests(p) for p in problems])
    assert [(p.key, r.status) for p, r in zip(problems, results)] == [(p.key, "passed") for p in problems]


def test_grade_and_score_run_the_code():
    task = get_task("code")
    assert isinstance(task, CodeTask) and isinstance(make_task("code"), CodeTask)
    tests = ("assert clamp([1, 9]) == [1, 5]", "assert clamp([-3]) == [0]", "assert clamp([2]) == [2]")
    problem = Problem("clamp", "Clamp to [0, 5].", "", "code", meta=CodeTests(tests).as_meta())
    right = "<think>min and max</think><answer>```python\ndef clamp(xs):\n    return [min(max(x, 0), 5) for x in xs]\n```</answer>"
    assert task.grade(right, problem) and task.score(right, problem) == 1.0
    lower_only = "def clamp(xs):\n    return [max(x, 0) for x in xs]\n"  # wrong above 5
    assert task.score(lower_only, problem) == pytest.approx(2 / 3) and not task.grade(lower_only, problem)
    assert task.score(None, problem) == 0.0 and not task.grade(None, problem)
    assert task.score("   ", problem) == 0.0


def test_results_without_code_are_zero_without_a_run():
    spec = CodeTests(("assert f() == 1", "assert f() == 1"))
    [none, some] = run_codes([None, "def f():\n    return 1\n"], [spec, spec])
    assert (none.passed, none.total, none.status, none.detail) == (0, 2, "error", "no code found in the completion")
    assert (some.passed, some.status) == (2, "passed")


# --------------------------------------------------------------------------------------------
# The real benchmarks


def real_problems(name: str, n: int, split: str | None = None):
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines()]
    rows = [r for r in rows if split is None or r.get("split") == split][:n]
    return [code_problem(r, r["problem"], r["answer"], r["id"], f"{name}:{i}") for i, r in enumerate(rows, 1)]


@needs_data
def test_reference_solutions_of_humaneval_and_mbpp_pass_and_wrong_ones_do_not():
    """A sample here (all 164 + 974 pass too: run in the development log, ~40 s)."""
    problems = real_problems("humaneval.jsonl", 12) + real_problems("mbpp.jsonl", 12, split="test")
    right = run_codes([p.answer for p in problems], [problem_tests(p) for p in problems])
    assert [r.status for r in right] == ["passed"] * len(problems), [(p.meta["id"], r.detail) for p, r in zip(problems, right)]
    assert all(r.total >= 3 for r in right)
    wrong = run_codes(["    return None\n" if p.meta["prefix"] else "pass\n" for p in problems], [problem_tests(p) for p in problems])
    assert all(r.passed < r.total for r in wrong)


def test_the_function_under_test_is_read_from_the_tests_alone():
    assert function_under_test(("assert abs(f(1.5) - 0.5) < 1e-9", "assert set(g(1)) == {1}")) == "f"
    assert function_under_test(("assert sum(10, 15) == 25",)) == "sum"  # MBPP-126: only built-ins called
    assert function_under_test(("assert True",)) == ""
    assert record_tests({"test_list": ["assert sum(10, 15) == 25"]}, "x").entry_point == "sum"
