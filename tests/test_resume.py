"""Crash safety of `r1lab zero`: a run killed with SIGKILL mid-training and resumed ends with the
same metrics and bit-identical weights as an uninterrupted run with the same seed, and a
truncated or incomplete checkpoint is named and skipped for the previous one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from test_zero import tiny_zero_config

import r1lab
from r1lab.config import save_config
from r1lab.errors import UserError
from r1lab.zero import run_zero

# The subprocess pauses (without touching any state) once step 3's metrics line is flushed,
# i.e. after checkpoint-2 and before checkpoint-4, so the SIGKILL below always lands mid-run.
CHILD = """
import sys, time
import r1lab.runlog as runlog
from r1lab.config import load_config
from r1lab.zero import ZeroConfig, run_zero

log_step = runlog.RunLog.log
def log(self, record):
    log_step(self, record)
    if record["step"] == 3:
        time.sleep(600)
runlog.RunLog.log = log
run_zero(load_config(ZeroConfig, sys.argv[1]), log=lambda *a: None)
"""

WALL_CLOCK = ("time_", "gen_tokens_per_s")
SRC = os.path.dirname(os.path.dirname(r1lab.__file__))  # the child runs this r1lab, not whichever is installed


def length_reward(completions, problems):
    """The tiny 3-step base never gets a problem right, so accuracy/format rewards are all 0 and
    every group is dropped (no update at all); completion length varies within a group, giving
    real updates and a real optimizer state to resume."""
    return [len(c) / 100 for c in completions]


def records(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(WALL_CLOCK)} for r in rows]


def weights(ckpt):
    return load_file(ckpt / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(tmp_path):
    over = {"grpo.steps": 6, "save_every": 2, "eval.base_pass_k": 0,
            "rewards": "{accuracy: 1.0, format: 0.1, test_resume.length_reward: 1.0}"}
    ref_run, run = tmp_path / "run", tmp_path / "killed"
    run_zero(tiny_zero_config(tmp_path, **over), log=lambda *a: None)  # also creates the pretrained base

    cfg = tiny_zero_config(tmp_path, run_dir=str(run), **over)
    save_config(cfg, tmp_path / "killed.yaml")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "killed.yaml")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), SRC])})
    try:
        deadline = time.time() + 120
        while not ((run / "metrics.jsonl").exists() and '"step": 3' in (run / "metrics.jsonl").read_text()):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the child never reached step 3"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert (run / "latest").read_text().strip() == "checkpoint-2" and not (run / "checkpoint-4").exists()
    assert [r["step"] for r in records(run)] == [1, 2, 3]  # step 3 will be redone
    with (run / "metrics.jsonl").open("a") as f:  # and a line torn by a crash mid-write is dropped
        f.write('{"step": 4, "rew')

    run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lambda *a: None)
    assert records(run) == records(ref_run)
    assert [r["step"] for r in records(run)] == [1, 2, 3, 4, 5, 6]
    assert_same_weights(run / "checkpoint-6", ref_run / "checkpoint-6")
    state = torch.load(run / "checkpoint-6" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 6 and state["optimizer"]["state"] and {"python", "torch"} <= state["rng"].keys()
    w2, w6 = weights(ref_run / "checkpoint-2"), weights(ref_run / "checkpoint-6")
    assert any(not torch.equal(w2[k], w6[k]) for k in w2)  # the run really trained

    # A truncated checkpoint (weights cut in half) is named and skipped for the previous one;
    # resuming from checkpoint-4 redoes steps 5-6 and again lands on the same weights.
    st = run / "checkpoint-6" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    lines = []
    run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lines.append)
    unusable = [x for x in lines if "unusable" in x]
    assert len(unusable) == 1 and "checkpoint-6" in unusable[0], lines
    assert any("resume: from" in x and "checkpoint-4 at step 4" in x for x in lines), lines
    assert records(run) == records(ref_run)
    assert_same_weights(run / "checkpoint-6", ref_run / "checkpoint-6")

    # A truncated trainer_state.pt and a checkpoint missing a file: both skipped; none left -> one-line error.
    for n in (2, 4, 6):
        ts = run / f"checkpoint-{n}" / "trainer_state.pt"
        ts.write_bytes(ts.read_bytes()[:100])
    (run / "checkpoint-4" / "config.json").unlink()
    lines = []
    with pytest.raises(UserError, match="no loadable checkpoint"):
        run_zero(tiny_zero_config(tmp_path, run_dir=str(run), **over), resume=True, log=lines.append)
    assert [x.split()[2] for x in lines if "unusable" in x] == [str(run / f"checkpoint-{n}") for n in (6, 4, 2)]
