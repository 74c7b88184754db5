"""FileTask: JSONL, Parquet and saved-dataset round trips, and one-line errors naming file and line."""

import json
import types

import pytest

import r1lab.tasks.files
from r1lab.errors import UserError
from r1lab.tasks.base import split_of
from r1lab.tasks.files import FileTask

ROWS = [
    {"q": f"What is {i} plus {i}?", "a": 2 * i, "language": "zh" if i % 2 else "en", "extra": [i]}
    for i in range(60)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def custom(path, **kwargs) -> FileTask:
    return FileTask(path, question_field="q", answer_field="a", lang_field="language", **kwargs)


def all_problems(task):
    return task.problems("train", 10_000, seed=0) + task.problems("test", 10_000, seed=0)


def assert_round_trip(task, rows=ROWS, test_percent=10):
    problems = {p.key: p for p in all_problems(task)}
    assert set(problems) == {r["q"] for r in rows}
    for r in rows:
        p = problems[r["q"]]
        assert (p.prompt, p.answer, p.lang, p.task) == (r["q"], str(r["a"]), r["language"], task.name)
    for p in task.problems("test", 10_000, seed=0):
        assert split_of(p.key, test_percent) == "test"


def test_jsonl_round_trip_with_custom_fields(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = "".join(json.dumps(r) + "\n\n" for r in ROWS + ROWS[:3])  # blank lines, repeated questions
    path.write_text("\n" + lines, encoding="utf-8")
    assert_round_trip(custom(path))


def test_default_fields_and_number_answers(tmp_path):
    rows = [{"problem": "a", "answer": 3.0}, {"problem": "b", "answer": 2.5}, {"problem": 7, "answer": "x"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    answers = {p.key: (p.answer, p.lang) for p in all_problems(FileTask(path))}
    assert answers == {"a": ("3", "en"), "b": ("2.5", "en"), "7": ("x", "en")}


def test_test_percent_all_or_nothing(tmp_path):
    path = write_jsonl(tmp_path / "bench.jsonl", ROWS)
    assert len(custom(path, test_percent=100).problems("test", 1000, seed=0)) == len(ROWS)
    assert custom(path, test_percent=0).problems("test", 1000, seed=0) == []


def test_problems_are_seeded_and_capped(tmp_path):
    task = custom(write_jsonl(tmp_path / "d.jsonl", ROWS))
    first = task.problems("train", 10, seed=1)
    assert len(first) == 10 and first == task.problems("train", 10, seed=1)
    assert first != task.problems("train", 10, seed=2)
    assert first[:4] == task.problems("train", 4, seed=1)


def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert_round_trip(custom(path))


def test_saved_dataset_round_trip(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert_round_trip(custom(tmp_path / "ds"))


def test_saved_dataset_dict_keeps_its_own_splits(tmp_path):
    import datasets

    train, test = ROWS[:50], ROWS[50:]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)})
    dd.save_to_disk(str(tmp_path / "dd"))
    task = custom(tmp_path / "dd")
    assert {p.key for p in task.problems("train", 1000, seed=0)} == {r["q"] for r in train}
    assert {p.key for p in task.problems("test", 1000, seed=0)} == {r["q"] for r in test}
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "only"))
    assert_round_trip(custom(tmp_path / "only"))


