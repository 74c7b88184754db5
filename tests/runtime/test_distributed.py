"""Multi-process training (distributed.py): 2 ranks under `torchrun` (gloo, CPU) give the losses and
weights of 1 process with the same global batch and seed, for GRPO and SFT (DDP-style and FSDP2);
a 2-rank GRPO run killed mid-way resumes under 2 ranks and ends where an uninterrupted one does, and
so does one whose rank 1 alone got SIGTERM (both ranks stop after the same step).

Why not bit-exact: a rank's share of the batch is padded and summed in other shapes and orders
than the whole batch (float addition is not associative), so the equivalence is up to float
tolerance; the samples themselves are the same, drawn from per-group seeds (sampler.PromptDraws)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1lab.engine.params import SamplingParams
from r1lab.errors import UserError
from r1lab.engine.sampler import HFSampler
from r1lab.rl.grpo import token_weights
from r1lab.rl.step import group_seeds
from r1lab.runtime.config import save_config
from r1lab.runtime.distributed import shard
from r1lab.stages.sft import SFTConfig, run_sft
from r1lab.stages.zero import run_zero
from tests.runtime.test_preempt import SLOW_CLI  # the CLI pausing after each step's record
from tests.tiny_models import tiny_policy, tiny_zero_config

TESTS = Path(__file__).parent
SRC = TESTS.parents[1] / "src"
LAUNCH_TIMEOUT = 240  # seconds: a hung collective fails the test instead of the suite

# Runs run_zero from a saved config; with a step number, rank 0 stops (sleeps) once that step's
# metrics line is written, so that the test can SIGKILL the whole launch mid-run.
DRIVER = """
import sys, time
import r1lab.runtime.runlog as runlog
from r1lab.runtime.config import load_config
from r1lab.stages.zero import ZeroConfig, run_zero

if len(sys.argv) > 3:
    log_step, pause_at = runlog.RunLog.log, int(sys.argv[3])
    def log(self, record):
        log_step(self, record)
        if record["step"] == pause_at:
            time.sleep(600)
    runlog.RunLog.log = log
run_zero(load_config(ZeroConfig, sys.argv[1]), resume=sys.argv[2] == "resume", log=lambda *a: None)
"""

WALL_CLOCK = ("time_", "gen_tokens_per_s")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One tiny pretrained base for every run here (the first run creates it)."""
    return tmp_path_factory.mktemp("cache")


# --- the pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize("n,world", [(8, 2), (7, 2), (5, 3), (3, 3), (16, 1)])
def test_shards_are_contiguous_cover_everything_and_differ_by_at_most_one(n, world):
    parts = [shard(n, r, world) for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_token_weights_of_a_share_with_the_global_counts_are_the_whole_batchs(aggregation):
    mask = (torch.arange(6)[None, :] < torch.tensor([3, 6, 1, 4, 2])[:, None]).float()  # (5, 6)
    whole = token_weights(mask, aggregation, 6)
    rows, tokens = mask.shape[0], float(mask.sum())
    parts = [token_weights(mask[s], aggregation, 6, rows, tokens) for s in (slice(0, 2), slice(2, 5))]
    assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(token_weights(mask[:2], aggregation, 6), token_weights(mask[:2], aggregation, 6, 2, float(mask[:2].sum())))


def test_a_groups_samples_do_not_depend_on_the_other_prompts_in_the_batch():
    """Per-group seeds: prompt 'b' sampled alone or after 'a' (as on two ranks vs one) gives the
    same completions; a shared generator (the int seed) would not."""
    model, tok = tiny_policy(seed=1)
    sampler = HFSampler(model, tok)
    params = lambda seed: SamplingParams(max_new_tokens=12, seed=seed)  # noqa: E731
    seeds = group_seeds(0, 3, range(2))
    both = sampler.generate(["a b", "x y z"], 4, params(seeds))
    alone = sampler.generate(["x y z"], 4, params(seeds[1:]))
    assert both.completion_ids[4:] == alone.completion_ids
    assert sampler.generate(["a b"], 4, params(seeds[:1])).completion_ids == both.completion_ids[:4]
    assert group_seeds(0, 3, range(2)) != group_seeds(0, 4, range(2)) != group_seeds(1, 3, range(2))


def test_grpo_refuses_an_unknown_parallel_and_fsdp2_with_lora_with_the_reason():
    from r1lab.runtime.config import load_config
    from r1lab.stages.zero import ZeroConfig

    assert load_config(ZeroConfig, None, ["parallel=fsdp2"]).parallel == "fsdp2"
    with pytest.raises(UserError, match="parallel, lora.r: LoRA adapters are not sharded"):
        load_config(ZeroConfig, None, ["parallel=fsdp2", "lora.r=4"])
    with pytest.raises(UserError, match="parallel: expected one of ddp, fsdp2"):
        load_config(ZeroConfig, None, ["parallel=zero3"])


# --- whole runs under torchrun ----------------------------------------------------------------


def kill_launch(proc: subprocess.Popen) -> None:
    """SIGKILL a launch: torchrun and its workers (which torchrun starts in sessions of their own)."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.communicate()


def launch(args: list[str], nproc: int = 2, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS.parents[1])]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if not wait:
        return proc
    try:
        _, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_launch(proc)
        raise
    assert proc.returncode == 0, err.decode()[-3000:]


def records(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(WALL_CLOCK)} for r in rows]


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def assert_close_records(a: list[dict], b: list[dict], atol: float) -> float:
    """Same steps and keys; numbers within atol; returns the largest difference."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    worst = 0.0
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float) and isinstance(rb[k], float):
                worst = max(worst, abs(ra[k] - rb[k]))
                assert ra[k] == pytest.approx(rb[k], abs=atol), (ra["step"], k)
            else:
                assert ra[k] == rb[k], (ra["step"], k)
    return worst


