"""SIGTERM is preemption (runtime/preempt.py): `r1lab zero` and `r1lab sft`, run as real subprocesses
through the CLI and sent SIGTERM mid-run, finish the step under way, checkpoint it, print one line
with the command that continues the run, and exit 143; that command (--resume) ends with the same
per-step records and weights as an uninterrupted run. While such a run is alive, a second run on
its directory is refused (runtime/run.py's lock). `r1lab rm` and pretraining, sent SIGTERM by the
test's own process, stop the same way and continue to the same records and weights."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import r1lab
from r1lab.cli import main
from r1lab.data.preferences import preference_pairs
from r1lab.runtime import preempt
from r1lab.stages.zero import run_zero
from r1lab.tasks import apply_template
from tests.runtime.test_checkpoint import assert_same_weights, records
from tests.tiny_models import save_tiny_base, tiny_zero_config, tiny_zero_overrides

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "R1LAB_PROGRESS": "0",
       "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(r1lab.__file__).parents[1])])}  # the r1lab under test

# The CLI, with a pause after each step's record (state untouched), so that the SIGTERM lands mid-run.
SLOW_CLI = """
import sys, time
import r1lab.runtime.runlog as runlog
from r1lab.cli import main

log_step = runlog.RunLog.log
def log(self, record):
    log_step(self, record)
    time.sleep(0.3)
runlog.RunLog.log = log
sys.exit(main(sys.argv[1:]))
"""


def sigterm_after_first_step(args: list[str], run: Path, while_running=lambda pid: None) -> tuple[str, int]:
    """Run `r1lab ARGS` in a child, SIGTERM it once step 1's record is in run/metrics.jsonl (after
    calling `while_running(its pid)`); returns (its stderr's last line, the step it checkpointed)."""
    child = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 120
        while not ((run / "metrics.jsonl").exists() and '"step": 1,' in (run / "metrics.jsonl").read_text()):
            assert child.poll() is None, child.stderr.read()[-2000:]
            assert time.time() < deadline, "the child never logged step 1"
            time.sleep(0.05)
        while_running(child.pid)
        child.send_signal(signal.SIGTERM)
        err = child.communicate(timeout=120)[1]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 143, err[-2000:]
    step = len(records(run))
    assert (run / "latest").read_text() == f"checkpoint-{step}"
    return err.strip().splitlines()[-1], step


def continue_as_printed(line: str, ckpt: Path) -> None:
    """Check the one line of a preempted run and run the command it prints."""
    said, command = line.split("; continue with: ")
    assert said == f"r1lab: stopped by SIGTERM after writing {ckpt}", line
    argv = shlex.split(command)
    assert argv[0] == "r1lab" and "--resume" in argv
    subprocess.run([sys.executable, "-m", "r1lab", *argv[1:]], env=ENV, check=True, stdout=subprocess.DEVNULL)


def test_zero_sigterm_checkpoints_the_step_and_resume_equals_an_uninterrupted_run(tmp_path):
    over = {"grpo.steps": 4, "save_every": 100, "eval.pass_k": 0, "report_to": "[]",
            "rewards": "{accuracy: 1.0, format: 0.1, tests.tiny_models.length_reward: 1.0}"}
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_zero(tiny_zero_config(tmp_path, run_dir=str(ref), **over), log=lambda *a: None)  # also pretrains the base

    line, step = sigterm_after_first_step(["zero", *tiny_zero_overrides(tmp_path, **over)], run)
    assert 1 <= step < 4 and not (run / "summary.json").exists()  # a checkpoint no periodic save would write
    continue_as_printed(line, run / f"checkpoint-{step}")
    assert records(run) == records(ref) and len(records(run)) == 4
    assert_same_weights(run / "checkpoint-4", ref / "checkpoint-4")
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    pairs = preference_pairs("train")[:12]
    return save_tiny_base(tmp_path_factory.mktemp("base"),
                          [apply_template(p.prompt) + p.chosen + p.rejected for p in pairs] * 3)


def test_sft_sigterm_checkpoints_the_step_and_resume_equals_an_uninterrupted_run(tmp_path, base, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a}?", "completion": f"<answer>{2 * a}</answer>"}) + "\n"
                            for a in range(12)))
    args = ["sft", f"base={base}", f"data={data}", "epochs=2", "lr=1e-2", "template=plain", "pack=false",
            "rows_per_step=2", "micro_rows=2", "warmup_steps=2", "save_every=100", "seq_len=64", "report_to=[]"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main([*args, f"run_dir={ref}"]) == 0  # 6 steps an epoch, 2 epochs: checkpoints 6 and 12

    def refused(pid):  # a second run on a live run's directory, new or resumed: one line, naming the holder
        for extra in ([], ["--resume"]):
            capsys.readouterr()
            assert main([*args, f"run_dir={run}", *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"'{run}' is in use by another run (pid {pid} on " in err, err

    line, step = sigterm_after_first_step([*args, f"run_dir={run}"], run, refused)
    assert 1 <= step < 12 and not (run / "final").exists()
    continue_as_printed(line, run / f"checkpoint-{step}")
    assert records(run) == records(ref) and len(records(run)) == 12
    assert (run / "final").read_text() == "checkpoint-12"
    assert_same_weights(run / "checkpoint-12", ref / "checkpoint-12")


def test_a_sigterm_inside_watch_only_asks_and_the_old_handler_comes_back():
    seen = []
    before = signal.signal(signal.SIGTERM, lambda *a: seen.append("old"))
    try:
        with preempt.watch():
            assert not preempt.requested()
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
            assert preempt.requested() and preempt.requested(across_ranks=False)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["old"]
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.fixture
def sigterm_after(monkeypatch):
    """`sigterm_after(n)`: this process sends itself SIGTERM once step n's record is logged."""
    import r1lab.runtime.runlog as runlog

    def at(n):
        log_step = runlog.RunLog.log

        def log(self, record):
            log_step(self, record)
            if record["step"] == n:
                os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(runlog.RunLog, "log", log)
        return lambda: monkeypatch.setattr(runlog.RunLog, "log", log_step)  # undo

    return at


def test_rm_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, base, sigterm_after):
    from r1lab.errors import Preempted
    from r1lab.stages.rm import RMConfig, run_rm

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                             for p in preference_pairs("train")[:12]))
    cfg = lambda run: RMConfig(base=str(base), data=str(pairs), run_dir=str(run), epochs=2, batch_pairs=4,  # noqa: E731
                               lr=1e-3, save_every=100, report_to=[])
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_rm(cfg(ref), log=lambda *a: None)
    undo = sigterm_after(2)
    with pytest.raises(Preempted) as e:
        run_rm(cfg(run), log=lambda *a: None)
    undo()
    assert e.value.checkpoint == run / "checkpoint-2" and e.value.run == run and not (run / "model").exists()
    assert (run / "latest").read_text() == "checkpoint-2" and len(records(run)) == 2
    run_rm(cfg(run), resume=True, log=lambda *a: None)
    assert records(run) == records(ref) and len(records(run)) == 6
    assert_same_weights(run / "model", ref / "model")