def test_grade_delegates_to_verify(tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(answers_equal=lambda pred, gold: calls.append((pred, gold)) or pred == gold)
    monkeypatch.setattr(r1lab.tasks.files, "verify", fake)  # the module FileTask.grade calls
    task = FileTask(write_jsonl(tmp_path / "d.jsonl", [{"problem": "1+1?", "answer": 2}]))
    problem = all_problems(task)[0]
    assert task.grade("2", problem) and not task.grade("3", problem)
    assert not task.grade(None, problem)
    assert calls == [("2", "2"), ("3", "2")]


def test_grade_with_the_real_verifier(tmp_path):
    pytest.importorskip("r1lab.grading.verify")
    task = FileTask(write_jsonl(tmp_path / "d.jsonl", [{"problem": "1+1?", "answer": 2}]))
    problem = all_problems(task)[0]
    assert task.grade("2", problem) and not task.grade("3", problem)


def test_gold_is_the_final_answer_of_gsm8k_and_math_rationales(tmp_path):
    """The hub's GSM8K `answer` and MATH `solution` columns hold rationales: grade their final answer."""
    rows = [{"problem": "ducks?", "answer": "16 - 3 - 4 = <<16-3-4=9>>9 eggs\n9 * 2 = 18\n#### 18"},
            {"problem": "polar?", "answer": "So $r = 3$ and the point is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$."},
            {"problem": "plain?", "answer": "7"}]
    task = FileTask(write_jsonl(tmp_path / "d.jsonl", rows), test_percent=0)
    gold = {p.prompt: p.answer for p in task.problems("train", 10, seed=0)}
    assert gold == {"ducks?": "18", "polar?": "\\left( 3, \\frac{\\pi}{2} \\right)", "plain?": "7"}
    assert task.grade("18", next(p for p in task.problems("train", 10, seed=0) if p.prompt == "ducks?"))


GOOD = '{"problem": "p", "answer": "1"}\n'


@pytest.mark.parametrize(
    "text, line, words",
    [
        (GOOD + GOOD + '{"problem": "p", "answer": \n', "mydata.jsonl:3", "malformed JSON"),
        (GOOD + "[1, 2]\n", "mydata.jsonl:2", "expected a JSON object"),
        (GOOD + '"just a string"\n', "mydata.jsonl:2", "expected a JSON object"),
        (
            GOOD + '\n{"question": "p", "answer": "1"}\n',
            "mydata.jsonl:3",
            "missing field 'problem' (fields: 'question', 'answer')",
        ),
        (GOOD + '{"problem": "p"}\n', "mydata.jsonl:2", "missing field 'answer'"),
        (GOOD + '{"problem": ["p"], "answer": "1"}\n', "mydata.jsonl:2", "field 'problem' is list"),
        (GOOD + '{"problem": "p", "answer": null}\n', "mydata.jsonl:2", "field 'answer' is null"),
        (GOOD + '{"problem": "p", "answer": true}\n', "mydata.jsonl:2", "field 'answer' is bool"),
        (GOOD + '{"problem": "p", "answer": {"x": 1}}\n', "mydata.jsonl:2", "field 'answer' is dict"),
        (GOOD + '{"problem": "  ", "answer": "1"}\n', "mydata.jsonl:2", "field 'problem' is empty"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "mydata.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        FileTask(path)
    message = str(caught.value)
    assert "mydata.jsonl" in message and line in message and words in message and "\n" not in message


def test_parquet_errors_name_file_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([{"problem": "p", "answer": "1"}, {"problem": "q", "answer": None}]), path)
    with pytest.raises(UserError, match=r"rows\.parquet: row 2: field 'answer' is null"):
        FileTask(path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="junk.parquet"):
        FileTask(tmp_path / "junk.parquet")


@pytest.mark.parametrize("name", ["missing.jsonl", "data.csv", "emptydir"])
def test_unreadable_paths_are_user_errors(tmp_path, name):
    (tmp_path / "data.csv").write_text("problem,answer\n")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(UserError) as caught:
        FileTask(tmp_path / name)
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_bad_test_percent(tmp_path):
    with pytest.raises(UserError):
        FileTask(write_jsonl(tmp_path / "d.jsonl", ROWS), test_percent=101)


def test_a_hub_dataset_id_is_read_through_datasets(monkeypatch, tmp_path):
    """owner/name (no such local path): its train split via `datasets.load_dataset`, split by hash;
    offline, one line."""
    import datasets

    from r1lab.errors import UserError
    from r1lab.runtime import files
    from r1lab.tasks.files import FileTask

    monkeypatch.chdir(tmp_path)
    asked = []
    rows = {"question": [f"What is {i}+1?" for i in range(40)], "answer": [f"One more than {i}.\n#### {i + 1}" for i in range(40)]}
    monkeypatch.setattr(files, "check_hub_reachable", lambda what: None)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda hub_id, config, split: asked.append((hub_id, split)) or datasets.Dataset.from_dict(rows))
    task = FileTask("openai/gsm8k", question_field="question", answer_field="answer")
    assert asked == [("openai/gsm8k", "train")]
    problems = task.problems("train", 100, seed=0) + task.problems("test", 100, seed=0)
    assert len(problems) == 40 and {p.answer for p in problems} == {str(i + 1) for i in range(40)}

    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"nobody-xyz/none: cannot load split 'train' from the Hugging Face hub"):
        FileTask("nobody-xyz/none")
