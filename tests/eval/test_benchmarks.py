"""Benchmark loading: the real offline files, field detection, presets, and one-line errors."""

import json
import socket
from pathlib import Path

import pytest

import r1lab.tasks as tasks
from r1lab.errors import UserError
from r1lab.eval.benchmarks import PRESETS, DataSpec, load_benchmark
from r1lab.rl.rewards import accuracy
from r1lab.runtime.files import read_jsonl
from r1lab.tasks import MathTask, get_task

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "math500.jsonl").exists(), reason="../shared/data not present")


pytestmark = pytest.mark.usefixtures("empty_registry")  # each test starts with no task registered


@needs_data
@pytest.mark.parametrize(
    "name, count, first_id, first_answer",
    [
        ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("gsm8k_test", 1319, "gsm8k-test-0000", "18"),
        ("aime24", 30, "aime24-60", "204"),
        ("aime25", 30, "aime25-0", "70"),
        ("amc23", 40, "amc23-0", "27"),
    ],
)
def test_real_files_load_in_order_with_ids(name, count, first_id, first_answer):
    bench = load_benchmark(DataSpec(str(DATA / f"{name}.jsonl")))
    assert bench.name == name and len(bench.problems) == count
    first = bench.problems[0]
    assert first.meta["id"] == first_id and first.answer == first_answer and first.task == "math"
    assert (bench.question_field, bench.answer_field) == ("problem", "answer")
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
        last = json.loads(f.readlines()[-1])
    assert bench.problems[-1].prompt == last["problem"] and bench.problems[-1].meta["id"] == last["id"]


@needs_data
def test_math500_breakdowns_are_detected():
    bench = load_benchmark(DataSpec(str(DATA / "math500.jsonl")))
    assert bench.breakdowns == ("subject", "level")
    subjects = [p.meta["subject"] for p in bench.problems]
    assert subjects.count("Algebra") == 124 and subjects.count("Counting & Probability") == 38
    assert [p.meta["level"] for p in bench.problems].count("5") == 134  # ints become "5"


@needs_data
def test_limit_takes_the_first_problems():
    full = load_benchmark(DataSpec(str(DATA / "gsm8k_test.jsonl")))
    three = load_benchmark(DataSpec(str(DATA / "gsm8k_test.jsonl"), limit=3))
    assert [p.meta["id"] for p in three.problems] == [p.meta["id"] for p in full.problems[:3]]


@needs_data
def test_a_rationale_gold_is_reduced_to_its_final_answer():
    bench = load_benchmark(DataSpec(str(DATA / "gsm8k_test.jsonl"), answer_field="solution", limit=2))
    assert [p.answer for p in bench.problems] == ["18", "3"]


@needs_data
def test_preset_forces_its_field_names(tmp_path):
    bench = load_benchmark(DataSpec(str(DATA / "math500.jsonl"), preset="math500", limit=2))
    assert bench.breakdowns == ("subject", "level")
    with pytest.raises(UserError, match=r"gsm8k_test.jsonl:1: missing field 'question'"):
        load_benchmark(DataSpec(str(DATA / "gsm8k_test.jsonl"), preset="gsm8k"))
    # A local copy in the hub's schema: GSM8K's question + rationale answer.
    path = tmp_path / "gsm8k_hub.jsonl"
    path.write_text(json.dumps({"question": "Q?", "answer": "6 + 12 = <<6+12=18>>18\n#### 18"}) + "\n")
    (problem,) = load_benchmark(DataSpec(str(path), preset="gsm8k")).problems
    assert (problem.prompt, problem.answer, problem.meta["id"]) == ("Q?", "18", "0")


def test_fields_are_detected_in_order_and_can_be_given(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"question": "a", "prompt": "b", "final_answer": 2.0, "type": "T"}, {"question": "c", "prompt": "d",
                                                                                "final_answer": "1/2", "type": "U"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = load_benchmark(DataSpec(str(path)))
    assert [(p.prompt, p.answer, p.meta) for p in bench.problems] == [
        ("a", "2", {"id": "0", "type": "T"}), ("c", "1/2", {"id": "1", "type": "U"})]
    given = load_benchmark(DataSpec(str(path), question_field="prompt"))
    assert [p.prompt for p in given.problems] == ["b", "d"]


def test_parquet_and_saved_datasets(tmp_path):
    import datasets

    rows = {"problem": ["1+1", "2+2"], "answer": ["2", "4"], "level": [1, 2]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "d.parquet"))
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dd"))
    for source in (tmp_path / "d.parquet", tmp_path / "dd"):
        bench = load_benchmark(DataSpec(str(source)))
        assert [(p.prompt, p.answer, p.meta["level"]) for p in bench.problems] == [("1+1", "2", "1"), ("2+2", "4", "2")]
    with pytest.raises(UserError, match=r"no split 'train' \(splits: test\)"):
        load_benchmark(DataSpec(str(tmp_path / "dd"), split="train"))


