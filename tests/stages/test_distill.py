"""`r1lab distill` on tiny everything: an r1lab teacher into a Qwen2 student with its own tokenizer
and chat template, the RL-only comparison, the report, resumption (finished stages skipped, a
stage stopped by SIGTERM continued from its checkpoint) and the presets' sizes."""

import json
import shlex
import subprocess
import sys
import time

import pytest
from transformers import AutoTokenizer

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.model.architecture import ModelConfig, build_model, count_parameters
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.config import load_config
from r1lab.stages.distill import STUDENTS, DistillConfig, run_distill
from tests.runtime.test_checkpoint import assert_same_weights, records
from tests.runtime.test_preempt import ENV, sigterm_after_first_step
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


def tiny_distill_overrides(tmp_path, *extra) -> list[str]:
    """The key=value overrides of `tiny_distill` (e.g. for the command line)."""
    return [f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", *TINY_PRETRAIN,
            *[f"{part}.{o}" for part in ("teacher_rl", "rl") for o in TINY_RL], "teacher_rl.gate=false",
            "data.n_train=50", "data.n_test=4",
            "sample.prompts=6", "sample.n=2", "sample.sampling.max_new_tokens=16",
            "sample.rejection.filters=[]",  # the random teacher is never right: keep every trace
            "sft.epochs=1", "sft.seq_len=1024", "report.k=2", "report.problems=4", "report.sampling.max_new_tokens=16",
            *extra]


def tiny_distill(tmp_path, *extra):
    return load_config(DistillConfig, None, tiny_distill_overrides(tmp_path, *extra))


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


def test_distill_sigterm_in_the_teachers_rl_then_its_command_continues_the_teacher(tmp_path, student_dir):
    """`r1lab distill` as a child process, sent SIGTERM in the teacher's RL once its first checkpoint
    is written, exits 143 with one line; the command it prints (the same distill on the same run_dir,
    no --resume) continues the teacher from the checkpoint the SIGTERM wrote (stages/chain.py), to
    the per-step records, weights and report row of an uninterrupted run."""
    extra = [f"student={student_dir}", "teacher_rl.grpo.steps=4", "report_to=[]",
             "teacher_rl.rewards={accuracy: 1.0, format: 0.1, tests.tiny_models.length_reward: 1.0}"]  # spread: updates
    ref = run_distill(tiny_distill(tmp_path, *extra, f"run_dir={tmp_path / 'ref'}"), log=lambda *a: None)
    run = tmp_path / "run"
    teacher = run / "teacher" / "run"

    def after_the_first_checkpoint(pid):
        while not (teacher / "latest").exists():
            time.sleep(0.05)

    line, step = sigterm_after_first_step(["distill", *tiny_distill_overrides(tmp_path, *extra)], teacher,
                                          after_the_first_checkpoint)
    assert 2 <= step < 4 and not (run / "teacher" / "done.json").exists()
    said, command = line.split("; continue with: ")
    assert said == f"r1lab: stopped by SIGTERM after writing {teacher / f'checkpoint-{step}'}", line
    argv = shlex.split(command)
    assert argv[:2] == ["r1lab", "distill"] and argv[-1] == f"run_dir={run}" and "--resume" not in argv
    started = (teacher / "state.json").stat().st_mtime_ns  # the base evaluation's, written once as RL starts

    out = subprocess.run([sys.executable, "-m", "r1lab", *argv[1:]], env=ENV, check=True, capture_output=True,
                         text=True).stdout
    assert "distill: teacher continues from its checkpoint" in out
    assert f"resume: from {teacher / f'checkpoint-{step}'} at step {step}" in out
    assert (teacher / "state.json").stat().st_mtime_ns == started  # not started over
    assert records(teacher) == records(tmp_path / "ref" / "teacher" / "run") and len(records(teacher)) == 4
    assert_same_weights(teacher / "checkpoint-4", tmp_path / "ref" / "teacher" / "run" / "checkpoint-4")
    row = lambda result: {k: v for k, v in result["rows"]["teacher"].items() if k not in ("model", "seconds")}  # noqa: E731
    assert row(json.loads((run / "distill.json").read_text())) == row(ref)


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