GRPO_OVER = {"grpo.steps": 4, "save_every": 2, "eval.pass_k": 0, "grpo.prompts_per_step": 3, "grpo.mu": 2,
             "grpo.lr": 1e-3, "rewards": "{accuracy: 1.0, format: 0.1, tests.tiny_models.length_reward: 1.0}"}


@pytest.fixture(scope="module")
def one(tmp_path_factory, cache):
    """The uninterrupted one-process GRPO run that the 2-rank launches below must end as."""
    one = tmp_path_factory.mktemp("grpo") / "one"
    run_zero(tiny_zero_config(one.parent, run_dir=str(one), **GRPO_OVER, **{"pretrain.cache_dir": cache}),
             log=lambda *a: None)
    assert max_weight_diff(one / "checkpoint-2", one / "checkpoint-4") > 1e-4  # the run really trains
    return one


@pytest.mark.parametrize("parallel", ["ddp", "fsdp2"])
def test_grpo_on_2_ranks_killed_and_resumed_equals_1_process(tmp_path, cache, one, parallel):
    """A 2-rank launch, SIGKILLed after step 3 (checkpoint-2 written) and resumed under 2 ranks,
    ends with the metrics of every step and the weights of one uninterrupted process: with the
    weights replicated (ddp) and sharded (fsdp2: sharded updates, rollouts from the gathered
    weights, each rank's optimizer shard in the checkpoint). A sharded checkpoint does not resume
    in one process, and says so in one line."""
    over = {**GRPO_OVER, "pretrain.cache_dir": cache, "parallel": parallel}
    two = tmp_path / "two"
    (tmp_path / "driver.py").write_text(DRIVER)
    save_config(tiny_zero_config(tmp_path, run_dir=str(two), **over), tmp_path / "two.yaml")

    proc = launch([str(tmp_path / "driver.py"), str(tmp_path / "two.yaml"), "new", "3"], wait=False)
    try:
        deadline = time.time() + LAUNCH_TIMEOUT
        while not ((two / "metrics.jsonl").exists() and '"step": 3' in (two / "metrics.jsonl").read_text()):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the launch never reached step 3"
            time.sleep(0.1)
    finally:
        kill_launch(proc)  # torchrun and both ranks, mid-run
    assert (two / "latest").read_text().strip() == "checkpoint-2" and not (two / "checkpoint-4").exists()
    # steps 1-3 ran on 2 ranks: each rank generated, scored and updated on its share of the groups
    assert_close_records(records(two), records(one)[:3], atol=1e-4)
    if parallel == "fsdp2":
        assert sorted(p.name for p in (two / "checkpoint-2" / "optimizer").iterdir()) == ["rank-0-of-2.pt", "rank-1-of-2.pt"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS.parents[1])])}
        alone = subprocess.run([sys.executable, "-m", "r1lab", "zero", str(tmp_path / "two.yaml"), "--resume"],
                               capture_output=True, text=True, env=env, timeout=LAUNCH_TIMEOUT)
        assert alone.returncode == 2 and "optimizer state in 2 shards; resume it with parallel=fsdp2 under 2 ranks" \
            in alone.stderr and "Traceback" not in alone.stderr, alone.stderr[-2000:]

    launch([str(tmp_path / "driver.py"), str(tmp_path / "two.yaml"), "resume"])
    diff = assert_close_records(records(two), records(one), atol=1e-4)
    wdiff = max_weight_diff(two / "checkpoint-4", one / "checkpoint-4")
    print(f"grpo {parallel} 2 ranks (killed, resumed) vs 1: max metric diff {diff:.2e}, max weight diff {wdiff:.2e}")
    assert wdiff < 1e-5
    assert (two / "report.md").exists() and (two / "summary.json").exists()  # rank 0 finished the run