def test_pretrain_sigterm_then_the_same_command_continues(tmp_path, sigterm_after):
    from r1lab.errors import Preempted
    from r1lab.model.base import PretrainConfig, base_dir, pretrain
    from r1lab.runtime.config import load_config

    cfg = lambda cache: load_config(PretrainConfig, None, [  # noqa: E731
        f"cache_dir={cache}", "steps=6", "save_every=100", "corpus.n_docs=40", "corpus.signs.n_docs=20", "batch_size=4",
        "seq_len=128", "vocab_size=300", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.dense_intermediate=64", "model.expert_intermediate=32", "model.kv_lora_rank=16", "report_to=[]"])
    ref = pretrain(cfg(tmp_path / "ref"), log=lambda *a: None)
    out = base_dir(cfg(tmp_path / "cut"))
    partial = out.with_name(out.name + ".partial")
    undo = sigterm_after(4)
    with pytest.raises(Preempted) as e:
        pretrain(cfg(tmp_path / "cut"), log=lambda *a: None)
    undo()
    assert e.value.checkpoint == partial / "checkpoint-4" and e.value.run is None and not out.exists()
    lines = []
    assert pretrain(cfg(tmp_path / "cut"), log=lines.append) == out
    assert any("resume: from" in x and "checkpoint-4 at step 4" in x for x in lines), lines
    assert records(out) == records(ref)
    assert_same_weights(out, ref)
