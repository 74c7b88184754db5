"""Every user mistake is one line on stderr, exit status 2, and leaves no run directory behind."""

import pytest

from r1lab.cli import main


@pytest.fixture
def bad_jsonl(tmp_path):
    path = tmp_path / "bad" / "train.jsonl"  # not the same file as missing_field_jsonl's
    path.parent.mkdir()
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
    "missing base": (["zero", "base={tmp}/no-model"], ["no-model", "no such model directory"]),
    "unknown task": (["zero", "data.task=sudoku"], ["sudoku", "arithmetic"]),
    "file task without path": (["zero", "data.task=file"], ["data.path"]),
    "missing data file": (["zero", "data.task=file", "data.path={tmp}/none.jsonl"], ["none.jsonl"]),
    "malformed jsonl": (["zero", "data.task=file", "data.path={bad}"], ["train.jsonl:2", "malformed JSON"]),
    "missing field": (["zero", "data.task=file", "data.path={missing}"], ["train.jsonl:2", "problem"]),
    "resume nothing": (["zero", "run_dir={tmp}/run", "--resume"], ["--resume", "checkpoint"]),
    "sft resume nothing": (["sft", "data={tmp}/none.jsonl", "run_dir={tmp}/run", "--resume"], ["--resume", "checkpoint"]),
    "rm resume nothing": (["rm", "run_dir={tmp}/run", "--resume"], ["--resume", "checkpoint"]),
    "pretrain bad value": (["pretrain", "steps=0"], ["steps", ">= 1"]),
    "unknown command": (["zero2"], ["invalid choice", "zero2"]),
    "bad option type": (["zero", "--resume=3"], ["--resume"]),
}


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_and_exit_2(name, tmp_path, bad_jsonl, missing_field_jsonl, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent if name == "not key=value" else tmp_path)
    if name == "not key=value":
        (tmp_path.parent / "recipes").mkdir(exist_ok=True)
        (tmp_path.parent / "recipes" / "zero.yaml").write_text("seed: 0\n")
    args, needles = CASES[name]
    args = [a.format(tmp=tmp_path, bad=bad_jsonl, missing=missing_field_jsonl) for a in args]
    extra = [] if args[0] == "pretrain" or name.endswith("resume nothing") else [f"run_dir={tmp_path}/run"]
    code = main(args + extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "run").exists()


# --- r1lab eval: every mistake is found before the model loads or anything is written ----------


