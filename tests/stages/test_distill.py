"""`r1lab distill` on tiny everything: an r1lab teacher into a Qwen2 student with its own tokenizer
and chat template, the RL-only comparison, the report, resumption and the presets' sizes."""

import json

import pytest
from transformers import AutoTokenizer

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.model.architecture import ModelConfig, build_model, count_parameters
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.config import load_config
from r1lab.stages.distill import STUDENTS, DistillConfig, run_distill
from tests.tiny_models import TINY_PRETRAIN, TINY_RL, save_tiny_qwen2

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """A random-weight Qwen2 whose tokenizer is not the teacher's: another vocabulary, a chat template."""
    out = tmp_path_factory.mktemp("student")
    tok = train_tokenizer(["Compute: 1234+5678 <think> digit 4+8=12 </think> <answer>6912</answer> 计算 자리"] * 30,
                          vocab_size=280)
    tok.chat_template = CHAT_TEMPLATE
    return save_tiny_qwen2(out, tok)


def tiny_distill(tmp_path, *extra):
    overrides = [f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", *TINY_PRETRAIN,
                 *[f"{part}.{o}" for part in ("teacher_rl", "rl") for o in TINY_RL], "teacher_rl.gate=false",
                 "data.n_train=50", "data.n_test=4",
                 "sample.prompts=6", "sample.n=2", "sample.sampling.max_new_tokens=16",
                 "sample.rejection.filters=[]",  # the random teacher is never right: keep every trace
                 "sft.epochs=1", "sft.seq_len=1024", "report.k=2", "report.problems=4", "report.sampling.max_new_tokens=16",
                 *extra]
    return load_config(DistillConfig, None, overrides)


def test_distill_into_a_student_with_its_own_tokenizer_compares_with_rl_and_resumes(tmp_path, student_dir):
    cfg = tiny_distill(tmp_path, f"student={student_dir}", "compare_rl=true", "rl.grpo.steps=50")
    result = run_distill(cfg, log=lambda *a: None)
    run = tmp_path / "run"
    rows = result["rows"]
    assert list(rows) == ["teacher", "distilled student", "RL-only student", "base student"]
    student_tok = AutoTokenizer.from_pretrained(rows["distilled student"]["model"])
    assert len(student_tok) == len(AutoTokenizer.from_pretrained(student_dir)) != len(
        AutoTokenizer.from_pretrained(rows["teacher"]["model"]))
    assert rows["distilled student"]["template"] == "chat" and rows["RL-only student"]["template"] == "r1zero"
    for row in rows.values():
        assert {"pass@1", "cons@2", "mean_length", "language_mixing", "params", "active_params", "seconds"} <= set(row)
    # the SFT data are the teacher's traces, rendered as chat turns in the student's tokenizer
    sft_info = json.loads((run / "student" / "done.json").read_text())
    assert sft_info["template"] == "chat"
    traces = [json.loads(line) for line in open(result["traces"]["data"], encoding="utf-8")]
    assert len(traces) == result["traces"]["kept"] > 0
    # the RL-only student had the distilled student's time budget, and it ran out before 50 steps
    rl_config = (run / "rl-only" / "run" / "config.yaml").read_text()
    budget = result["stages"]["traces"]["train_seconds"] + result["stages"]["student"]["train_seconds"]
    assert f"max_seconds: {budget}" in rl_config
    assert result["stages"]["rl_only"]["steps"] < 50
    report = (run / "report.md").read_text()
    assert report.count("\n| ") == 5 and "distillation beats RL" in report and "mixing" in report  # header + 4 rows

    marks = {p: p.stat().st_mtime_ns for p in run.glob("*/done.json")}
    run_distill(tiny_distill(tmp_path, f"student={student_dir}", "compare_rl=true", "rl.grpo.steps=50"),
                log=lambda *a: None)  # every stage done: only the measurements are redone
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/done.json")} == marks


@pytest.mark.parametrize("preset, model_type", [("qwen2-tiny", "qwen2"), ("llama-tiny", "llama")])
def test_teacher_zero_trains_one_and_the_preset_student_is_pretrained(preset, model_type, tmp_path):
    result = run_distill(tiny_distill(tmp_path, f"student={preset}", "rl_after_steps=1", "teacher_rl.grpo.steps=1"),
                         log=lambda *a: None)
    rows = result["rows"]
    assert list(rows) == ["teacher", "distilled student", "distilled student + RL", "base student"]
    assert (tmp_path / "run" / "teacher" / "run" / "summary.json").exists()
    base = json.loads((tmp_path / "run" / "student-base" / "done.json").read_text())["model"]
    assert json.loads(open(f"{base}/config.json").read())["model_type"] == model_type
    assert rows["base student"]["params"] == rows["base student"]["active_params"]  # dense
    assert 3 * rows["base student"]["params"] > rows["teacher"]["active_params"]  # tiny teacher: that check fails
    assert "- NO: the student has at most a third" in (tmp_path / "run" / "report.md").read_text()


def test_presets_have_at_most_a_third_of_the_default_teachers_active_parameters():
    _, teacher_active = count_parameters(build_model(ModelConfig(), 1024, 0, 1, 2))
    for name, preset in STUDENTS.items():
        total, active = count_parameters(build_model(preset, 1024, 0, 1, 2))
        assert total == active and 3 * active <= teacher_active, name


@pytest.mark.parametrize("argv, message", [
    (["distill", "--teacher", "no/such/dir"], "teacher: 'no/such/dir' is not a model directory"),
    (["distill", "--teacher", "no/such/dir", "--student", "gpt5-tiny"], "teacher"),
    (["distill", "--student", "gpt5-tiny"], "student: 'gpt5-tiny' is neither a preset"),
    (["distill", "rl_after_steps=-1"], "rl_after_steps: expected >= 0"),
    (["distill", "student_size=3"], "student_size"),
])
def test_distill_refuses_bad_input_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_validate_names_the_student_field():
    with pytest.raises(UserError, match="student"):
        DistillConfig(teacher="zero", student="nope").validate()
