"""The GPU recipes, smoke-tested on CPU: each runs end to end with its hub model replaced by a tiny
random-weight Qwen2 (with a tokenizer), the HF rollout backend, a few rows of the real benchmark
files in ../shared/data (copied to tmp_path only) and tiny step counts. What this checks is that
the recipe's keys, data fields and gold answers work with the code; not its hyper-parameters."""

import json
from pathlib import Path

import pytest

from r1lab.data.problems import build_task
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.config import load_config
from r1lab.stages.zero import ZeroConfig, run_zero
from tests.tiny_models import save_tiny_qwen2

RECIPES = Path(__file__).parent.parent / "recipes"
DATA = Path(__file__).parent.parent.parent / "shared" / "data"  # the worktree's ../shared/data
if not DATA.exists():
    DATA = Path("/work/shared/data")
TINY_RUN = ["rollout.backend=hf", "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
            "grpo.sampling.max_new_tokens=12", "grpo.micro_batch=4", "eval.k=2", "eval.sampling.max_new_tokens=12", "data.n_test=2",
            "save_every=1"]


def rows(name: str, n: int, rename: dict[str, str] | None = None) -> list[dict]:
    """The first n records of a ../shared/data file, fields renamed to the hub's column names."""
    with open(DATA / name, encoding="utf-8") as f:
        out = [json.loads(line) for _, line in zip(range(n), f)]
    rename = rename or {}
    return [{rename.get(k, k): v for k, v in r.items() if k not in rename.values()} for r in out]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A random-weight Qwen2 stand-in for the recipes' hub models, with its own tokenizer."""
    out = tmp_path_factory.mktemp("qwen2")
    text = " ".join(r["problem"] for r in rows("gsm8k_test.jsonl", 20) + rows("math500.jsonl", 20))
    tok = train_tokenizer([text, "<think> </think> <answer> </answer> \\boxed{}"] * 4, vocab_size=400)
    return save_tiny_qwen2(out, tok, max_position_embeddings=4096)


# GSM8K's hub export has question/answer ("... #### 18"); the ../shared/data copy names them
# problem/solution (with the same "#### 18" rationale). MATH's hub columns problem/solution are
# the MATH-500 copy's own.
CASES = {
    "qwen2.5-0.5b-gsm8k-zero.yaml": ("gsm8k_test.jsonl", {"problem": "question", "solution": "answer"}),
    "qwen2.5-1.5b-math-zero.yaml": ("math500.jsonl", {}),
}


@pytest.mark.parametrize("recipe", sorted(CASES))
def test_zero_recipe_runs_on_cpu_with_a_tiny_stand_in(recipe, qwen_dir, tmp_path):
    name, rename = CASES[recipe]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(name, 60, rename)), encoding="utf-8")
    shipped = load_config(ZeroConfig, RECIPES / recipe, [])
    assert shipped.rollout.backend == "vllm" and "/" in shipped.base and not Path(shipped.base).exists()
    cfg = load_config(ZeroConfig, RECIPES / recipe, [f"base={qwen_dir}", f"data.path={data}",
                                                     f"run_dir={tmp_path / 'run'}", *TINY_RUN])
    # the gold answers are the records' final answers, not their rationales
    golds = [p.answer for p in build_task(cfg.data).problems("train", 100, seed=0)]
    assert golds and all("####" not in g and "\\boxed" not in g for g in golds)
    summary = run_zero(cfg, log=lambda *_: None)
    assert summary["steps"] == 2 and (tmp_path / "run" / "checkpoint-2" / "config.json").exists()
    assert summary["config"]["grpo"]["lr"] == shipped.grpo.lr  # the recipe's settings, not the defaults


def test_distill_recipe_runs_on_cpu_with_tiny_stand_ins(qwen_dir, tmp_path):
    """Teacher and student are the tiny Qwen2 (a random teacher is never right, so every trace is
    kept); the data are 60 MATH-500 records in MATH's hub columns."""
    from r1lab.stages.distill import DistillConfig, run_distill

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows("math500.jsonl", 60)), encoding="utf-8")
    recipe = RECIPES / "distill-qwen2.5-1.5b.yaml"
    shipped = load_config(DistillConfig, recipe, [])
    assert all("/" in m and not Path(m).exists() for m in (shipped.teacher, shipped.student))
    cfg = load_config(DistillConfig, recipe, [
        f"teacher={qwen_dir}", f"student={qwen_dir}", f"data.path={data}", f"run_dir={tmp_path / 'run'}",
        "sample.prompts=3", "sample.n=2", "sample.sampling.max_new_tokens=12", "sample.rejection.filters=[]",
        "sft.epochs=1", "sft.rows_per_step=2", "sft.warmup_steps=0", "report.k=2", "report.problems=2",
        "report.sampling.max_new_tokens=12"])
    result = run_distill(cfg, log=lambda *_: None)
    assert result["traces"]["kept"] == 6 and set(result["rows"]) == {"teacher", "distilled student", "base student"}
    assert result["config"]["sft"]["lr"] == shipped.sft.lr
