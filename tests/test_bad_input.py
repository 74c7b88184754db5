"""Bad input to every CLI command: one line on stderr, exit status 2, no traceback, no model built,
and nothing written: every file under the test's directory (run directories that already hold a
run included) is byte- and mtime-identical afterwards, and no file or directory appears.

One row per mistake: (command line, a substring the one-line message must contain). Placeholders
in braces are files made by the `files` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import r1lab.model.base
import r1lab.runtime.loading
import r1lab.stages.distill
import r1lab.stages.pipeline
import r1lab.stages.pretrain
import r1lab.stages.rm
import r1lab.stages.sft
import r1lab.stages.zero
from r1lab.cli import main

ROWS = [
    # --- zero ---
    (["zero", "{tmp}/nowhere.yaml"], "nowhere.yaml: no such config file"),
    (["zero", "{list_yaml}"], "top level must be a mapping"),
    (["zero", "{bad_yaml}"], "bad.yaml:2: invalid YAML"),
    (["zero", "grpo.lr_rate=1"], "unknown key 'grpo.lr_rate' (did you mean 'grpo.lr'?)"),
    (["zero", "grpo.group_size=1"], "grpo.group_size: GRPO needs at least 2 samples per prompt, got 1"),
    (["zero", "grpo.lr=-1"], "grpo.lr: expected a positive learning rate, got -1"),
    (["zero", "grpo.group_size=abc"], "grpo.group_size: expected int, got 'abc'"),
    (["zero", "grpo.steps=-3"], "grpo.steps: expected >= 1, got -3"),
    (["zero", "grpo.sampling.top_p=0"], "grpo.sampling.top_p: expected 0 < top_p <= 1, got 0"),
    (["zero", "grpo.sampling.temperature=-1"], "grpo.sampling.temperature: expected >= 0, got -1"),
    (["zero", "grpo.sampling.temperature=0"], "grpo.sampling.temperature: expected > 0"),
    (["zero", "grpo.temperature=1"], "grpo.temperature: renamed to grpo.sampling.temperature"),
    (["zero", "eval.max_new_tokens=50"], "eval.max_new_tokens: renamed to eval.sampling.max_new_tokens"),
    (["zero", "eval.sampling.max_new_tokens=0"], "eval.sampling.max_new_tokens: expected >= 1, got 0"),
    (["zero", "eval.k=0"], "eval.k"),
    (["zero", "save_every=0"], "save_every: expected >= 1, got 0"),
    (["zero", "data.n_test=-1"], "data.n_test: expected >= 1, got -1"),
    (["zero", "data.task=file", "data.path={tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["zero", "data.task=file", "data.path={bad_jsonl}"], "bad.jsonl:2: malformed JSON"),
    (["zero", "data.task=file", "data.path={missing_jsonl}"], "missing.jsonl:2: missing field 'problem'"),
    (["zero", "data.task=file", "data.path={typed_jsonl}"], "typed.jsonl:1: field 'problem' is list"),
    (["zero", "grpo.grad_clip=-1"], "grpo.grad_clip: expected > 0, got -1"),
    (["zero", "grpo.warmup_steps=-5"], "grpo.warmup_steps: expected >= 0, got -5"),
    (["zero", "threads=-1"], "threads: expected >= 0"),
    (["zero", "run_dir={existing}"], "already holds a run"),
    (["zero", "device=gpu"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (["zero", "dtype=float16"], "dtype: expected one of 'float32', 'bfloat16', got 'float16'"),
    (["zero", "data.task=file", "data.path=nobody-xyz/none"], "nobody-xyz/none: cannot"),  # a hub id, offline
    (["zero", "rewards={{accuracy: 1.0, preference: 0.5}}", "data.general_share=0.25", "reward_model={tmp}/nomodel"],
     "reward_model: '{tmp}/nomodel': no such model directory"),
    (["zero", "pretrain.model.hidden_size=0"], "pretrain.model.hidden_size: expected >= 1, got 0"),
    (["zero", "pretrain.corpus.signs.n_numbers=4"], "pretrain.corpus.signs.n_numbers: expected 2 or 3, got 4"),
    (["zero", "gate_min_accuracy=1.5"], "gate_min_accuracy: expected a fraction in [0, 1], got 1.5"),
    (["zero", "report_to=[mlflow]"], "report_to: expected a list of tensorboard, wandb, trackio"),
    (["zero", "num_generations=8"], "unknown key 'num_generations' (TRL's name; r1lab's key is 'grpo.group_size'"),
    (["zero", "grpo.loss_type=dapo"], "r1lab's key is 'grpo.aggregation'"),
    (["zero", "data.path={typed_jsonl}"], "data.path: read only with task=file (add data.task=file)"),
    (["zero", "eval.pass_k_problems=0"], "eval.pass_k_problems: expected >= 1, got 0"),
    (["zero", "--resume", "grpo.lr=-1"], "grpo.lr: expected a positive learning rate"),  # an override after a flag is read
    (["zero", "--resume", "--bogus"], "unrecognized arguments: --bogus"),
    (["config", "zero", "no_such_section"], "no ZeroConfig key is, or is under, 'no_such_section'"),
    # --- pretrain ---
    (["pretrain", "lr=-1"], "lr: expected a positive learning rate, got -1"),
    (["pretrain", "stpes=10"], "unknown key 'stpes' (did you mean 'steps'?)"),
    (["pretrain", "batch_size=two"], "batch_size: expected int, got 'two'"),
    (["pretrain", "{list_yaml}"], "top level must be a mapping"),
    (["pretrain", "threads=-2"], "threads: expected >= 0"),
    (["pretrain", "model.routed_experts=2", "model.experts_per_token=4"], "experts_per_token: must be <= routed_experts"),
    # --- sft ---
    (["sft"], "data: give the training data"),
    (["sft", "data={tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["sft", "data=nobody-xyz/none"], "nobody-xyz/none: cannot"),
    (["sft", "packing=false"], "unknown key 'packing' (TRL's name; r1lab's key is 'pack'"),
    (["sft", "data={sft_bad}"], "sft_bad.jsonl:2: malformed JSON"),
    (["sft", "data={sft_missing}"], "sft_missing.jsonl:1: expected string fields 'prompt' and 'completion'"),
    (["sft", "data={sft_typed}"], "sft_typed.jsonl:1: expected string fields 'prompt' and 'completion'"),
    (["sft", "data={sft_good}", "epochs=-1"], "epochs: expected >= 1, got -1"),
    (["sft", "data={sft_good}", "lr=-0.1"], "lr: expected a positive learning rate"),
    (["sft", "data={sft_good}", "grad_clip=-1"], "grad_clip: expected > 0, got -1"),
    (["sft", "data={sft_good}", "threads=-1"], "threads: expected >= 0"),
    (["sft", "data={sft_good}", "template=chatml"], "template: expected one of"),
    (["sft", "data={sft_good}", "base={tmp}/nomodel"], "no such model directory"),
    (["sft", "data={sft_good}", "run_dir={existing}"], "already holds a run"),
    (["sft", "data={sft_good}", "device=cuda:x"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'"),
    (["sft", "data={sft_good}", "dtype=bf16"], "dtype: expected one of 'float32', 'bfloat16', got 'bf16'"),
    # --- sample ---
    (["sample"], "the following arguments are required: model"),
    (["sample", "{tmp}/nomodel"], "no such model directory"),
    (["sample", "{model}", "sampling.temperature=-1"], "sampling.temperature: expected >= 0"),
    (["sample", "{model}", "sampling.top_p=0"], "sampling.top_p: expected 0 < top_p <= 1"),
    (["sample", "{model}", "temperature=1"], "temperature: renamed to sampling.temperature"),
    (["sample", "{model}", "task=countdown"], "task: renamed to data.task"),
    (["sample", "{model}", "n=0"], "n: expected >= 1, got 0"),
    (["sample", "{model}", "prompts=1.5"], "prompts: expected int, got 1.5"),
    (["sample", "{model}", "rejection.filters=[nope]"], "unknown filter 'nope'"),
    (["sample", "{model}", "data.task=sudoku"], "unknown task 'sudoku'"),
    (["sample", "{model}", "out={sampled}"], "already holds sampled data"),
    (["sample", "{model}", "device=tpu"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    # --- rm ---
    (["rm", "data={tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["rm", "data={rm_bad}"], "rm_bad.jsonl:2: malformed JSON"),
    (["rm", "data={rm_missing}"], "rm_missing.jsonl:1: expected string fields 'prompt', 'chosen' and 'rejected'"),
    (["rm", "data={rm_typed}"], "rm_typed.jsonl:1: expected string fields"),
    (["rm", "epochs=-2"], "epochs: expected >= 1, got -2"),
    (["rm", "lr=-1"], "lr: expected a positive learning rate"),
    (["rm", "threads=-1"], "threads: expected >= 0"),
    (["rm", "base={tmp}/nomodel"], "no such model directory"),
    (["rm", "run_dir={existing}"], "already holds a run"),
    (["rm", "dtype=half"], "dtype: expected one of 'float32', 'bfloat16', got 'half'"),
    # --- pipeline ---
    (["pipeline", "{list_yaml}"], "top level must be a mapping"),
    (["pipeline", "reasoning_rl.grpo.group_size=1"], "reasoning_rl.grpo.group_size: GRPO needs at least 2"),
    (["pipeline", "general_share=0"], "general_share"),
    (["pipeline", "cold_start.mixed_share=2"], "cold_start.mixed_share: expected a fraction in [0, 1], got 2"),
    (["pipeline", "reasoning_rl.num_generations=4"], "r1lab's key is 'reasoning_rl.grpo.group_size'"),
    (["pipeline", "cold_start.data={tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["pipeline", "report.k=0"], "report.k"),
    (["pipeline", "report.max_new_tokens=9"], "report.max_new_tokens: renamed to report.sampling.max_new_tokens"),
    (["pipeline", "rejection.sample.langs=[en]"], "rejection.sample.langs: renamed to rejection.sample.data.langs"),
    (["pipeline", "zero.grpo.lr=-1"], "zero.grpo.lr: expected a positive learning rate"),
    (["pipeline", "device=gpu"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    # --- distill ---
    (["distill", "--teacher", "{tmp}/nomodel"], "teacher:"),
    (["distill", "--student", "gpt-huge"], "student: 'gpt-huge' is neither a preset"),
    (["distill", "--data", "{tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["distill", "teacher={tmp}/nomodel"], "teacher: '{tmp}/nomodel' is not a model directory"),
    (["distill", "--student", "{tmp}/nomodel"], "student: '{tmp}/nomodel' is neither a preset"),
    (["pipeline", "base={tmp}/nomodel"], "base: '{tmp}/nomodel': no such model directory"),
    (["distill", "--data", "{bad_jsonl}"], "bad.jsonl:2: malformed JSON"),
    (["distill", "rl_after_steps=-1"], "rl_after_steps: expected >= 0"),
    (["distill", "sft.epochs=0"], "epochs: expected >= 1"),
    (["distill", "report.dtype=float64"], "report.dtype: expected one of 'float32', 'bfloat16', got 'float64'"),
    (["distill", "device=cuda:-1"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:-1'"),
    # --- config ---
    (["config", "zeroo"], "invalid choice: 'zeroo'"),
    (["config"], "the following arguments are required: stage"),
    # --- eval ---
    (["eval", "{tmp}/nomodel", "--data", "{good_jsonl}"], "no such model directory"),
    (["eval", "{model}"], "the following arguments are required: --data"),
    (["eval", "{model}", "--data", "{tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["eval", "{model}", "--data", "{bad_jsonl}"], "bad.jsonl:2: malformed JSON"),
    (["eval", "{model}", "--data", "{missing_jsonl}"], "missing.jsonl:2:"),
    (["eval", "{model}", "--data", "{typed_jsonl}"], "typed.jsonl:1: field 'problem' is list"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--k", "0"], "k: expected >= 1, got 0"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--k", "four"], "--k: invalid int value: 'four'"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--top-p", "0"], "top-p: expected 0 < top-p <= 1, got 0.0"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--temperature", "-1"], "temperature: expected >= 0, got -1.0"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--limit", "-1"], "limit"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--device", "gpu"], "--device: expected 'auto', 'cpu', 'cuda' or"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--dtype", "fp16"], "--dtype: expected one of 'float32', 'bfloat16'"),
    (["eval", "{model}", "--data", "{good_jsonl}", "--out", "{existing}"], "holds no eval_config.yaml"),
    # an --out that holds an evaluation with k=4: a rerun with more samples per problem must not mix them in
    (["eval", "{model}", "--data", "{good_jsonl}", "--k", "8", "--out", "{evaluated}"], "other settings (k:"),
    # --- grade ---
    (["grade", "{tmp}/none.jsonl"], "none.jsonl: no such file"),
    (["grade", "{grade_bad}"], "grade_bad.jsonl:2: malformed JSON"),
    (["grade", "{grade_no_gold}"], "grade_no_gold.jsonl:2: missing field 'answer'"),
    (["grade", "{grade_no_pred}"], "grade_no_pred.jsonl:1: missing prediction field"),
    (["grade", "{grade_typed}"], "grade_typed.jsonl:1: field 'completion' is list, expected a string or number"),
    (["grade", "{good_grade}", "--task", "rust"], "invalid choice: 'rust'"),
    (["grade", "{good_grade}", "--out", "{tmp}/nodir/out.jsonl"], "no such directory"),
]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    from transformers import Qwen2Config

    from r1lab.eval.benchmarks import DataSpec
    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.stages.eval import EvalRunConfig, saved_settings

    model = tmp_path / "model"  # a config and a tokenizer, no weights: loading it would fail loudly
    Qwen2Config(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(model)
    train_tokenizer(["abc abd"] * 5, vocab_size=280).save_pretrained(model)
    existing = tmp_path / "existing"  # a run directory that already holds a run
    existing.mkdir()
    write(existing / "config.yaml", "seed: 0\n")
    write(existing / "metrics.jsonl", '{"step": 1}\n')
    (existing / "latest").write_text("checkpoint-1")
    sampled = tmp_path / "sampled"
    sampled.mkdir()
    write(sampled / "sft.jsonl", '{"prompt": "1+1", "completion": "2"}\n')
    write(sampled / "report.json", "{}\n")
    good = write(tmp_path / "good.jsonl", '{"problem": "1+1", "answer": "2"}\n')
    evaluated = tmp_path / "evaluated"
    evaluated.mkdir()
    settings = saved_settings(EvalRunConfig(str(model), DataSpec(good), k=4))
    write(evaluated / "eval_config.yaml", yaml.safe_dump(settings, sort_keys=False))
    write(evaluated / "samples.jsonl", "")
    return {
        "tmp": str(tmp_path), "model": str(model), "existing": str(existing), "sampled": str(sampled),
        "evaluated": str(evaluated), "good_jsonl": good,
        "list_yaml": write(tmp_path / "list.yaml", "- grpo.lr: 1e-5\n- seed: 1\n"),
        "bad_yaml": write(tmp_path / "bad.yaml", "seed: 0\ngrpo: lr: 1\n"),
        "bad_jsonl": write(tmp_path / "bad.jsonl", '{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n'),
        "missing_jsonl": write(tmp_path / "missing.jsonl", '{"problem": "1+1", "answer": "2"}\n{"question": "2+2", "answer": "4"}\n'),
        "typed_jsonl": write(tmp_path / "typed.jsonl", '{"problem": ["1+1"], "answer": "2"}\n'),
        "sft_good": write(tmp_path / "sft_good.jsonl", '{"prompt": "1+1", "completion": "2"}\n'),
        "sft_bad": write(tmp_path / "sft_bad.jsonl", '{"prompt": "1+1", "completion": "2"}\n{"prompt": \n'),
        "sft_missing": write(tmp_path / "sft_missing.jsonl", '{"prompt": "1+1"}\n'),
        "sft_typed": write(tmp_path / "sft_typed.jsonl", '{"prompt": "1+1", "completion": 2}\n'),
        "rm_bad": write(tmp_path / "rm_bad.jsonl", '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{oops}\n'),
        "rm_missing": write(tmp_path / "rm_missing.jsonl", '{"prompt": "a", "chosen": "b"}\n'),
        "rm_typed": write(tmp_path / "rm_typed.jsonl", '{"prompt": "a", "chosen": "b", "rejected": null}\n'),
        "good_grade": write(tmp_path / "good_grade.jsonl", '{"completion": "2", "answer": "2"}\n'),
        "grade_no_gold": write(tmp_path / "grade_no_gold.jsonl", '{"completion": "2", "answer": "2"}\n{"completion": "3"}\n'),
        "grade_no_pred": write(tmp_path / "grade_no_pred.jsonl", '{"answer": "2"}\n'),
        "grade_bad": write(tmp_path / "grade_bad.jsonl", '{"completion": "2", "answer": "2"}\n{"completion": 3,\n'),
        "grade_typed": write(tmp_path / "grade_typed.jsonl", '{"completion": ["2"], "answer": "2"}\n'),
    }


def tree(root: Path) -> dict[str, tuple]:
    """Every file and directory under `root`: (mtime_ns, contents) for files, None for directories."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_models(monkeypatch):
    """Building, pretraining or loading a model fails the test: bad input must be found first.
    (`loading.load` still raises its own UserError for a directory that is not a model: that check
    comes before `load_model`.)"""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built or pretrained before the input was checked")

    for module in (r1lab.stages.zero, r1lab.stages.sft, r1lab.stages.rm, r1lab.stages.pipeline, r1lab.stages.distill,
                   r1lab.stages.pretrain):
        monkeypatch.setattr(module, "pretrain", forbidden)
    monkeypatch.setattr(r1lab.model.base, "build_model", forbidden)
    monkeypatch.setattr(r1lab.runtime.loading, "load_model", forbidden)  # the one loader