@pytest.mark.parametrize(
    "content, needles",
    [
        ('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n', ["d.jsonl:2:", "malformed JSON"]),
        ('{"problem": "a", "answer": "1"}\n\n{"problem": "b"}\n', ["d.jsonl:3:", "missing field 'answer'"]),
        ('{"problem": "a", "answer": null}\n', ["d.jsonl:1:", "'answer' is null"]),
        ('{"problem": "a", "answer": " "}\n', ["d.jsonl:1:", "'answer' is empty"]),
        ('{"text": "a", "answer": "1"}\n', ["d.jsonl:1:", "no question field", "problem, question, prompt", "'text'"]),
        ('[1, 2]\n', ["d.jsonl:1:", "expected a JSON object"]),
        ("\n\n", ["d.jsonl", "no records"]),
    ],
)
def test_bad_data_is_one_line_naming_file_and_line(tmp_path, content, needles):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(UserError) as e:
        load_benchmark(DataSpec(str(path)))
    assert "\n" not in str(e.value)
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))


@pytest.mark.parametrize(
    "spec, needle",
    [
        (DataSpec(""), "preset name"),
        (DataSpec("nowhere/data.jsonl"), "no such file"),
        (DataSpec("x.csv"), "no such file"),
        (DataSpec("math500", preset="math5000"), "math500, gsm8k"),
        (DataSpec("math500", limit=0), "limit"),
    ],
)
def test_bad_specs(spec, needle):
    with pytest.raises(UserError, match=needle):
        load_benchmark(spec)


def test_unknown_local_format(tmp_path):
    (tmp_path / "d.csv").write_text("problem,answer\n")
    with pytest.raises(UserError, match="unknown format '.csv'"):
        load_benchmark(DataSpec(str(tmp_path / "d.csv")))


@pytest.mark.parametrize("spec", ["math500", "gsm8k", "someone/some-dataset"])
def test_hub_offline_fails_fast_in_one_line(spec, monkeypatch):
    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    hub_id = PRESETS[spec].hub_id if spec in PRESETS else spec
    with pytest.raises(UserError, match=f"{hub_id}: cannot reach .*offline") as e:
        load_benchmark(DataSpec(spec))
    assert "\n" not in str(e.value)


