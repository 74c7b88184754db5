"""`r1lab ablate`: each variant's settings reach its runs, every run starts from the one warm-up run,
seeds x variants run once each (a rerun skips them), and the report holds every variant's row and
the Dr. GRPO check."""

import json

import pytest

from r1lab.errors import UserError
from r1lab.runtime.config import load_config
from r1lab.stages.ablate import VARIANTS, AblateConfig, dr_grpo_check, run_ablate, variant
from tests.tiny_models import tiny_zero_overrides


def test_every_variant_is_a_valid_run_with_its_papers_settings():
    cfg = AblateConfig()
    cfg.validate()
    assert set(cfg.variants) == {"grpo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp"}
    dapo = variant(cfg.zero, "dapo", 1).grpo
    assert (dapo.eps_high, dapo.aggregation, dapo.resample_rounds) == (0.28, "token_mean", 2)
    assert dapo.overlong_buffer == cfg.zero.grpo.sampling.max_new_tokens // 4 == 192
    assert cfg.zero.base == "warmup" and cfg.warmup.grpo.mu == 1 and cfg.warmup.grpo.steps > cfg.zero.grpo.steps
    assert variant(cfg.zero, "gspo", 0).grpo.loss == "gspo" and variant(cfg.zero, "rloo", 3).seed == 3
    assert all(variant(cfg.zero, v, 0).grpo.mu == 2 for v in VARIANTS)  # losses differ only off-policy
    with pytest.raises(UserError, match="variants: expected names"):
        load_config(AblateConfig, None, ["variants=[grpo,ppo]"]).validate()


def test_dr_grpo_check_reads_the_spread_across_seeds():
    row = lambda n, wrong: {"length_incorrect": n, "incorrect": wrong}  # noqa: E731
    result = lambda g, d: {"variants": {"grpo": {"runs": g}, "dr_grpo": {"runs": d}}, "seeds": [0, 1]}  # noqa: E731
    assert "reproduced" in dr_grpo_check(result([row(300, 120), row(320, 110)], [row(200, 130), row(250, 100)]))
    assert "not reproduced" in dr_grpo_check(result([row(300, 120), row(200, 110)], [row(250, 130), row(260, 100)]))
    assert "over 230 answers" in dr_grpo_check(result([row(300, 120), row(320, 110)], [row(200, 130), row(250, 100)]))
    assert "seed 0: GRPO 300, Dr. GRPO 200; seed 1: GRPO 320, Dr. GRPO 250" in dr_grpo_check(
        result([row(300, 120), row(320, 110)], [row(200, 130), row(250, 100)]))
    assert "ranges overlap" in dr_grpo_check(result([row(15, 120), row(452, 110)], [row(15, 130), row(744, 100)]))


def test_run_ablate_tiny(tmp_path):
    tiny = [o for o in tiny_zero_overrides(tmp_path) if not o.startswith(("run_dir=", "pretrain.cache_dir="))]
    tiny += [f"pretrain.cache_dir={tmp_path / 'cache'}", "rewards={tests.tiny_models.length_reward: 1.0}"]
    args = [f"run_dir={tmp_path / 'abl'}", "variants=[grpo,dr_grpo]", "seeds=[0,1]", *(f"zero.{o}" for o in tiny),
            "zero.base=warmup", *(f"warmup.{o}" for o in tiny), "warmup.grpo.steps=1"]
    cfg = load_config(AblateConfig, None, args)
    result = run_ablate(cfg, log=lambda *a: None)
    run = tmp_path / "abl"
    assert set(result["variants"]) == {"grpo", "dr_grpo"}
    assert all(len(v["runs"]) == 2 for v in result["variants"].values())
    saved = json.loads((run / "ablate.json").read_text())
    assert saved["variants"]["dr_grpo"]["settings"]["aggregation"] == "constant"
    summary = json.loads((run / "dr_grpo-seed1" / "run" / "summary.json").read_text())
    config = summary["config"]
    assert config["grpo"]["advantage"] == "dr_grpo" and config["seed"] == 1 and config["grpo"]["mu"] == 2
    warm = json.loads((run / "warmup" / "done.json").read_text())
    assert summary["base_model"] == warm["model"] == str((run / "warmup" / "run" / "checkpoint-1").resolve())
    assert saved["warmup"]["steps"] == 1 and "starts from the warm-up's policy (1 steps" in (run / "report.md").read_text()
    report = (run / "report.md").read_text()
    assert all(f"| {v} |" in report for v in ("grpo", "dr_grpo")) and "Mean length of incorrect answers" in report
    assert (run / "pass1.png").exists() and (run / "lengths.png").exists()
    said = []
    run_ablate(load_config(AblateConfig, None, args), log=said.append)  # a rerun: every run is done already
    assert sum("already done, skipped" in line for line in said) == 5  # the warm-up and the 4 runs
