"""The one door between stages: running commands one after another, as `pipeline` and `distill` do.

    run = start(cfg, log)                                         # run_dir, with config.yaml
    rec = stage(run, "stage2", fingerprint(cfg.x, prev), lambda d, resume: rl_stage(cfg.x, base, d, log, resume), log)
    row = measure(Path(rec["model"]), data, cfg.report, seed, device)

A stage runs a command (`rl_stage`: `r1lab zero`, `sft_stage`, `sample_stage`, `rm_stage`) into its
own directory under the run and hands on only what it wrote there: the model directory and a small
record. `stage` skips a stage whose `done.json` says it finished with the same inputs (`fingerprint`
of its settings and of the records it builds on). A stage left half-done by an interruption
(SIGTERM, a crash, a SIGKILL) with the same inputs continues: `started.json`, written atomically
when the stage starts, holds its key, and when a command's run directory under the stage
(d/run, d/sft) has a checkpoint, the stage's body is called with resume=True, which continues that
command from its newest usable checkpoint (`--resume`), to the same weights and records as an
uninterrupted run. A half-done stage with no checkpoint yet, or one started or done with other
inputs, is redone from its start, and so are the stages after it, whose inputs include its record
(its `seconds` among them). `measure` takes every report column of one model the same way for
every row: pass@1 and cons@k over k samples at the paper's T = 0.6 / top-p 0.95 on held-out
problems, format rate, language mixing on zh/ja/ko prompts, mean length, parameters, and (given a
reward model) the reward model's mean score of answers to held-out general prompts.

Stage modules never import each other: `pipeline` and `distill` reach the other stages, and their
configs, through this module alone (tests/test_layers.py holds that).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch

from r1lab.data.problems import TEST_SEED, TaskConfig, build_task
from r1lab.data.prompting import adds_special_tokens, render_prompt, resolve_template
from r1lab.engine.params import SamplingConfig, sampling
from r1lab.engine.sampler import HFSampler
from r1lab.errors import Preempted, UserError
from r1lab.eval.metrics import evaluate
from r1lab.grading.shape import summary_of
from r1lab.model.architecture import count_parameters
from r1lab.rl.reward_model import scores
from r1lab.runtime.checkpoint import resume_candidates
from r1lab.runtime.config import config_to_dict, save_config
from r1lab.runtime.files import write_atomically, write_json
from r1lab.runtime.loading import load
from r1lab.runtime.run import lock_run_dir, resolve_run_dir
from r1lab.stages.rm import RMConfig, run_rm
from r1lab.stages.sample import SampleConfig, run_sample
from r1lab.stages.sft import SFTConfig, run_sft
from r1lab.stages.zero import ZeroConfig, arithmetic, run_zero
from r1lab.tasks.general import general_prompts

__all__ = ["RMConfig", "ReportConfig", "SFTConfig", "SampleConfig", "ZeroConfig", "arithmetic", "cell", "checks_markdown",
           "fingerprint", "measure", "rl_stage", "rm_stage", "sample_stage", "sft_stage", "stage", "start", "table", "write_result"]


@dataclass
class ReportConfig:
    k: int = 8  # samples per held-out problem
    problems: int = 100  # held-out reasoning problems each model is evaluated on
    sampling: SamplingConfig = sampling(temperature=0.6, top_p=0.95, max_new_tokens=200)  # how each evaluation sample is drawn (R1 §5: T 0.6, top-p 0.95)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the measured models' (and the reward model's) weights
    RENAMED: ClassVar[dict[str, str]] = {"temperature": "sampling.temperature", "top_p": "sampling.top_p",
                                         "max_new_tokens": "sampling.max_new_tokens"}

    def validate(self) -> None:
        if self.k < 1 or self.problems < 1:
            raise UserError(f"k, problems: expected >= 1, got {self.k} and {self.problems}")


# --- running stages ------------------------------------------------------------------------------


def start(cfg, log=print) -> Path:
    """The run directory of a chain of stages (run_dir's {time} filled in), with config.yaml."""
    run = resolve_run_dir(cfg.run_dir, resume=False)
    lock_run_dir(run)  # made, and ours alone while this process runs (runtime/run.py)
    save_config(cfg, run / "config.yaml")
    log(f"{type(cfg).__name__}: writing {run}")
    return run


def fingerprint(*parts) -> str:
    """A hash of a stage's settings and of the records of the stages it builds on."""
    blob = json.dumps([config_to_dict(p) if is_dataclass(p) else p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage(run: Path, name: str, key: str, body: Callable[[Path, bool], dict], log=print,
          command: str = "pipeline") -> dict:
    """Run `body(directory, resume)` unless `run/name/done.json` says it finished with the same
    inputs (`key`, a `fingerprint`); `resume`: continue the half-done stage's checkpointed run
    rather than start it over. Returns the stage's record (see the module docstring)."""
    d = run / name
    record = _read_json(d / "done.json")
    if record.get("key") == key:
        log(f"{command}: {name} already done, skipped")
        return record
    resume = _read_json(d / "started.json").get("key") == key and _has_checkpoint(d)
    if resume:
        log(f"{command}: {name} continues from its checkpoint ...")
    else:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        write_json(d / "started.json", {"key": key})
        log(f"{command}: {name} ...")
    t0 = time.time()
    try:
        record = {**body(d, resume), "seconds": time.time() - t0, "key": key}
    except Preempted as e:  # SIGTERM mid-stage: the whole chain is continued by rerunning it on `run`
        if e.run is not None:
            e.run = run
        raise
    write_json(d / "done.json", record)
    log(f"{command}: {name} done in {record['seconds']:.0f}s")
    return record


def _read_json(path: Path) -> dict:
    """A stage's done.json or started.json; {} when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _has_checkpoint(d: Path) -> bool:
    """Whether a command's run directory in stage directory `d` (d/run, d/sft) has a checkpoint."""
    return any(resume_candidates(p) for p in d.iterdir() if p.is_dir())


def rl_stage(cfg: ZeroConfig, base: Path, d: Path, log=print, resume: bool = False, **fields) -> dict:
    """`r1lab zero` from `base` into d/run (`fields` override cfg's; `resume`: --resume): the final
    model and its measures."""
    run_cfg = replace(cfg, base=str(base), run_dir=str(d / "run"), **fields)
    run_cfg.validate()
    summary = run_zero(run_cfg, resume=resume, log=log)
    latest = (d / "run" / "latest").read_text().strip()
    return {"model": str((d / "run" / latest).resolve()), "final": summary["final"],
            "train_seconds": summary["train_seconds"], "steps": summary["steps"]}


def sft_stage(cfg: SFTConfig, base: Path, data: Path, d: Path, log=print, resume: bool = False, **fields) -> dict:
    """`r1lab sft` of `base` on `data` into d/sft (`resume`: --resume): the final checkpoint, its
    template, training seconds."""
    t0 = time.time()
    out = run_sft(replace(cfg, base=str(base), data=str(data), run_dir=str(d / "sft"), **fields), resume, log)
    return {"model": str(out.resolve()), "template": json.loads((out / "sft.json").read_text())["template"],
            "train_seconds": time.time() - t0}


def sample_stage(cfg: SampleConfig, model: Path, d: Path, log=print, resume: bool = False,
                 **fields) -> tuple[Path, dict]:
    """`r1lab sample` of `model` into d/sample: (the kept samples' JSONL, the sampling report).
    `resume`: a sampling that finished (its report.json, written last, is there) is read, not redone."""
    out = d / "sample"
    if not (resume and (out / "report.json").exists()):
        run_sample(replace(cfg, model=str(model), out=str(out), **fields), log=log)
    return out / "sft.jsonl", json.loads((out / "report.json").read_text())


def rm_stage(cfg: RMConfig, base: Path, d: Path, log=print, resume: bool = False, **fields) -> dict:
    """`r1lab rm` from `base` into d/run (`resume`: --resume): the reward model and its rm.json."""
    out = run_rm(replace(cfg, base=str(base), run_dir=str(d / "run"), **fields), resume, log)
    return {"model": str(out.resolve()), **json.loads((out / "rm.json").read_text())}


# --- measuring and reporting ---------------------------------------------------------------------


def measure(model_dir: Path, data: TaskConfig, report: ReportConfig, seed: int, device: str, template: str = "r1zero",
            rm=None) -> dict:
    """Every report column for one model, measured the same way for every row (module docstring);
    `rm`: a loaded reward model and its tokenizer, for the general-prompt column."""
    test = build_task(data).problems("test", report.problems, seed=seed + TEST_SEED, langs=tuple(data.langs))
    model, tok = load(model_dir, device, report.dtype)
    template = resolve_template(template, tok)
    sampler = HFSampler(model, tok, add_special_tokens=adds_special_tokens(template))
    params = report.sampling.params(seed=seed + 7)
    m = evaluate(sampler, test, [render_prompt(p.prompt, template, tok) for p in test], report.k, params).metrics
    total, active = count_parameters(model)
    row = {"pass@1": m["pass@1"], f"cons@{report.k}": m[f"cons@{report.k}"], "format_rate": m["format_rate"],
           "language_mixing": m["language_mixing"], "language_mixing_by_lang": m["language_mixing_by_lang"],
           "mean_length": m["mean_length"], "params": total, "active_params": active, "template": template,
           "model": str(model_dir)}
    if rm is not None:  # answers to held-out general prompts, scored on their summary
        rm_model, rm_tok = rm
        general = [g for g in general_prompts("test") if g.lang in data.langs]
        gen = sampler.generate([render_prompt(g.prompt, template, tok) for g in general], report.k, params)
        prompts = [g.prompt for g in general for _ in range(report.k)]
        with torch.no_grad():
            rm_scores = scores(rm_model.eval(), rm_tok, prompts, [summary_of(t) for t in gen.texts])
        row |= {"rm_score": float(rm_scores.mean()), "general_sample": gen.texts[0]}
    return row


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def cell(x, spec: str) -> str:
    """`x` formatted, or n/a for a missing number."""
    return "n/a" if x is None else format(x, spec)


def checks_markdown(checks: list[tuple[str, bool]]) -> str:
    """One line per check of a paper's finding: `- yes: ...` or `- NO: ...`."""
    return "\n".join(f"- {'yes' if ok else 'NO'}: {what}" for what, ok in checks)


def write_result(run: Path, name: str, result: dict, report: str) -> None:
    """run/<name>.json and run/report.md, each written atomically."""
    write_json(run / f"{name}.json", result)
    write_atomically(run / "report.md", report)
