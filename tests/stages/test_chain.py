"""Running stages one after another (stages/chain.py)."""

import pytest

from r1lab.errors import Preempted
from r1lab.stages.chain import stage


def test_a_preempted_stage_is_not_done_and_names_the_chains_run_to_continue(tmp_path):
    def body(d, resume):
        raise Preempted(d / "run" / "checkpoint-3", d / "run")

    with pytest.raises(Preempted) as e:
        stage(tmp_path, "stage1", "key", body, log=lambda *a: None)
    assert e.value.run == tmp_path and e.value.checkpoint == tmp_path / "stage1" / "run" / "checkpoint-3"
    assert not (tmp_path / "stage1" / "done.json").exists()  # a rerun does not skip it


def preempted_at(tmp_path, checkpoint: str | None, key="key"):
    """Stage `stage1` of the chain in tmp_path, stopped by SIGTERM after writing run/`checkpoint`
    (None: before its first checkpoint); returns the calls to its body."""
    calls = []

    def body(d, resume):
        calls.append(resume)
        (d / "run").mkdir()
        (d / "run" / "junk").write_text("x")
        if checkpoint is not None:
            (d / "run" / checkpoint).mkdir()
            (d / "run" / "latest").write_text(checkpoint)
        raise Preempted(d / "run" / str(checkpoint), d / "run")

    with pytest.raises(Preempted):
        stage(tmp_path, "stage1", key, body, log=lambda *a: None)
    return calls


def rerun(tmp_path, key="key") -> tuple[bool, bool]:
    """Run `stage1` again: (the `resume` its body got, whether the preempted run's files were still there)."""
    seen = []
    record = stage(tmp_path, "stage1", key, lambda d, resume: seen.append((resume, (d / "run" / "junk").exists())) or {},
                   log=lambda *a: None)
    assert record["key"] == key and (tmp_path / "stage1" / "done.json").exists()
    return seen[0]


def test_a_stage_preempted_after_a_checkpoint_continues_from_it(tmp_path):
    assert preempted_at(tmp_path, "checkpoint-2") == [False]
    assert rerun(tmp_path) == (True, True)
    assert stage(tmp_path, "stage1", "key", lambda d, resume: pytest.fail("redone"), log=lambda *a: None)["key"] == "key"


def test_a_stage_preempted_before_its_first_checkpoint_starts_over(tmp_path):
    preempted_at(tmp_path, None)
    assert rerun(tmp_path) == (False, False)


def test_a_preempted_stage_with_other_inputs_starts_over(tmp_path):
    preempted_at(tmp_path, "checkpoint-2", key="old")
    assert rerun(tmp_path, key="new") == (False, False)


def test_a_stage_from_before_started_json_starts_over(tmp_path):
    """A half-done stage without started.json (its key unknown) is not continued."""
    preempted_at(tmp_path, "checkpoint-2")
    (tmp_path / "stage1" / "started.json").unlink()
    assert rerun(tmp_path) == (False, False)
