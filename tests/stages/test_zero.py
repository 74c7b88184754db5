"""The R1-Zero stage: the update really learns, batches line up, and a whole run works end to end."""

import json

import pytest
import torch

from r1lab.data.prompting import own_template
from r1lab.engine.params import SamplingConfig, SamplingParams
from r1lab.engine.sampler import HFSampler
from r1lab.errors import UserError
from r1lab.rl.grpo import group_advantages
from r1lab.rl.step import GRPOConfig
from r1lab.rl.update import update_policy
from r1lab.runtime.loading import load_tokenizer
from r1lab.stages.zero import run_zero
from tests.tiny_models import tiny_policy, tiny_zero_config


def test_grpo_update_raises_a_trivially_learnable_reward():
    """Reward = share of completion tokens with an even id (about 1/2 for a random policy). A
    wrong gradient sign, a misaligned mask or dropped advantages keep it flat and fail this test."""
    torch.manual_seed(0)
    model, tok = tiny_policy(seed=1)
    g = GRPOConfig(prompts_per_step=4, group_size=8, lr=1e-2, micro_batch=16,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    sampler = HFSampler(model, tok)
    history = []
    for step in range(30):
        gen = sampler.generate(["x", "y", "z", "b"], g.group_size, SamplingParams(max_new_tokens=8, seed=step))
        r = torch.tensor([sum(t % 2 == 0 for t in c) / len(c) for c in gen.completion_ids])
        history.append(r.mean().item())
        adv = group_advantages(r.view(4, g.group_size)).flatten()
        update_policy(model, None, opt, gen, adv, list(range(len(r))), g, tok.pad_token_id, step)
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last > first + 0.3, (first, last)


def test_run_zero_end_to_end_then_resume(tmp_path):
    cfg = tiny_zero_config(tmp_path)
    summary = run_zero(cfg, log=lambda *a: None)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "checkpoint-2/config.json",
                 "checkpoint-2/trainer_state.pt", "latest"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").iterdir())
    assert own_template(load_tokenizer(run / "checkpoint-2")) == "r1zero"  # servable: its chat template is R1-Zero's
    saved = json.loads((run / "summary.json").read_text())
    for key in ("pass@1", "cons@2", "pass@k", "mean_length", "format_rate", "self_check_rate",
                "self_check_rate_reasoning", "attempts_mean", "first_candidate_accuracy", "reflection_rate"):
        assert key in saved["base"] and key in saved["final"]
    assert saved["config"]["data"]["task"] == "signs"  # the default task is the aha moment's
    assert saved["final"]["attempts_mean"] >= 1.0 and "aha_samples" in saved
    assert "## Self-verification" in (run / "report.md").read_text() and (run / "aha.png").exists()
    assert summary["first_mean_length"] is not None
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert all(json.loads(x)["attempts_mean"] >= 1.0 for x in lines)

    # an existing run is never overwritten without --resume
    with pytest.raises(UserError, match="already holds a run"):
        run_zero(cfg, log=lambda *a: None)
    # resume continues from the last checkpoint to the new step count
    cfg3 = tiny_zero_config(tmp_path, **{"grpo.steps": 3})
    run_zero(cfg3, resume=True, log=lambda *a: None)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (run / "checkpoint-3" / "config.json").exists()


def test_mu_inner_updates_use_old_logprobs_and_clip():
    """With μ = 2 the second pass sees π_θ ≠ π_old: ratios move off 1 and clipping can engage."""
    torch.manual_seed(0)
    model, tok = tiny_policy(seed=3)
    g = GRPOConfig(prompts_per_step=2, group_size=4, lr=5e-2, mu=2, eps_low=0.01, eps_high=0.01, micro_batch=4,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=6))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    gen = HFSampler(model, tok).generate(["x", "y"], 4, SamplingParams(max_new_tokens=6, seed=0))
    before = [p.detach().clone() for p in model.parameters()]
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    stats = update_policy(model, None, opt, gen, adv, list(range(8)), g, tok.pad_token_id, 0)
    assert stats["clip_frac"] > 0  # impossible with μ = 1, where every ratio is exactly 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_stage4_mixes_general_prompts_scored_by_the_reward_model(tmp_path):
    from r1lab.model.base import pretrain
    from r1lab.runtime.checkpoint import save_model
    from r1lab.runtime.loading import load

    cfg = tiny_zero_config(tmp_path)
    base = pretrain(cfg.pretrain, log=lambda *a: None)
    rm, rm_tok = load(base, head="score")
    save_model(rm, rm_tok, tmp_path / "rm", {}, "rm.json")
    cfg4 = tiny_zero_config(tmp_path, **{"rewards": "{accuracy: 1.0, format: 0.1, preference: 0.5}",
                                         "reward_model": str(tmp_path / "rm"), "data.general_share": 0.5})
    run_zero(cfg4, log=lambda *a: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["reward/preference"] != 0.0 for r in rows)  # one of each step's 2 prompts is general
    for over, needle in [({"rewards": "{accuracy: 1.0, preference: 0.5}"}, "go together"),
                         ({"rewards": "{accuracy: 1.0, preference: 0.5}", "data.general_share": 0.5}, "reward_model"),
                         ({"rewards": "{accuracy: 1.0, preference: 0.5}", "data.general_share": 0.1,
                           "reward_model": str(tmp_path / "rm")}, "no general")]:
        with pytest.raises(UserError, match=needle):
            run_zero(tiny_zero_config(tmp_path, run_dir=str(tmp_path / "run5"), **over), log=lambda *a: None)
        assert not (tmp_path / "run5").exists()


def test_max_seconds_stops_rl_early_with_a_checkpoint(tmp_path):
    """A time budget (distillation's RL-only baseline): the run stops after the step that crosses
    it, saves that step's checkpoint and reports the steps it ran."""
    cfg = tiny_zero_config(tmp_path, **{"grpo.steps": 50, "save_every": 100, "max_seconds": 1e-9})
    summary = run_zero(cfg, log=lambda *a: None)
    run = tmp_path / "run"
    assert summary["steps"] == 1 and (run / "latest").read_text().strip() == "checkpoint-1"
    assert summary["train_seconds"] > 0
    with pytest.raises(UserError, match="max_seconds"):
        tiny_zero_config(tmp_path, max_seconds=-1).validate()


def test_run_zero_resamples_flat_groups_and_logs_drift(tmp_path):
    """The tiny base never solves a problem: every group is flat, so with grpo.resample_rounds=1 each
    step samples one more round of fresh prompts (twice the generations). With a reward that has
    spread, every step updates and its record has the drift."""
    cfg = tiny_zero_config(tmp_path, **{"grpo.resample_rounds": 1})
    run_zero(cfg, log=lambda *a: None)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    per_round = cfg.grpo.prompts_per_step * cfg.grpo.group_size
    assert [(r["resample_rounds"], r["generations"], r["groups_kept"]) for r in records] == [(1, 2 * per_round, 0)] * 2
    cfg = tiny_zero_config(tmp_path / "b", rewards="{tests.tiny_models.length_reward: 1.0}")
    run_zero(cfg, log=lambda *a: None)
    records = [json.loads(x) for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["drift_logp_mean"] < 1e-4 and r["resample_rounds"] == 0 for r in records) and len(records) == 2
    assert (tmp_path / "b" / "run" / "drift.png").exists()
