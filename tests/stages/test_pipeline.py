"""The pipeline's orchestration on tiny everything: every stage runs, the report has one row per
model with every column, and a rerun skips the finished stages."""

import pytest
import yaml

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.stages.pipeline import PipelineConfig, run_pipeline

TINY_PRETRAIN = ["pretrain.steps=3", "pretrain.corpus.n_docs=200", "pretrain.batch_size=4", "pretrain.seq_len=256",
                 "pretrain.vocab_size=300", "pretrain.model.hidden_size=32", "pretrain.model.num_layers=2",
                 "pretrain.model.num_heads=2", "pretrain.model.dense_intermediate=64",
                 "pretrain.model.expert_intermediate=32", "pretrain.model.kv_lora_rank=16"]
TINY_RL = ["data.n_train=50", "data.n_test=4", "eval.k=2", "eval.max_new_tokens=16", "grpo.max_new_tokens=16",
           "grpo.prompts_per_step=4", "grpo.group_size=2", "grpo.steps=1", "save_every=1"]


def tiny_pipeline(tmp_path, *extra):
    overrides = [f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", *TINY_PRETRAIN,
                 *[f"{stage}.{o}" for stage in ("zero", "reasoning_rl", "all_rl") for o in TINY_RL],
                 "cold_start.examples=16", "cold_start.sft.epochs=1", "cold_start.sft.seq_len=1024",
                 "rejection.sample.prompts=4", "rejection.sample.n=2", "rejection.sample.max_new_tokens=16",
                 "rejection.sft.epochs=1", "rejection.sft.seq_len=1024", "rm.epochs=1",
                 "report.k=2", "report.problems=4", "report.max_new_tokens=16", "general_share=0.5", *extra]
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
    # a half-done stage (no done.json) starts over, and so does every stage built on it
    (run / "rm" / "done.json").unlink()
    (run / "rm" / "junk").write_text("x")
    run_pipeline(tiny_pipeline(tmp_path), log=lambda *a: None)
    after = marks()
    assert not (run / "rm" / "junk").exists()
    assert [n for n in names if after[n] != before[n]] == ["rm", "stage4-all-rl"]
    # other settings for a stage redo it and what follows it
    run_pipeline(tiny_pipeline(tmp_path, "rejection.sample.n=3"), log=lambda *a: None)
    assert [n for n in names if marks()[n] != after[n]] == ["stage3-rejection", "stage4-all-rl"]


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
