"""Running stages one after another (stages/chain.py)."""

import pytest

from r1lab.errors import Preempted
from r1lab.stages.chain import stage


def test_a_preempted_stage_is_not_done_and_names_the_chains_run_to_continue(tmp_path):
    def body(d):
        raise Preempted(d / "run" / "checkpoint-3", d / "run")

    with pytest.raises(Preempted) as e:
        stage(tmp_path, "stage1", "key", body, log=lambda *a: None)
    assert e.value.run == tmp_path and e.value.checkpoint == tmp_path / "stage1" / "run" / "checkpoint-3"
    assert not (tmp_path / "stage1" / "done.json").exists()  # a rerun redoes it