def test_table_size():
    assert len(ROWS) >= 30
    commands = {argv[0] for argv, _ in ROWS}
    assert commands == {"zero", "pretrain", "sft", "sample", "rm", "pipeline", "distill", "config", "eval", "grade"}


@pytest.mark.parametrize("argv, needle", ROWS, ids=[" ".join(argv) for argv, _ in ROWS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needle, files, no_models, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)  # default run directories (runs/...) would appear here
    argv = [a.format(**files) for a in argv]
    before = tree(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not out, (out, err)
    assert needle.format(**files) in err, (needle, err)
    assert tree(tmp_path) == before  # nothing written, overwritten or left behind



def _numeric_keys(cls, prefix=""):
    from r1lab.runtime.config import _field_types, _is_config

    for name, tp in _field_types(cls).items():
        if _is_config(tp):
            yield from _numeric_keys(tp, f"{prefix}{name}.")
        elif tp in (int, float):
            yield prefix + name


@pytest.mark.parametrize("command", ["zero", "pretrain", "sft", "sample", "rm", "pipeline", "distill"])
def test_every_numeric_key_has_its_bound_checked_on_load(command):
    """-1 is out of range for every number r1lab takes (counts, sizes, rates, seeds, fractions):
    each key refuses it in one line when the config loads, before anything runs."""
    from r1lab.cli import _commands
    from r1lab.errors import UserError
    from r1lab.runtime.config import load_config

    cls = _commands()[command][0]
    accepted = []
    for key in _numeric_keys(cls):
        try:
            load_config(cls, None, [f"{key}=-1"])
        except UserError as e:
            assert "\n" not in str(e) and key.rpartition(".")[2] in str(e), (key, str(e))
        else:
            accepted.append(key)
    assert not accepted, accepted
