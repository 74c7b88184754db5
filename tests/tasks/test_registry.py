"""The task registry: get_task(problem.task) finds the task that made the problem."""

import json

import pytest

import r1lab.tasks as tasks
from r1lab.errors import UserError
from r1lab.tasks import ArithmeticTask, CountdownTask, FileTask, get_task, make_task, register_task

pytestmark = pytest.mark.usefixtures("empty_registry")  # each test starts with no task registered


def test_get_task_gives_one_default_instance_per_name():
    assert isinstance(get_task("arithmetic"), ArithmeticTask) and isinstance(get_task("countdown"), CountdownTask)
    assert get_task("arithmetic") is get_task("arithmetic")
    assert get_task("arithmetic").digits == 4


def test_registered_task_is_found_from_its_problems():
    task = register_task(make_task("arithmetic", digits=2, terms=3, ops="+-"))
    problem = task.problems("train", n=1, seed=0)[0]
    assert get_task(problem.task) is task


def test_make_task_does_not_register():
    make_task("countdown", n_numbers=4)
    assert get_task("countdown").n_numbers == 3


@pytest.mark.parametrize(
    "name, settings, words",
    [
        ("sudoku", {}, "arithmetic, countdown, signs, file"),
        ("arithmetic", {"digitz": 3}, "'digitz'"),
        ("arithmetic", {"digitz": 3}, "digits, terms, ops"),
        ("countdown", {"digits": 3}, "n_numbers, max_number, max_target"),
        ("file", {}, "'path'"),
        ("arithmetic", {"digits": -1}, "digits"),
    ],
)
def test_make_task_errors_name_the_choices(name, settings, words):
    with pytest.raises(UserError, match=words):
        make_task(name, **settings)


def test_unknown_name_is_a_user_error():
    with pytest.raises(UserError, match="arithmetic, countdown"):
        get_task("sudoku")
    with pytest.raises(UserError):
        get_task("file")


def test_file_tasks_load_on_first_use(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n")
    task = get_task(f"file:{path}")
    assert isinstance(task, FileTask) and get_task(task.name) is task
    problem = (task.problems("train", 5, seed=0) + task.problems("test", 5, seed=0))[0]
    assert get_task(problem.task) is task


def test_exports():
    assert tasks.apply_template("x").endswith("User: x. Assistant:")
    assert tasks.LANGS == ("en", "zh", "ja", "ko")
    assert callable(tasks.split_of) and tasks.Problem and "{prompt}" in tasks.R1_ZERO_TEMPLATE
