"""The one metrics log: every tracker gets the same step metrics, and every long loop shows a bar."""

from __future__ import annotations

import json
import re

import pytest

from r1lab.errors import UserError
from r1lab.runtime import runlog
from r1lab.runtime.runlog import check_report_to

RECORDS = [{"step": s, "loss": 1.0 / s, "reward/accuracy": 0.25 * s, "accuracy": None, "note": "x", "done": s == 3}
           for s in (1, 2, 3)]
SCALARS = [{"loss": r["loss"], "reward/accuracy": r["reward/accuracy"]} for r in RECORDS]  # numbers only, not bools


# run in a fresh process: trackio reads TRACKIO_DIR when first imported, and wandb keeps global state
TRACKERS_SCRIPT = """
import json, sys
from pathlib import Path
import wandb
from r1lab.runtime.runlog import RunLog

sent = []  # what wandb's own Run.log received (its offline file has no Python reader)
real_log = wandb.sdk.wandb_run.Run.log
def spy(self, data, step=None, **kw):
    sent.append((step, dict(data)))
    return real_log(self, data, step=step, **kw)
wandb.sdk.wandb_run.Run.log = spy
run, records = Path(sys.argv[1]), json.loads(sys.argv[2])
log = RunLog(run, [], report_to=["tensorboard", "wandb", "trackio"], config={"grpo": {"lr": 1e-4}})
for r in records:
    log.log(r)
log.close()
from trackio.sqlite_storage import SQLiteStorage
print("RESULT" + json.dumps({"wandb": sent, "trackio": SQLiteStorage.get_logs("r1lab", run.name)}))
"""


def test_every_tracker_gets_the_same_step_metrics(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("wandb")
    pytest.importorskip("trackio")
    run = tmp_path / "zero-run"
    run.mkdir()
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "TRACKIO_DIR": str(tmp_path / "trackio"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", TRACKERS_SCRIPT, str(run), json.dumps(RECORDS)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.split("RESULT", 1)[1].splitlines()[0])

    assert [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] == RECORDS
    assert got["wandb"] == [[r["step"], s] for r, s in zip(RECORDS, SCALARS)]
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))  # written offline, under the run
    assert [(row["step"], {k: row[k] for k in SCALARS[0]}) for row in got["trackio"]] == \
        [(r["step"], s) for r, s in zip(RECORDS, SCALARS)]
    assert (tmp_path / "trackio" / "r1lab.db").exists()  # trackio's local database, where TRACKIO_DIR says
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tensorboard"))
    tb.Reload()
    assert sorted(tb.Tags()["scalars"]) == ["loss", "reward/accuracy"]
    for key in ("loss", "reward/accuracy"):
        assert [(e.step, round(e.value, 6)) for e in tb.Scalars(key)] == [(r["step"], round(r[key], 6)) for r in RECORDS]


def test_report_to_refuses_unknown_and_missing_trackers(monkeypatch):
    with pytest.raises(UserError, match="report_to: expected a list of tensorboard, wandb, trackio .*got 'mlflow'"):
        check_report_to(["tensorboard", "mlflow"])
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"report_to: wandb is not installed \(pip install 'r1lab\[wandb\]'\)"):
        check_report_to(["wandb"])
    check_report_to(["tensorboard"])  # with the base install
    check_report_to([])


def test_every_long_loop_shows_a_bar_when_forced(tmp_path, monkeypatch, capfd):
    """A tiny R1-Zero run (pretraining, GRPO, evaluation), SFT, the reward model and `r1lab eval`,
    with R1LAB_PROGRESS=1: each loop's bar reaches the terminal stream."""
    from r1lab.engine.sampler import HFSampler
    from r1lab.engine.params import SamplingConfig
    from r1lab.stages.rm import RMConfig, run_rm
    from r1lab.stages.sft import SFTConfig, run_sft
    from r1lab.stages.zero import run_zero
    from tests.tiny_models import tiny_policy, tiny_zero_config

    monkeypatch.setenv("R1LAB_PROGRESS", "1")
    quiet = lambda *a: None  # noqa: E731
    summary = run_zero(tiny_zero_config(tmp_path, report_to="[]"), log=quiet)
    base = summary["base_model"]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+1", "completion": f" {a + 1}"}) + "\n" for a in range(8)))
    run_sft(SFTConfig(base=base, data=str(data), run_dir=str(tmp_path / "sft"), epochs=1, rows_per_step=4,
                      report_to=[]), log=quiet)
    run_rm(RMConfig(base=base, run_dir=str(tmp_path / "rm"), epochs=1, report_to=[]), log=quiet)
    model, tok = tiny_policy()
    HFSampler(model, tok, max_rows=2).generate(["ab", "ba", "xyz"], 2, SamplingConfig(1.0, 1.0, 4).params((), 0))
    err = capfd.readouterr().err
    for bar in ("pretrain", "grpo", "sft", "rm", "generate"):
        assert re.search(rf"{bar}: +\d+%", err) or re.search(rf"{bar}: \d+", err), bar
    monkeypatch.setenv("R1LAB_PROGRESS", "0")
    assert runlog.progress(range(3)).disable
