"""Rejection sampling (DeepSeek-R1 §3, stage 3): sample a checkpoint, keep what is right and readable.

    r1lab sample MODEL_DIR [recipe.yaml] [key=value ...]

Draws `n` samples for each of `prompts` train-split problems of a task (never the held-out test
split) under the R1-Zero template, grades each with the task's own grader, runs the rejection
filters (`rejection.py`: truncated, incorrect, bad format, too long, repetitive, mixed language,
long paragraphs, code blocks; then de-duplication and an optional per-prompt cap) and writes the
kept samples as SFT JSONL (`{prompt, completion, lang, source}`, the prompt without the template,
which `r1lab sft template=r1zero` adds back) with their provenance, plus `report.json` with the
keep rate of every filter. Everything goes to `out` (a directory), written atomically.

The paper samples at a temperature it does not state; r1lab uses its evaluation settings
(T = 0.6, top-p 0.95) by default.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from r1lab.errors import UserError
from r1lab.data.rejection import Candidate, RejectionConfig, filter_candidates, write_sft_jsonl


@dataclass
class SampleConfig:
    model: str = ""  # the checkpoint to sample (a Hugging Face model directory)
    out: str = "runs/sample-{time}"  # directory for sft.jsonl and report.json
    task: str = "arithmetic"
    task_args: dict[str, int] = field(default_factory=lambda: {"digits": 4, "terms": 2})
    path: str | None = None  # task=file: the JSONL / parquet / datasets dir, as zero's data.path
    question_field: str = "problem"
    answer_field: str = "answer"
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ja", "ko"])
    prompts: int = 256  # train-split problems
    n: int = 4  # samples per problem
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 300
    batch_rows: int = 512  # sequences decoded together
    seed: int = 0
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    device: str = "auto"  # auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (device.py)
    dtype: Literal["float32", "bfloat16"] = "float32"

    def validate(self) -> None:
        from r1lab.runtime.device import check

        check(self)
        for name in ("prompts", "n", "max_new_tokens", "batch_rows"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.temperature >= 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature, top_p: expected temperature >= 0 and 0 < top_p <= 1")


def candidates(sampler, problems, cfg: SampleConfig, stop_ids: tuple[int, ...]) -> list[Candidate]:
    """`n` graded samples of each problem, in problem order."""
    from r1lab.engine.sampler import SamplingParams
    from r1lab.tasks import apply_template, get_task
    from r1lab.grading.extract import extract_answer

    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, stop_ids, seed=cfg.seed)
    gen = sampler.generate([apply_template(p.prompt) for p in problems], cfg.n, params)
    out = []
    for i, (text, truncated) in enumerate(zip(gen.texts, gen.truncated)):
        p = problems[i // cfg.n]
        correct = get_task(p.task).grade(extract_answer(text), p)
        out.append(Candidate(p.prompt, text, p.lang, correct, truncated, {"key": p.key, "sample": i % cfg.n}))
    return out


def run_sample(cfg: SampleConfig, log=print) -> Path:
    """The `r1lab sample` command; returns the path of the SFT JSONL it wrote."""
    from r1lab.engine.sampler import HFSampler
    from r1lab.tasks import make_task, register_task
    from r1lab.runtime.checkpoint import resolve_run_dir
    from r1lab.stages.zero import load_policy

    if not (Path(cfg.model) / "config.json").exists():
        raise UserError(f"model: '{cfg.model}' is not a Hugging Face model directory (no config.json)")
    out = resolve_run_dir(cfg.out, resume=False)
    if (out / "report.json").exists():  # written last: the mark of a finished sampling run
        raise UserError(f"out: '{out}' already holds sampled data; choose another out=")
    if cfg.task == "file":  # the user's data, read as `r1lab zero` reads it
        from r1lab.stages.zero import DataConfig, build_task

        task = build_task(DataConfig(task="file", path=cfg.path, question_field=cfg.question_field,
                                     answer_field=cfg.answer_field))
    else:
        task = register_task(make_task(cfg.task, **cfg.task_args))
    problems = task.problems("train", cfg.prompts, seed=cfg.seed + 3000, langs=tuple(cfg.langs))
    model, tok = load_policy(cfg.model, cfg.device, cfg.dtype)
    sampler = HFSampler(model, tok, cfg.batch_rows)
    answer_end = tok.convert_tokens_to_ids("</answer>")
    stop_ids = (answer_end,) if answer_end is not None and answer_end != tok.unk_token_id else ()
    t0 = time.time()
    cands = candidates(sampler, problems, cfg, stop_ids)
    kept, report = filter_candidates(cands, cfg.rejection)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"model": str(cfg.model), "task": cfg.task, "seed": cfg.seed, "temperature": cfg.temperature,
                  "top_p": cfg.top_p, "n": cfg.n}
    write_sft_jsonl(kept, out / "sft.jsonl", provenance)
    summary = {"total": report.total, "kept": report.kept, "keep_rate": report.keep_rate, "removed": report.removed,
               "keep_rates": report.keep_rates(), "problems": len(problems), "n": cfg.n,
               "accuracy": sum(c.correct for c in cands) / len(cands), "seconds": time.time() - t0, **provenance}
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "report.json")
    log(report.format())
    log(f"sample: kept {report.kept} of {report.total} samples ({report.keep_rate:.1%}; accuracy "
        f"{summary['accuracy']:.1%}) in {summary['seconds']:.0f}s, wrote {out / 'sft.jsonl'}")
    return out / "sft.jsonl"
