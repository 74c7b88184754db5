"""The pipeline's orchestration on tiny everything: every stage runs, the report has one row per
model with every column, and a rerun skips the finished stages; a user's data file reaches every
stage."""

import json
import shutil

import pytest
import yaml

from r1lab.errors import UserError
from r1lab.runtime.config import load_config
from r1lab.stages.pipeline import PipelineConfig, run_pipeline
from r1lab.tasks import make_task
from tests.tiny_models import TINY_PRETRAIN, TINY_RL


def tiny_pipeline(tmp_path, *extra):
    overrides = [f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", *TINY_PRETRAIN,
                 *[f"{stage}.{o}" for stage in ("zero", "reasoning_rl", "all_rl") for o in TINY_RL],
                 "cold_start.examples=16", "cold_start.sft.epochs=1", "cold_start.sft.seq_len=1024",
                 "rejection.sample.prompts=4", "rejection.sample.n=2", "rejection.sample.sampling.max_new_tokens=16",
                 "rejection.sft.epochs=1", "rejection.sft.seq_len=1024", "rm.epochs=1",
                 "report.k=2", "report.problems=4", "report.sampling.max_new_tokens=16", "general_share=0.5", *extra]
    return load_config(PipelineConfig, None, overrides)


def test_pipeline_runs_every_stage_reports_and_resumes(tmp_path):
    cfg = tiny_pipeline(tmp_path)
    result = run_pipeline(cfg, log=lambda *a: None)
    run = tmp_path / "run"
    names = ["zero", "stage1-cold-start", "stage2-reasoning-rl", "stage2-no-language", "stage3-rejection", "rm",
             "stage4-all-rl"]
    for name in names:
        assert (run / name / "done.json").exists(), name
    assert len(result["rows"]) == 7
    for row in result["rows"].values():
        for key in ("pass@1", "cons@2", "format_rate", "language_mixing", "mean_length", "rm_score"):
            assert key in row
    report = (run / "report.md").read_text()
    assert report.count("\n| ") == 8 and "mixes languages" in report  # header + 7 rows
    rewards = lambda name: yaml.safe_load((run / name / "run" / "config.yaml").read_text())["rewards"]  # noqa: E731
    assert "language" in rewards("stage2-reasoning-rl") and "language" not in rewards("stage2-no-language")
    assert "preference" in rewards("stage4-all-rl")

    marks = lambda: {name: (run / name / "done.json").stat().st_mtime_ns for name in names}  # noqa: E731
    before = marks()
    run_pipeline(tiny_pipeline(tmp_path), log=lambda *a: None)  # every stage done: only the report is redone
    assert marks() == before
    # a half-done stage (no done.json) with no checkpoint yet starts over, and so does every stage
    # built on it (one with a checkpoint continues from it: tests/stages/test_chain.py, test_distill.py)
    (run / "rm" / "done.json").unlink()
    shutil.rmtree(run / "rm" / "run")
    (run / "rm" / "junk").write_text("x")
    run_pipeline(tiny_pipeline(tmp_path), log=lambda *a: None)
    after = marks()
    assert not (run / "rm" / "junk").exists()
    assert [n for n in names if after[n] != before[n]] == ["rm", "stage4-all-rl"]
    # other settings for a stage redo it and what follows it
    run_pipeline(tiny_pipeline(tmp_path, "rejection.sample.n=3"), log=lambda *a: None)
    assert [n for n in names if marks()[n] != after[n]] == ["stage3-rejection", "stage4-all-rl"]


def test_pipeline_on_a_users_data_file_uses_it_in_every_stage(tmp_path):
    """The reasoning task is a JSONL file (task=file) with the user's own cold-start data: stage 3
    samples the file's train split (it used to get the task's name without its path and fail after
    stages 0-2 had run) and every RL stage and the report use the same file."""
    problems = make_task("arithmetic", digits=2, terms=2).problems("train", 60, seed=0)
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"question": p.prompt, "gold": p.answer}) + "\n" for p in problems))
    cold = tmp_path / "cold.jsonl"
    cold.write_text("".join(json.dumps({"prompt": p.prompt, "completion": f"<think>\n</think>\n<answer>{p.answer}</answer>"})
                            + "\n" for p in problems[:16]))
    file_task = ["reasoning_rl.data.task=file", f"reasoning_rl.data.path={data}", "reasoning_rl.data.question_field=question",
                 "reasoning_rl.data.answer_field=gold", f"cold_start.data={cold}", "report.problems=2"]
    result = run_pipeline(tiny_pipeline(tmp_path, *file_task), log=lambda *a: None)
    run = tmp_path / "run"
    report = json.loads((run / "stage3-rejection" / "sample" / "report.json").read_text())
    assert report["task"] == "file" and report["problems"] == 4  # rejection.sample.prompts of the file's train split
    questions = {p.prompt for p in problems}
    sampled = [json.loads(line)["prompt"] for line in (run / "stage3-rejection" / "sample" / "sft.jsonl").open()]
    assert set(sampled) <= questions
    for name in ("zero", "stage2-reasoning-rl", "stage4-all-rl"):
        config = yaml.safe_load((run / name / "run" / "config.yaml").read_text())
        assert config["data"]["task"] == "file" and config["data"]["path"] == str(data), name
    assert len(result["rows"]) == 7


@pytest.mark.parametrize("override, needle", [
    ("reasoning_rl.rewards={accuracy: 1.0}", "language"),
    ("all_rl.rewards={accuracy: 1.0}", "preference"),
    ("general_share=0.01", "general_share"),
    ("report.k=0", "report.k"),
    ("reasoning_rl.data.task=countdown", "cold_start.data"),
    ("cold_start.data=/nonexistent.jsonl", "no such file"),
    ("cold_start.langs=[xx]", "xx"),
])
def test_pipeline_config_refuses_what_a_later_stage_would_trip_on(override, needle):
    with pytest.raises(UserError, match=needle):
        load_config(PipelineConfig, None, [override])
