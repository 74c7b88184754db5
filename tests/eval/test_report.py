from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from r1lab.eval.report import PLOTS, fenced, honest_caveat, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics(pass1: float, passk: dict[str, float], k: int = 4, reasoning_acc: float | None = 0.75) -> dict:
    return {
        "pass@1": pass1,
        "pass@k": passk,
        f"cons@{k}": 0.3125,
        "format_rate": 0.875,
        "mean_length": 42.25,
        "truncation_rate": 0.0625,
        "reflection_rate": 0.1,
        "styles": {
            "reasoning": {"share": 0.4375, "accuracy": reasoning_acc},
            "direct": {"share": 0.5, "accuracy": 0.2},
            "unformatted": {"share": 0.0625, "accuracy": None},
        },
        "problems": 16,
        "k": k,
        "seconds": 3.0,
        "tokens_per_s": 100.0,
    }


def record(step: int, accuracy: float | None = 0.5, **extra) -> dict:
    r = {
        "step": step, "reward": 0.55 + 0.1 * step, "reward/accuracy": accuracy, "reward/format": 0.9,
        "accuracy": accuracy, "format_rate": 0.9, "reasoning_rate": 0.4, "reflection_rate": 0.05 * step,
        "len_mean": 30.0 + step, "len_max": 80, "truncation_rate": 0.0,
        "time_generate": float(step), "time_score": 0.5, "time_update": 2.0, "time_step": float(step) + 2.5,
        "gen_tokens_per_s": 300.0,
    }
    if accuracy is None:
        del r["reward/accuracy"]
    return {**r, **extra}


def summary(base: dict | None, final: dict | None, steps: int = 3) -> dict:
    return {"base": base, "final": final, "base_model": "/models/tiny-v3", "wall_seconds": 123.4, "steps": steps}


PROBLEMS = [SimpleNamespace(prompt="What is 1234+4321?", answer="5555"),
            SimpleNamespace(prompt="计算 12*3", answer="36")]
BASE_SAMPLES = ["<think>1234+4321 is 5555</think> <answer>5555</answer>", "<answer>35</answer>"]
FINAL_SAMPLES = ["<think>wait, add digits</think> <answer>5555</answer>", "<think>12*3=36</think><answer>36</answer>"]


