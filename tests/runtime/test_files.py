"""A full disk (runtime/files.py): a directory or file that cannot be written is a one-line UserError
naming it and the cause, its temporary copy is gone and what was there before is untouched; a real
`r1lab sft` whose second checkpoint does not fit on a small tmpfs ends with exit 2, its first
checkpoint still `latest` and loadable, and --resume from it ends where an uninterrupted run does."""

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import r1lab
from r1lab.cli import main
from r1lab.data.preferences import preference_pairs
from r1lab.errors import UserError
from r1lab.runtime.checkpoint import load_checkpoint, resume_candidates
from r1lab.runtime.files import write_atomically, write_dir_atomically
from r1lab.runtime.loading import load
from r1lab.tasks import apply_template
from tests.runtime.test_checkpoint import assert_same_weights, records
from tests.tiny_models import save_tiny_base

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def torch_like_failure(tmp):
    """What torch.save raises on a full disk: its own error, the file object's OSError as context."""
    try:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


@pytest.mark.parametrize("fail", [FULL, torch_like_failure], ids=["oserror", "torch"])
def test_a_full_disk_keeps_the_old_directory_and_removes_the_partial_one(tmp_path, fail):
    out = tmp_path / "model"
    write_dir_atomically(out, lambda d: (d / "a.txt").write_text("old"))

    def fill(d):
        (d / "a.txt").write_text("new")
        if isinstance(fail, OSError):
            raise fail
        fail(d)

    with pytest.raises(UserError, match=rf"^{out}: not written: (No space left on device|Disk quota exceeded)"):
        write_dir_atomically(out, fill)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (out / "a.txt").read_text() == "old"
    with pytest.raises(RuntimeError, match="a bug"):  # anything else keeps its traceback, and is cleaned up too
        write_dir_atomically(out, lambda d: (_ for _ in ()).throw(RuntimeError("a bug")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "latest", "checkpoint-2")

    def no_space(fd):
        raise FULL

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(UserError, match="latest: not written: No space left on device"):
        write_atomically(path, "checkpoint-4")
    assert [p.name for p in tmp_path.iterdir()] == ["latest"] and path.read_text() == "checkpoint-2"


def can_mount_tmpfs(where: Path) -> bool:
    where.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{where}'"],
                           capture_output=True)
    return probe.returncode == 0


def pages(d: Path) -> int:
    """The bytes `d`'s files take on a tmpfs (whole 4 KiB pages)."""
    return sum(math.ceil(f.stat().st_size / 4096) * 4096 for f in d.rglob("*") if f.is_file())


def test_sft_checkpoint_into_a_full_tmpfs_is_one_line_and_the_previous_one_resumes(tmp_path, capsys):
    if not shutil.which("unshare") or not can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (needs root or CAP_SYS_ADMIN)")
    pairs = preference_pairs("train")[:12]
    base = save_tiny_base(tmp_path / "base", [apply_template(p.prompt) + p.chosen + p.rejected for p in pairs] * 3)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a}?", "completion": f"<answer>{2 * a}</answer>"}) + "\n"
                            for a in range(12)))
    args = ["sft", f"base={base}", f"data={data}", "epochs=1", "lr=1e-2", "template=plain", "pack=false",
            "rows_per_step=2", "micro_rows=2", "warmup_steps=2", "save_every=2", "seq_len=64", "report_to=[]"]
    ref = tmp_path / "ref"
    assert main([*args, f"run_dir={ref}"]) == 0  # checkpoints 2, 4, 6

    # a tmpfs that holds checkpoint-2, the run's small files and half a checkpoint more: checkpoint-4 cannot fit
    size = pages(ref / "checkpoint-2") * 3 // 2 + 16 * 4096
    mnt, out = tmp_path / "mnt", tmp_path / "copy"
    mnt.mkdir()
    env = {**os.environ, "R1LAB_PROGRESS": "0", "PYTHONPATH": str(Path(r1lab.__file__).parents[1])}
    script = (f"mount -t tmpfs -o size={size} tmpfs '{mnt}' || exit 99; "
              f"'{sys.executable}' -m r1lab \"$@\" run_dir='{mnt}/run'; rc=$?; cp -a '{mnt}/run' '{out}'; exit $rc")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.endswith(f"r1lab: error: {mnt}/run/checkpoint-4: not written: No space left on device (its "
                                "partial copy is removed; what was written before is unchanged); free some space and "
                                "run again\n"), done.stderr[-2000:]

    assert (out / "latest").read_text() == "checkpoint-2"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".tmp", "checkpoint"))) == ["checkpoint-2"]
    assert resume_candidates(out) == [out / "checkpoint-2"]
    model, _ = load(base)
    assert load_checkpoint(out / "checkpoint-2", model)["step"] == 2
    assert_same_weights(out / "checkpoint-2", ref / "checkpoint-2")

    # with room again (the copy, on the ordinary disk), --resume ends where the uninterrupted run did
    capsys.readouterr()
    assert main([*args, f"run_dir={out}", "--resume"]) == 0
    assert records(out) == records(ref) and (out / "final").read_text() == "checkpoint-6"
    assert_same_weights(out / "checkpoint-6", ref / "checkpoint-6")
    assert torch.load(out / "checkpoint-6" / "trainer_state.pt", weights_only=False)["step"] == 6