def test_grpo_on_2_ranks_sigterm_to_one_rank_stops_both_after_the_same_step(tmp_path, cache, one):
    """SIGTERM to rank 1 alone: the flag is all-reduced at each step's end, so both ranks stop after
    the same step, rank 0 checkpoints it, both exit 143; resumed under 2 ranks, the run ends as one
    uninterrupted process does."""
    import psutil

    two = tmp_path / "two"
    (tmp_path / "cli.py").write_text(SLOW_CLI)
    save_config(tiny_zero_config(tmp_path, run_dir=str(two), **GRPO_OVER, **{"pretrain.cache_dir": cache}),
                tmp_path / "two.yaml")
    proc = launch([str(tmp_path / "cli.py"), "zero", str(tmp_path / "two.yaml")], wait=False)
    try:
        deadline = time.time() + LAUNCH_TIMEOUT
        while not ((two / "metrics.jsonl").exists() and '"step": 1,' in (two / "metrics.jsonl").read_text()):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the launch never reached step 1"
            time.sleep(0.1)
        (rank1,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
        rank1.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=LAUNCH_TIMEOUT)[1].decode()
    finally:
        if proc.poll() is None:
            kill_launch(proc)
    assert proc.returncode != 0 and "exitcode  : 143" in err, err[-3000:]  # torchrun's failure report
    step = len(records(two))
    assert 1 <= step < 4 and (two / "latest").read_text() == f"checkpoint-{step}"
    assert f"stopped by SIGTERM after writing {two / f'checkpoint-{step}'}; continue with: r1lab zero " in err

    launch([str(tmp_path / "cli.py"), "zero", str(tmp_path / "two.yaml"), "--resume"])
    assert_close_records(records(two), records(one), atol=1e-4)
    assert max_weight_diff(two / "checkpoint-4", one / "checkpoint-4") < 1e-5


FULL_DISK_ON_RANK_1 = """
import errno, os, sys, torch
import r1lab.runtime.checkpoint as checkpoint
from r1lab.cli import main

save = torch.save
def full_on_rank_1(obj, f, *a, **k):
    if os.environ["RANK"] == "1" and "rank-1-of-2.pt" in getattr(f, "name", ""):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(obj, f, *a, **k)
checkpoint.torch.save = full_on_rank_1
sys.exit(main(sys.argv[1:]))
"""


def test_fsdp2_checkpoint_with_a_full_disk_on_one_rank_ends_every_rank_in_one_line(tmp_path, cache):
    """Rank 1 cannot write its optimizer shard (ENOSPC): both ranks exit 2 at once (not at gloo's
    timeout), rank 1 naming its file and rank 0 the checkpoint and rank 1; nothing is left behind."""
    two = tmp_path / "two"
    (tmp_path / "cli.py").write_text(FULL_DISK_ON_RANK_1)
    save_config(tiny_zero_config(tmp_path, run_dir=str(two), **{**GRPO_OVER, "save_every": 1},
                                 parallel="fsdp2", **{"pretrain.cache_dir": cache}), tmp_path / "two.yaml")
    proc = launch([str(tmp_path / "cli.py"), "zero", str(tmp_path / "two.yaml")], wait=False)
    try:
        err = proc.communicate(timeout=LAUNCH_TIMEOUT)[1].decode()
    finally:
        if proc.poll() is None:
            kill_launch(proc)
    assert proc.returncode != 0 and err.count("exitcode  : 2") == 2, err[-3000:]  # torchrun's report: both ranks
    assert f"r1lab: error: {two}/.optimizer-1/rank-1-of-2.pt: not written: No space left on device" in err
    assert (f"r1lab: error: {two}/checkpoint-1: not written: rank 1 could not write its optimizer shard (its own "
            "error says why); the checkpoints written before are unchanged") in err
    ranks = err.split("torch/distributed/elastic")[0]  # the ranks' own output, before torchrun's report
    assert "Traceback" not in ranks, err[-3000:]
    assert not (two / "checkpoint-1").exists() and not (two / ".optimizer-1").exists() and not (two / "latest").exists()


SFT_ROWS = [{"prompt": f"what is {a}+{b}?", "completion": f"<think> {a}+{b}={a + b} </think> <answer>{a + b}</answer>"}
            for a, b in [(12, 34), (20, 21), (33, 11), (40, 2), (7, 8), (19, 5), (61, 3)]]