@pytest.fixture
def config_only_model(tmp_path):
    """A model directory with a config and a tokenizer but no weights: enough for every check."""
    from transformers import Qwen2Config

    from r1lab.model.tokenizer import train_tokenizer

    path = tmp_path / "model"
    Qwen2Config(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(path)
    tok = train_tokenizer(["abc abd"] * 5, vocab_size=280)
    tok.chat_template = None  # a tokenizer without one (r1lab's own carries the R1-Zero template)
    tok.save_pretrained(path)
    return path


EVAL_CASES = {
    "no model dir": (["{tmp}/nomodel"], ["nomodel", "no such model directory"]),
    "no config.json": (["{tmp}"], ["config.json"]),
    "k 0": (["{model}", "--k", "0"], ["k: expected >= 1, got 0"]),
    "top-p 0": (["{model}", "--top-p", "0"], ["top-p", "0 < top-p <= 1"]),
    "top-p above 1": (["{model}", "--top-p", "1.5"], ["top-p", "1.5"]),
    "negative temperature": (["{model}", "--temperature", "-0.1"], ["temperature", ">= 0"]),
    "max-new-tokens 0": (["{model}", "--max-new-tokens", "0"], ["max-new-tokens"]),
    "limit 0": (["{model}", "--limit", "0"], ["limit", ">= 1"]),
    "batch-rows 0": (["{model}", "--batch-rows", "0"], ["batch-rows"]),
    "missing data": (["{model}", "--data", "{tmp}/none.jsonl"], ["none.jsonl", "no such file"]),
    "malformed data": (["{model}", "--data", "{bad}"], ["train.jsonl:2:", "malformed JSON"]),
    "missing field": (["{model}", "--data", "{missing}"], ["train.jsonl:2:", "'problem'"]),
    "unknown answer field": (["{model}", "--answer-field", "gold"], ["good.jsonl:1:", "'gold'"]),
    "no chat template": (["{model}", "--template", "chat"], ["template", "no chat template"]),
    "hub offline": (["{model}", "--data", "math500"], ["HuggingFaceH4/MATH-500", "offline"]),
    "foreign out dir": (["{model}", "--out", "{tmp}"], ["eval_config.yaml", "another --out"]),
}


@pytest.mark.parametrize("name", EVAL_CASES)
def test_eval_user_error_is_one_line_and_exit_2(name, tmp_path, config_only_model, bad_jsonl, missing_field_jsonl,
                                                capsys, monkeypatch):
    import socket

    from huggingface_hub import constants

    import r1lab.runtime.loading

    def no_network(*args, **kwargs):
        raise OSError("unreachable")

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the checks were done")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(r1lab.runtime.loading, "load_model", must_not_load)
    good = tmp_path / "good.jsonl"
    good.write_text('{"problem": "1+1", "answer": "2"}\n')
    args, needles = EVAL_CASES[name]
    fill = dict(tmp=tmp_path, model=config_only_model, bad=bad_jsonl, missing=missing_field_jsonl)
    args = [a.format(**fill) for a in args]
    if "--data" not in args:
        args += ["--data", str(good)]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    code = main(["eval"] + args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out").exists()


GRADE_CASES = {
    "unknown grade task": (["--task", "rust"], ["--task", "invalid choice", "rust"]),
    "code line without tests": (["--task", "code"], ["preds.jsonl:1:", "no tests"]),
    "code test not Python": (["--task", "code"], ["preds.jsonl:2:", "test 1 is not valid Python"]),
}


@pytest.mark.parametrize("name", GRADE_CASES)
def test_grade_user_error_is_one_line_and_exit_2(name, tmp_path, capsys):
    lines = {"code line without tests": '{"completion": "x = 1"}\n',
             "code test not Python": '{"completion": "x", "tests": ["assert 1"]}\n{"completion": "x", "tests": ["assert ("]}\n'}
    path = tmp_path / "preds.jsonl"
    path.write_text(lines.get(name, '{"completion": "x", "answer": "1"}\n'))
    args, needles = GRADE_CASES[name]
    code = main(["grade", str(path)] + args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_eval_on_code_presets_fails_fast_offline(tmp_path, config_only_model, capsys, monkeypatch):
    import socket

    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for preset, hub_id in (("humaneval", "openai/openai_humaneval"), ("mbpp", "google-research-datasets/mbpp")):
        assert main(["eval", str(config_only_model), "--data", preset, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and hub_id in err and "offline" in err, err


def test_version_help_and_config_sections(capsys):
    import r1lab

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"r1lab {r1lab.__version__}"
    for command in ("zero", "sft", "rm", "pipeline", "distill", "pretrain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"r1lab config {command}" in " ".join(capsys.readouterr().out.split())
    assert main(["config", "zero", "grpo.sampling"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["grpo.sampling.temperature", "grpo.sampling.top_p",
                                                      "grpo.sampling.max_new_tokens"]
    assert all("  # " in line for line in lines)  # each with what it means


def test_overrides_after_a_flag_are_read(tmp_path, monkeypatch):
    import r1lab.stages.zero as zero

    seen = {}
    monkeypatch.setattr(zero, "run_zero", lambda cfg, resume: seen.update(cfg=cfg, resume=resume))
    assert main(["zero", f"run_dir={tmp_path}/run", "--resume", "save_every=5", "grpo.lr=2e-5"]) == 0
    assert seen["resume"] and seen["cfg"].save_every == 5 and seen["cfg"].grpo.lr == 2e-5
    assert seen["cfg"].run_dir == f"{tmp_path}/run"


PREEMPTED = {  # command line → (the run_dir= the loop names, the command that continues it)
    "zero": (["zero", "r.yaml", "run_dir=runs/zero-{time}", "seed=1"], "runs/zero-1",
             "r1lab zero r.yaml seed=1 --resume run_dir=runs/zero-1"),
    "sft resumed": (["sft", "--resume", "data=a b.jsonl"], "runs/sft-1",
                    "r1lab sft 'data=a b.jsonl' --resume run_dir=runs/sft-1"),
    "pipeline": (["pipeline", "seed=1"], "runs/pipeline-1", "r1lab pipeline seed=1 run_dir=runs/pipeline-1"),
    "pretrain": (["pretrain", "steps=9"], None, "r1lab pretrain steps=9"),
}


@pytest.mark.parametrize("name", PREEMPTED)
def test_a_preempted_command_is_one_line_with_the_command_that_continues_it_and_exit_143(name, capsys, monkeypatch):
    from pathlib import Path

    from r1lab import cli
    from r1lab.errors import Preempted

    argv, run, command = PREEMPTED[name]

    def preempted(cfg, **kw):
        raise Preempted(Path("runs/x/checkpoint-3"), run and Path(run))

    monkeypatch.setattr(cli, "_commands", lambda: {argv[0]: (lambda: None, preempted)})
    monkeypatch.setattr("r1lab.runtime.config.load_config", lambda cls, recipe, overrides: None)
    assert main(argv) == 143
    err = capsys.readouterr().err
    assert err == f"r1lab: stopped by SIGTERM after writing runs/x/checkpoint-3; continue with: {command}\n"