def test_read_jsonl_reports_bad_utf8(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:2: not UTF-8"):
        list(read_jsonl(path))


@needs_data
def test_benchmark_problems_are_graded_by_the_math_task_and_the_rl_reward():
    """One code path: rewards.accuracy finds MathTask through problem.task and grades by equivalence."""
    bench = load_benchmark(DataSpec(str(DATA / "math500.jsonl"), limit=1))  # gold (3, \pi/2)
    problem = bench.problems[0]
    assert isinstance(get_task(problem.task), MathTask)
    completions = ["so \\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", "\\boxed{(3,\\pi/2)}", "\\boxed{(3, \\pi)}",
                   "(3, pi/2)"]
    assert accuracy(completions, [problem] * 4) == [1.0, 1.0, 0.0, 0.0]  # the last has no boxed answer


def test_math_task_grades_numbers_exactly_and_has_no_problems_of_its_own():
    task = get_task("math")
    problem = tasks.Problem(key="q", prompt="q", answer="0.5", task="math")
    answers = ("1/2", "\\frac{1}{2}", "0.50", "0.51", None)
    assert [task.grade(a, problem) for a in answers] == [True, True, True, False, False]
    with pytest.raises(UserError, match="no problems of its own"):
        task.problems("test", 1, seed=0)


def test_built_in_task_spec_gives_the_r1_zero_held_out_set():
    bench = load_benchmark(DataSpec("task:arithmetic"))
    assert bench.name == "arithmetic" and len(bench.problems) == 100 and bench.breakdowns == ("lang",)
    assert {p.lang for p in bench.problems} == {"en", "zh", "ja", "ko"}
    assert all(p.task == "arithmetic" and p.meta["lang"] == p.lang for p in bench.problems)
    held_out = get_task("arithmetic").problems("test", 100, seed=1, langs=("en", "zh", "ja", "ko"))
    assert [p.key for p in bench.problems] == [p.key for p in held_out]  # as `r1lab zero` draws them
    assert len({p.meta["id"] for p in bench.problems}) == 100
    assert len(load_benchmark(DataSpec("task:countdown", limit=7)).problems) == 7


@pytest.mark.parametrize("source, needle", [("task:sudoku", "sudoku"), ("task:file", "built-in"), ("task:math", "built-in")])
def test_built_in_task_spec_errors(source, needle):
    with pytest.raises(UserError, match=needle):
        load_benchmark(DataSpec(source))


# --------------------------------------------------------------------------------------------
# Code benchmarks


@needs_data
def test_code_files_load_as_code_problems_with_their_tests():
    he = load_benchmark(DataSpec(str(DATA / "humaneval.jsonl")))
    assert (he.kind, len(he.problems), he.problems[0].meta["id"], he.problems[0].task) == ("code", 164, "HumanEval/0", "code")
    first = he.problems[0]
    assert first.meta["entry_point"] == "has_close_elements" and first.meta["prefix"].startswith("from typing import List")
    assert len(first.meta["tests"]) == 7 and first.meta["setup"].endswith("candidate = has_close_elements\n")
    assert first.answer.startswith("    for idx, elem in enumerate(numbers):")  # the gold is kept as it is
    mbpp = load_benchmark(DataSpec(str(DATA / "mbpp.jsonl"), split="test"))
    assert (mbpp.kind, len(mbpp.problems), mbpp.problems[0].meta["id"]) == ("code", 500, "mbpp-11")
    assert mbpp.problems[0].prompt.endswith('assert remove_Occ("PHP","P") == "H"')
    assert len(load_benchmark(DataSpec(str(DATA / "mbpp.jsonl"))).problems) == 974  # no --split: every record
    assert load_benchmark(DataSpec(str(DATA / "math500.jsonl"), limit=1)).kind == "math"


def test_code_presets_and_built_in_code_task():
    assert (PRESETS["humaneval"].kind, PRESETS["mbpp"].kind, PRESETS["math500"].kind) == ("code", "code", "math")
    bench = load_benchmark(DataSpec("task:code", limit=5))
    assert bench.kind == "code" and bench.breakdowns == () and {p.lang for p in bench.problems} == {"en"}
    assert [p.key for p in bench.problems] == [p.key for p in get_task("code").problems("test", 5, seed=1)]


def test_split_of_a_local_file(tmp_path):
    rows = [{"problem": "f", "answer": "x", "test_list": ["assert 1"], "split": s} for s in ("train", "test", "test")]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.meta["id"] for p in load_benchmark(DataSpec(str(path), split="test")).problems] == ["0", "1"]
    with pytest.raises(UserError, match="no records of split 'dev'"):
        load_benchmark(DataSpec(str(path), split="dev"))
    math = tmp_path / "m.jsonl"
    math.write_text('{"problem": "1+1", "answer": "2"}\n')
    with pytest.raises(UserError, match=r"m.jsonl:1: --split test given, but the records have no 'split' field"):
        load_benchmark(DataSpec(str(math), split="test"))


def test_eval_on_a_code_benchmark_reports_pass_at_k(tmp_path):
    """`r1lab eval` end to end on HumanEval-format data, with chosen completions: run in the sandbox,
    correct only when every test passes, pass@1 / pass@k, no cons@k."""
    from r1lab.engine.sampler import Generation
    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.stages.eval import CODE_INSTRUCTION, EvalRunConfig, run_eval

    model = tmp_path / "model"
    train_tokenizer(["def f(x): return x"] * 10, vocab_size=300).save_pretrained(model)
    (model / "config.json").write_text("{}")  # the sampler below stands in for the model
    test = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    rows = [{"id": "sq", "prompt": "def sq(x):\n    \"\"\"x squared\"\"\"\n", "test": test, "entry_point": "sq",
             "canonical_solution": "    return x * x\n"}]
    data = tmp_path / "he.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    completions = ["```python\ndef sq(x):\n    return x * x\n```",  # all tests
                   "<answer>    return x ** 2</answer>",  # the body, continuing the prompt
                   "```python\ndef sq(x):\n    return x + 2\n```",  # 1 of 2: not correct
                   "x squared is x times x"]  # no code

    class Scripted:
        prompts = []

        def generate(self, prompts, n, params):
            self.prompts += prompts
            ids = [[7, 7] for _ in range(n * len(prompts))]
            return Generation([[1]] * len(prompts), ids, completions * len(prompts), [False] * len(ids), n, seconds=1.0)

    sampler = Scripted()
    cfg = EvalRunConfig(model=str(model), data=DataSpec(str(data), question_field="prompt", answer_field="canonical_solution"),
                        k=4, template="plain", out=str(tmp_path / "out"))
    r = run_eval(cfg, log=lambda *a: None, sampler=sampler)
    assert sampler.prompts[0].endswith(CODE_INSTRUCTION) and "```python\ndef sq(x):" in sampler.prompts[0]
    assert r["pass@1"] == 0.5 and r["pass@k"] == {"1": 0.5, "2": pytest.approx(5 / 6), "3": 1.0, "4": 1.0}
    assert "cons@k" not in r and r["data"]["kind"] == "code"
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [s["correct"] for s in samples] == [True, True, False, False]
    assert samples[1]["extracted"] == "    return x ** 2" and samples[3]["extracted"] is None