def table_row(md: str, name: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def assert_plots(run) -> None:
    for name in PLOTS:
        data = (run / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 2000, name


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("run")
    base = metrics(0.25, {"1": 0.25, "2": 0.4, "4": 0.9})
    final = metrics(0.625, {"1": 0.625, "2": 0.7, "4": 0.8}, reasoning_acc=0.8125)
    history = [record(1), record(2), record(3)]
    path = write_report(tmp_path, summary(base, final), history, PROBLEMS, BASE_SAMPLES, FINAL_SAMPLES)
    return tmp_path, path.read_text(encoding="utf-8")


def test_writes_valid_pngs_and_links_each(full_report):
    run, md = full_report
    assert (run / "report.md").exists()
    assert_plots(run)
    for name in PLOTS:
        assert f"]({name})" in md


def test_before_after_table_formats_the_inputs(full_report):
    _, md = full_report
    assert "| model | pass@1 | cons@4 | pass@4 |" in md
    assert table_row(md, "base model") == ["0.250", "0.312", "0.900", "0.875", "42.2", "0.062", "0.438", "0.750"]
    assert table_row(md, "final policy")[:3] == ["0.625", "0.312", "0.800"]
    assert table_row(md, "final policy")[-1] == "0.812"


def test_run_paragraph_names_model_steps_and_wall_time(full_report):
    _, md = full_report
    assert "`/models/tiny-v3`" in md
    assert "for 3 steps" in md
    assert "123 s wall-clock" in md


def test_caveat_states_base_pass_at_k_and_final_pass_at_1(full_report):
    _, md = full_report
    caveat = md.split("## Honest caveat")[1].split("##")[0]
    assert "Base pass@4 is 0.900" in caveat
    assert "Final pass@1 is 0.625" in caveat
    assert "selects a behaviour the base already has" in caveat
    assert "Final pass@4 (0.800) is below the base's" in caveat


def test_caveat_when_final_beats_base_pass_at_k():
    text = honest_caveat(metrics(0.1, {"1": 0.1, "4": 0.3}), metrics(0.5, {"1": 0.5, "4": 0.6}))
    assert "0.300" in text and "0.500" in text
    assert "exceeds base pass@4" in text
    assert "already has" not in text and "below the base" not in text


def test_timing_table_means(full_report):
    _, md = full_report
    # time_generate 1, 2, 3 -> 2.00; time_step 3.5, 4.5, 5.5 -> 4.50; generate share 2/4.5
    assert "| generate | 2.00 | 44% |" in md
    assert "| whole step | 4.50 | 100% |" in md
    assert "| score | 0.50 | 11% |" in md


def test_samples_show_prompt_gold_and_both_completions(full_report):
    _, md = full_report
    section = md.split("## Sample completions")[1]
    for p, b, f in zip(PROBLEMS, BASE_SAMPLES, FINAL_SAMPLES):
        assert f"> {p.prompt}" in section
        assert f"Gold answer: **{p.answer}**" in section
        assert f"```text\n{b}\n```" in section
        assert f"```text\n{f}\n```" in section
    assert section.index("Problem 1") < section.index(BASE_SAMPLES[0]) < section.index(FINAL_SAMPLES[0]) \
        < section.index("Problem 2")


def test_zero_steps_and_missing_numbers_do_not_crash(tmp_path):
    base = metrics(0.25, {}, reasoning_acc=None)
    base["format_rate"] = None
    path = write_report(tmp_path, summary(base, None, steps=0), [], [], [], [])
    md = path.read_text(encoding="utf-8")
    assert_plots(tmp_path)
    assert table_row(md, "base model")[2] == "n/a"  # no pass@k curve
    assert table_row(md, "base model")[3] == "n/a"  # format_rate None
    assert table_row(md, "base model")[-1] == "n/a"  # reasoning style never used
    assert table_row(md, "final policy") == ["n/a"] * 8
    assert "| generate | n/a | n/a |" in md
    assert "Final pass@1 is n/a" in md


def test_empty_summary_and_none_arguments(tmp_path):
    path = write_report(tmp_path, {}, None, None, None, None)
    md = path.read_text(encoding="utf-8")
    assert_plots(tmp_path)
    assert "`n/a`" in md and "for n/a steps (0 logged)," in md


def test_none_accuracy_and_no_reward_columns(tmp_path):
    history = [{"step": 1, "reward": 0.1, "accuracy": None, "len_mean": 10.0, "len_max": None},
               {"step": 2, "reward": float("nan"), "accuracy": None, "len_mean": 12.0}]
    base = metrics(0.25, {"1": 0.25, "2": 0.5, "4": 0.75, "8": 0.875}, k=8)
    final = metrics(0.5, {"1": 0.5, "2": 0.625, "4": 0.75}, k=4)
    md = write_report(tmp_path, summary(base, final, steps=2), history, PROBLEMS[:1], BASE_SAMPLES[:1], []).read_text()
    assert_plots(tmp_path)
    assert "| model | pass@1 | cons@k | pass@k |" in md  # rows disagree on k, so each cell names its own
    assert table_row(md, "base model")[1:3] == ["0.312 (k=8)", "0.875 (k=8)"]
    assert table_row(md, "final policy")[1:3] == ["0.312 (k=4)", "0.750 (k=4)"]
    assert "Final policy:\n\n```text\nn/a\n```" in md


def test_steps_configured_but_fewer_logged(tmp_path):
    md = write_report(tmp_path, summary(None, None, steps=40), [record(1)], [], [], []).read_text()
    assert "for 40 steps (1 logged)," in md


def test_fence_outgrows_backticks_inside_sample():
    text = "see ```python\nprint(1)\n``` and ````"
    block = fenced(text)
    assert block.startswith("`````text\n") and block.endswith("\n`````")
    assert fenced(None) == "```text\nn/a\n```"


def test_pass_at_k_plot_depends_on_the_curves(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(a, summary(metrics(0.25, {"1": 0.25, "4": 0.9}), None), [], [], [], [])
    write_report(b, summary(None, None), [], [], [], [])
    assert (a / "pass_at_k.png").read_bytes() != (b / "pass_at_k.png").read_bytes()
    assert re.search(r"\]\(pass_at_k\.png\)", (a / "report.md").read_text())


def test_self_verification_sections(tmp_path):
    """A task that can tell a check: the self-check table, length by difficulty and the aha samples."""
    checks = {"self_check_rate": 0.02, "self_check_rate_reasoning": 0.25, "attempts_mean": 1.01,
              "first_candidate_accuracy": 0.25, "rejection_rate": 0.01, "rejected_accuracy": 0.5,
              "unrejected_accuracy": 0.25, "per_problem": {"correct": [0, 1, 4, 4], "mean_length": [10, 20, 30, 40]}}
    base = {**metrics(0.25, {"1": 0.25, "4": 0.9}), **checks}
    final = {**metrics(0.9, {"1": 0.9, "4": 1.0}), **checks, "self_check_rate": 0.8, "attempts_mean": 2.5,
             "per_problem": {"correct": [4, 3, 4, 4], "mean_length": [300, 200, 100, 50]}}
    aha = [{"prompt": "Numbers: 52 23 11. Target: 18", "answer": "52-23-11", "base": "<answer>52+23-11</answer>",
            "final": "try 52+23-11 ... got 64, want 18: wrong, wait\ntry 52-23-11"}]
    md = write_report(tmp_path, {**summary(base, final), "aha_samples": aha}, [record(1, self_check_rate=0.1,
                      attempts_mean=1.2)], PROBLEMS, BASE_SAMPLES, FINAL_SAMPLES).read_text()
    assert table_row(md, "self-check rate (a candidate evaluated and compared with the target)") == ["0.020", "0.800"]
    assert table_row(md, "candidates tried per answer") == ["1.01", "2.50"]
    assert table_row(md, "never (0 of k)") == ["1", "10.0", "300.0", "1.000"]
    assert table_row(md, "mostly (more than k/2)") == ["2", "35.0", "75.0", "1.000"]
    assert "got 64, want 18: wrong, wait" in md and "## The final policy catching its own mistake" in md
    assert (tmp_path / "aha.png").read_bytes()[:8] == PNG_MAGIC


def test_no_self_verification_sections_without_the_metrics(full_report):
    assert "## Self-verification" not in full_report[1]
