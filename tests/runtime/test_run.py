"""One run at a time per run directory (runtime/run.py): a second run on a locked directory, new or
--resume, is refused in one line naming the holder; a lock whose process was SIGKILLed blocks nothing;
the lock file alone leaves a directory empty for a new run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import r1lab
from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.runtime.run import LOCK, check_run_dir, lock_run_dir

HOLD = """
import sys, time
from pathlib import Path
from r1lab.runtime.run import lock_run_dir
lock_run_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_locked_run_dir_refuses_a_second_run_and_a_sigkilled_holder_blocks_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(r1lab.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline() == "locked\n"
        for extra in ([], ["--resume"]):
            assert main(["zero", f"run_dir={run}", *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"'{run}' is in use by another run (pid {holder.pid} on " in err, err
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait()
    assert (run / LOCK).exists()  # left behind, but no longer held
    lock_run_dir(run)
    lock_run_dir(run)  # the holder asking again: nothing to do
    assert (run / LOCK).read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"
    check_run_dir(run, resume=False)  # the lock file alone: an empty directory for a new run
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="already holds a run"):
        check_run_dir(run, resume=False)
    with pytest.raises(UserError, match="no checkpoint"):
        check_run_dir(run, resume=True)
