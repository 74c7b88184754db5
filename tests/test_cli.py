"""Every user mistake is one line on stderr, exit status 2, and leaves no run directory behind."""

import pytest

from r1lab.cli import main


@pytest.fixture
def bad_jsonl(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n')
    return path


@pytest.fixture
def missing_field_jsonl(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"question": "2+2", "answer": "4"}\n')
    return path


CASES = {
    "unknown key": (["zero", "grpo.lr_rate=1"], ["grpo.lr_rate", "did you mean 'grpo.lr'"]),
    "bad type": (["zero", "grpo.group_size=abc"], ["grpo.group_size", "expected int"]),
    "group size 1": (["zero", "grpo.group_size=1"], ["grpo.group_size", "at least 2"]),
    "negative lr": (["zero", "grpo.lr=-1e-5"], ["grpo.lr", "positive"]),
    "unknown aggregation": (["zero", "grpo.aggregation=mean"], ["grpo.aggregation", "token_mean"]),
    "unknown reward": (["zero", "rewards={{accuracy: 1.0, nope: 1.0}}"], ["nope", "accuracy"]),
    "missing recipe": (["zero", "nowhere.yaml"], ["nowhere.yaml"]),
    "not key=value": (["zero", "recipes/zero.yaml", "grpo.lr"], ["key=value", "grpo.lr"]),
    "missing base": (["zero", "base={tmp}/no-model"], ["no-model", "config.json"]),
    "unknown task": (["zero", "data.task=sudoku"], ["sudoku", "arithmetic"]),
    "file task without path": (["zero", "data.task=file"], ["data.path"]),
    "missing data file": (["zero", "data.task=file", "data.path={tmp}/none.jsonl"], ["none.jsonl"]),
    "malformed jsonl": (["zero", "data.task=file", "data.path={bad}"], ["train.jsonl", "line 2"]),
    "missing field": (["zero", "data.task=file", "data.path={missing}"], ["train.jsonl", "line 2", "problem"]),
    "resume nothing": (["zero", "run_dir={tmp}/run", "--resume"], ["--resume", "checkpoint"]),
    "pretrain bad value": (["pretrain", "steps=0"], ["steps", ">= 1"]),
}


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_and_exit_2(name, tmp_path, bad_jsonl, missing_field_jsonl, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent if name == "not key=value" else tmp_path)
    if name == "not key=value":
        (tmp_path.parent / "recipes").mkdir(exist_ok=True)
        (tmp_path.parent / "recipes" / "zero.yaml").write_text("seed: 0\n")
    args, needles = CASES[name]
    args = [a.format(tmp=tmp_path, bad=bad_jsonl, missing=missing_field_jsonl) for a in args]
    extra = [] if args[0] == "pretrain" or name == "resume nothing" else [f"run_dir={tmp_path}/run"]
    code = main(args + extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "run").exists()
