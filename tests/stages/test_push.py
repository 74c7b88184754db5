"""`r1lab push`: the upload plan and the refusals, all without a network."""

from __future__ import annotations

import pytest

from r1lab.cli import main
from r1lab.runtime.card import write_model_card


@pytest.fixture
def run_dir(tmp_path):
    """A run directory whose `latest` checkpoint holds a model (config.json, weights) and its card."""
    ckpt = tmp_path / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"x" * 1000)
    (ckpt / "trainer_state.pt").write_bytes(b"y" * 50)
    write_model_card(ckpt, "r1lab zero", "R1-Zero.", "builtin", {"seed": 0}, "the signs task", "| a | b |")
    (tmp_path / "run" / "latest").write_text("checkpoint-2")
    return tmp_path / "run"


def test_dry_run_plans_the_model_and_its_card_without_the_optimizer_state(run_dir, capsys):
    assert main(["push", str(run_dir), "me/r1lab-zero", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-> me/r1lab-zero, 3 files" in out
    assert "README.md" in out and "model.safetensors  1,000 bytes" in out and "trainer_state.pt" not in out


@pytest.mark.parametrize("args, env, message", [
    (["{run}", "me/x"], {"HF_HUB_OFFLINE": "1"}, "push: offline (HF_HUB_OFFLINE is set)"),
    (["{run}", "no-slash"], {}, "repo_id: expected user/name"),
    (["{tmp}/nowhere", "me/x"], {}, "nowhere: no such run directory"),
    (["{tmp}", "me/x"], {}, "no model in it"),
    (["{bare}", "me/x", "--dry-run"], {}, "no model card (README.md)"),
])
def test_refusals_are_one_line(run_dir, tmp_path, monkeypatch, capsys, args, env, message):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    filled = [a.format(run=run_dir, tmp=tmp_path, bare=bare) for a in args]
    assert main(["push", *filled]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
