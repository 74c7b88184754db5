"""Rejection sampling (DeepSeek-R1 §3, stage 3): sample a checkpoint, keep what is right and readable.

    r1lab sample MODEL_DIR [recipe.yaml] [key=value ...]

Draws `n` samples for each of `prompts` train-split problems of a task (never the held-out test
split) under the R1-Zero template, grades each with the task's own grader, runs the rejection
filters (data/rejection.py: truncated, incorrect, bad format, too long, repetitive, mixed language,
long paragraphs, code blocks; then de-duplication and an optional per-prompt cap) and writes the
kept samples as SFT JSONL (`{prompt, completion, lang, source}`, the prompt without the template,
which `r1lab sft template=r1zero` adds back) with their provenance, plus `report.json` with the
keep rate of every filter. Everything goes to `out` (a directory), written atomically.

The problems are `data`'s (a built-in task or the user's file, as `r1lab zero` reads them;
data/problems.py). The paper samples at a temperature it does not state; r1lab uses its evaluation
settings (T = 0.6, top-p 0.95) by default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from r1lab.data.problems import SAMPLE_SEED, TaskConfig, build_task
from r1lab.data.prompting import answer_stop_ids
from r1lab.data.rejection import Candidate, RejectionConfig, filter_candidates, write_sft_jsonl
from r1lab.engine.params import SamplingConfig, sampling
from r1lab.engine.sampler import HFSampler
from r1lab.errors import UserError
from r1lab.grading.extract import extract_answer
from r1lab.runtime.device import check as check_device
from r1lab.runtime.config import at_least, check_config
from r1lab.runtime.files import write_json
from r1lab.runtime.loading import load, resolve_model
from r1lab.runtime.run import resolve_run_dir
from r1lab.tasks import apply_template, get_task


@dataclass
class SampleConfig:
    model: str = ""  # the checkpoint to sample (a Hugging Face model directory)
    out: str = "runs/sample-{time}"  # directory for sft.jsonl and report.json
    data: TaskConfig = field(default_factory=TaskConfig)  # the problems (their train split)
    prompts: int = 256  # train-split problems to sample
    n: int = 4  # samples drawn per problem before filtering
    sampling: SamplingConfig = sampling(temperature=0.6, top_p=0.95, max_new_tokens=300)  # how each sample is drawn
    batch_rows: int = 512  # sequences decoded together (memory and speed, not results)
    seed: int = 0  # seeds the problem draw and the sampling
    rejection: RejectionConfig = field(default_factory=RejectionConfig)  # which samples are kept (R1 §3 stage 3's filters)
    device: str = "auto"  # auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (runtime/device.py)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the model's weights while sampling
    RENAMED: ClassVar[dict[str, str]] = {
        **{k: f"data.{k}" for k in ("task", "task_args", "path", "question_field", "answer_field", "langs")},
        **{k: f"sampling.{k}" for k in ("temperature", "top_p", "max_new_tokens")}}

    def validate(self) -> None:
        check_device(self)
        at_least(self, 0, "seed")
        for name in ("prompts", "n", "batch_rows"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")


def candidates(sampler, problems, cfg: SampleConfig, stop_ids: tuple[int, ...]) -> list[Candidate]:
    """`n` graded samples of each problem, in problem order."""
    gen = sampler.generate([apply_template(p.prompt) for p in problems], cfg.n, cfg.sampling.params(stop_ids, cfg.seed))
    out = []
    for i, (text, truncated) in enumerate(zip(gen.texts, gen.truncated)):
        p = problems[i // cfg.n]
        correct = get_task(p.task).grade(extract_answer(text), p)
        out.append(Candidate(p.prompt, text, p.lang, correct, truncated, {"key": p.key, "sample": i % cfg.n}))
    return out


def run_sample(cfg: SampleConfig, log=print) -> Path:
    """The `r1lab sample` command; returns the path of the SFT JSONL it wrote."""
    check_config(cfg)
    model_dir = resolve_model(cfg.model, "model")
    out = resolve_run_dir(cfg.out, resume=False)
    if (out / "report.json").exists():  # written last: the mark of a finished sampling run
        raise UserError(f"out: '{out}' already holds sampled data; choose another out=")
    task = build_task(cfg.data)
    problems = task.problems("train", cfg.prompts, seed=cfg.seed + SAMPLE_SEED, langs=tuple(cfg.data.langs))
    model, tok = load(model_dir, cfg.device, cfg.dtype)
    sampler = HFSampler(model, tok, cfg.batch_rows)
    t0 = time.time()
    cands = candidates(sampler, problems, cfg, answer_stop_ids(tok))
    kept, report = filter_candidates(cands, cfg.rejection)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"model": str(cfg.model), "task": cfg.data.task, "seed": cfg.seed,
                  "temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p, "n": cfg.n}
    write_sft_jsonl(kept, out / "sft.jsonl", provenance)
    summary = {"total": report.total, "kept": report.kept, "keep_rate": report.keep_rate, "removed": report.removed,
               "keep_rates": report.keep_rates(), "problems": len(problems), "n": cfg.n,
               "accuracy": sum(c.correct for c in cands) / len(cands), "seconds": time.time() - t0, **provenance}
    write_json(out / "report.json", summary)
    log(report.format())
    log(f"sample: kept {report.kept} of {report.total} samples ({report.keep_rate:.1%}; accuracy "
        f"{summary['accuracy']:.1%}) in {summary['seconds']:.0f}s, wrote {out / 'sft.jsonl'}")
    return out / "sft.jsonl"