def sft_overrides(tmp_path, cache, run: str, **over) -> list[str]:
    # 7 examples, 3 rows per step: the last step of each epoch has 1 row, so one rank has none
    base = {"data": tmp_path / "sft.jsonl", "run_dir": tmp_path / run, "epochs": 2, "lr": 1e-2, "template": "plain",
            "pack": "false", "warmup_steps": 1, "seq_len": 256, "rows_per_step": 3, "micro_rows": 1,
            "pretrain.cache_dir": cache, "pretrain.steps": 3, "pretrain.corpus.n_docs": 200, "pretrain.corpus.signs.n_docs": 0,
            "pretrain.batch_size": 4, "pretrain.seq_len": 256, "pretrain.vocab_size": 300,
            "pretrain.model.hidden_size": 32, "pretrain.model.num_layers": 2, "pretrain.model.num_heads": 2,
            "pretrain.model.dense_intermediate": 64, "pretrain.model.expert_intermediate": 32,
            "pretrain.model.kv_lora_rank": 16, **over}
    return [f"{k}={v}" for k, v in base.items()]


def test_sft_on_2_ranks_ddp_and_fsdp2_equals_1_process(tmp_path, cache):
    from r1lab.runtime.config import load_config

    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS))
    out_one = run_sft(load_config(SFTConfig, None, sft_overrides(tmp_path, cache, "one")), log=lambda *a: None)
    one = records(tmp_path / "one")
    for parallel in ("ddp", "fsdp2"):
        launch(["-m", "r1lab", "sft", *sft_overrides(tmp_path, cache, parallel, parallel=parallel)])
        run = tmp_path / parallel
        assert (run / "final").read_text() == out_one.name
        diff = assert_close_records(
            [{k: v for k, v in r.items() if k != "seconds"} for r in records(run)],
            [{k: v for k, v in r.items() if k != "seconds"} for r in one], atol=1e-4)
        wdiff = max_weight_diff(run / out_one.name, out_one)
        print(f"sft {parallel} 2 ranks vs 1: max metric diff {diff:.2e}, max weight diff {wdiff:.2e}")
        assert wdiff < 1e-5
    # fsdp2, as if killed after epoch 1's checkpoint: the last one gone, resumed under 2 ranks
    run = tmp_path / "fsdp2"
    first = sorted((p for p in run.glob("checkpoint-*")), key=lambda p: int(p.name.split("-")[1]))[0]
    assert sorted(p.name for p in (first / "optimizer").iterdir()) == ["rank-0-of-2.pt", "rank-1-of-2.pt"]
    shutil.rmtree(run / out_one.name)
    (run / "final").unlink()
    (run / "latest").write_text(first.name)
    stamp = (first / "trainer_state.pt").stat().st_mtime_ns
    launch(["-m", "r1lab", "sft", *sft_overrides(tmp_path, cache, "fsdp2", parallel="fsdp2"), "--resume"])
    assert (run / "final").read_text() == out_one.name
    assert (first / "trainer_state.pt").stat().st_mtime_ns == stamp  # continued from it, not redone
    wdiff = max_weight_diff(run / out_one.name, out_one)
    print(f"sft fsdp2 2 ranks resumed from {first.name} vs 1: max weight diff {wdiff:.2e}")
    assert wdiff < 1e-5


def test_reward_model_on_2_ranks_equals_1_process(tmp_path, cache):
    from r1lab.runtime.config import load_config
    from r1lab.stages.rm import RMConfig, run_rm

    pairs = [{"prompt": f"hi {i}", "chosen": f"hello, friend {i}", "rejected": f"no {i} " * (1 + i % 3)} for i in range(9)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))

    def overrides(run: str) -> list[str]:  # 9 pairs in batches of 4: the last batch (1 pair) leaves a rank idle
        over = {"data": tmp_path / "pairs.jsonl", "run_dir": tmp_path / run, "epochs": 2, "batch_pairs": 4,
                "lr": 1e-2}
        return [f"{k}={v}" for k, v in over.items()] + [x for x in sft_overrides(tmp_path, cache, "") if x.startswith("pretrain.")]

    run_rm(load_config(RMConfig, None, overrides("one")), log=lambda *a: None)
    launch(["-m", "r1lab", "rm", *overrides("two")])
    one, two = (json.loads((tmp_path / r / "rm.json").read_text()) for r in ("one", "two"))
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    wdiff = max_weight_diff(tmp_path / "two" / "model", tmp_path / "one" / "model")
    print(f"rm 2 ranks vs 1: max loss diff {max(abs(a['loss'] - b['loss']) for a, b in zip(one['history'], two['history'])):.2e}, "
          f"max weight diff {wdiff:.2e}")
    # Looser than GRPO/SFT: the largest differences (~5e-5 at lr 1e-2, mean ~1e-7) are in routed
    # experts of the MoE base, where Adam turns gradients at rounding level into steps of up to lr.
    assert wdiff < 2e-4 and one["history"][0]["loss"] != one["history"][-1]["loss"]
