"""Distillation into small dense students, and the paper's distillation-versus-RL comparison (§4).

    r1lab distill [recipe.yaml] [teacher=DIR] [student=SPEC] [compare_rl=true] [key=value ...]

DeepSeek-R1 §4 fine-tunes small dense Qwen and Llama models, with SFT only, on ~800k samples
curated with R1 (the stage-3 data), and finds (§4.1) that distilling a strong reasoner beats
large-scale RL on the small model itself. This command does both, each stage in its own
directory under `run_dir`, skipped when a rerun finds it done with the same inputs and continued
from its last checkpoint when an interruption left one (stages/chain.py):

  teacher/          only with teacher=zero (the default): the R1-Zero default run on r1lab's
                    DeepSeek-V3 base; otherwise `teacher` is any model directory (an r1lab
                    checkpoint, the pipeline's stage-4 model)
  student-base/     the student before training: a preset (`STUDENTS`: a dense Qwen2 or Llama
                    config with at most a third of the teacher's active parameters, pretrained by
                    r1lab with the teacher base's tokenizer on `student_corpus`, cached like the
                    teacher's base) or any Hugging Face causal LM directory, with its own tokenizer
  traces/           the teacher's samples on train-split prompts through rejection sampling
                    (`r1lab sample`: correct, well-formed, single-language, de-duplicated)
  student/          SFT of the student base on the traces (`r1lab sft`). The traces are text:
                    they are tokenised with the student's tokenizer, and a student with a chat
                    template gets them as chat turns (`sft.template=auto`)
  rl-only/          compare_rl: the R1-Zero recipe on the student base, for as much training time
                    as the distilled student cost (teacher sampling + SFT)
  student-rl/       rl_after_steps > 0: a short R1-Zero phase on the distilled student (the
                    paper's remark that RL would add to distillation)

Then `report.md` and `distill.json`: teacher, distilled student, RL-only student, base student
(and distilled + RL), each measured the same way on the same held-out problems: pass@1 and cons@k
over k samples at T = 0.6 / top-p 0.95, mean length, parameters (total, active per token), and the
wall time that produced the model.

The student's corpus. R1-Zero works on r1lab's base because 7% of the corpus's documents under
the R1-Zero template are worked solutions: RL finds and selects that way of answering (it selects,
it does not create). A student pretrained on the same corpus has the same seed, and RL alone takes
it as far as distillation does: runs/distill-1, same corpus, same budget: distilled 0.998, RL-only
0.999 pass@1. The paper's students are the other case: small models whose own samples rarely hold
the reasoning the large teacher found. So by default a preset student is pretrained on the
teacher's corpus without the worked solutions under the R1-Zero template (`student_corpus.
template_worked=0`; the plain-frame worked solutions, the digit drills and the direct answers
stay): it knows the arithmetic and the procedure, but under the template it answers directly, so
RL has nothing long to select, while the teacher's traces show it. `student_corpus.
template_worked=0.07` gives the same-corpus experiment.

The stages run through stages/chain.py, as the pipeline's do.

Departures from the paper, for a CPU run: the teacher is r1lab's own ~1M-active-parameter model
on its arithmetic task, not R1; the traces are a few thousand, not 800k, and only reasoning data
(no general SFT data); the students are pretrained by r1lab on the teacher's corpus rather than
being independent pretrained models (a user's own student directory removes that); the RL-only
baseline's budget is wall-clock time on this machine, not the paper's 10k-step run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from r1lab.data.problems import DataConfig, build_task
from r1lab.engine.params import SamplingConfig
from r1lab.errors import UserError
from r1lab.model.architecture import ModelConfig
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.model.corpus import CorpusConfig, SignsCorpusConfig
from r1lab.runtime.config import at_least, check_config, config_to_dict
from r1lab.runtime.device import check as check_device
from r1lab.runtime.files import is_hub_id
from r1lab.runtime.loading import resolve_model
from r1lab.runtime.runlog import check_report_to
from r1lab.stages.chain import (
    ReportConfig,
    SampleConfig,
    SFTConfig,
    ZeroConfig,
    arithmetic,
    checks_markdown,
    fingerprint,
    measure,
    rl_stage,
    sample_stage,
    sft_stage,
    stage,
    start,
    table,
    write_result,
)

# Built-in students: dense, grouped-query attention, 287,808 parameters with r1lab's 1,024-token
# vocabulary (0.31x the DeepSeek-V3 base's 930,560 active).
STUDENTS = {
    "qwen2-tiny": ModelConfig(arch="qwen2", hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
                              dense_intermediate=224),
    "llama-tiny": ModelConfig(arch="llama", hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
                              dense_intermediate=224),
}


def _teacher() -> ZeroConfig:
    """teacher=zero: the R1-Zero recipe on the arithmetic task, without the pass@64 curves (the report measures)."""
    cfg = arithmetic(ZeroConfig())
    cfg.eval.pass_k = 0
    return cfg


def _rl_only() -> ZeroConfig:
    """The RL-only student's run: R1-Zero's recipe, a time budget instead of a step count."""
    cfg = arithmetic(ZeroConfig(gate=False, save_every=1000))
    cfg.grpo.steps = 10_000  # the time budget ends it
    cfg.eval.pass_k = 0
    return cfg


@dataclass
class DistillConfig:
    run_dir: str = "runs/distill-{time}"  # output directory (each stage in its own subdirectory); {time}: start time
    teacher: str = "zero"  # a model directory, or "zero": train the R1-Zero default on the built-in base first
    student: str = "qwen2-tiny"  # a preset (qwen2-tiny, llama-tiny) or a Hugging Face causal LM directory
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the teacher base and the corpus
    # The teacher's corpus minus worked solutions under the R1-Zero template (they stay in plain
    # "User: ... Assistant:" documents). See the module docstring. The signs documents (the
    # aha-moment task) are left out: every distillation stage is on arithmetic.
    student_corpus: CorpusConfig = field(default_factory=lambda: CorpusConfig(template_worked=0.0,
                                                                          signs=SignsCorpusConfig(n_docs=0)))  # a preset student's pretraining corpus
    data: DataConfig = field(default_factory=DataConfig)  # the reasoning task of every stage
    teacher_rl: ZeroConfig = field(default_factory=_teacher)  # the teacher's R1-Zero run (with teacher=zero)
    # T = 1 for diverse traces (at 0.6 most of a prompt's samples are duplicates; cf. pipeline stage 3)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(prompts=2048, n=2,
                                                                      sampling=SamplingConfig(1.0, 1.0, 300)))
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=3, lr=1e-3, template="auto", seq_len=512,
                                                            rows_per_step=8, micro_rows=8))  # the student's SFT on the traces (R1 §4: SFT only)
    compare_rl: bool = False  # also train the student by RL alone for the same wall-clock time
    rl: ZeroConfig = field(default_factory=_rl_only)  # the RL-only student (compare_rl)
    rl_after_steps: int = 0  # > 0: this many R1-Zero steps on the distilled student
    report: ReportConfig = field(default_factory=ReportConfig)  # the closing evaluation of teacher and students
    seed: int = 0  # every stage's seed (overrides theirs)
    # dtypes are each stage's own (`<stage>.dtype`, `report.dtype`): bfloat16 suits sampling, not training
    device: str = "auto"  # every stage's and the report's device: auto (CUDA if present, else cpu) | cpu | cuda | cuda:N
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # every training stage's trackers: tensorboard, wandb, trackio (or [])

    def validate(self) -> None:
        check_device(self)
        check_report_to(self.report_to)
        at_least(self, 0, "seed", "rl_after_steps")
        def model(spec: str) -> bool:  # a model directory, or a hub id (downloaded when the run starts)
            return (Path(spec) / "config.json").exists() or is_hub_id(spec)

        if self.teacher != "zero" and not model(self.teacher):
            raise UserError(f"teacher: '{self.teacher}' is not a model directory (no config.json) nor a hub id; "
                            "or teacher=zero to train one")
        if self.student not in STUDENTS and not model(self.student):
            raise UserError(f"student: '{self.student}' is neither a preset ({', '.join(STUDENTS)}) "
                            "nor a model directory (no config.json) nor a hub id")
        if self.rl_after_steps < 0:
            raise UserError(f"rl_after_steps: expected >= 0, got {self.rl_after_steps}")
        for part in (self.pretrain, self.sample, self.sft, self.rl, self.teacher_rl):
            part.validate()


# --- stages -----------------------------------------------------------------------------------


def student_base_stage(cfg: DistillConfig, d: Path, log) -> dict:
    if cfg.student not in STUDENTS:
        return {"model": str(resolve_model(cfg.student, "student").resolve()), "train_seconds": 0.0}
    student = replace(cfg.pretrain, model=STUDENTS[cfg.student], corpus=cfg.student_corpus)
    t0 = time.time()
    base = pretrain(student, log=log)  # cached: a second run reads it
    return {"model": str(base.resolve()), "train_seconds": time.time() - t0}


def traces_stage(cfg: DistillConfig, teacher: Path, d: Path, log) -> dict:
    data, report = sample_stage(cfg.sample, teacher, d, log, data=cfg.data.task_config(), seed=cfg.seed,
                                device=cfg.device)
    if report["kept"] == 0:
        raise UserError(f"traces: rejection sampling kept none of the teacher's {report['total']} samples "
                        f"(accuracy {report['accuracy']:.1%}); see {d / 'sample'}/report.json")
    return {"data": str(data), "kept": report["kept"], "total": report["total"], "accuracy": report["accuracy"],
            "train_seconds": report["seconds"]}


def shared(cfg: DistillConfig) -> dict:
    """The settings every training stage of distillation takes from distillation's own."""
    return {"seed": cfg.seed, "device": cfg.device, "pretrain": cfg.pretrain, "report_to": cfg.report_to}


# --- the report -------------------------------------------------------------------------------


def report_table(rows: dict[str, dict], k: int) -> str:
    seconds = lambda s: "given" if s is None else f"{s:.0f}s"  # noqa: E731
    mixing = lambda x: "n/a" if x is None else f"{x:.1%}"  # noqa: E731
    return table(["model", "parameters (active)", "pass@1", f"cons@{k}", "mixing zh/ja/ko", "mean length", "wall time"],
                 [[name, f"{m['params'] / 1e6:.2f}M ({m['active_params'] / 1e6:.2f}M)", f"{m['pass@1']:.3f}",
                   f"{m[f'cons@{k}']:.3f}", mixing(m["language_mixing"]), f"{m['mean_length']:.1f}", seconds(m["seconds"])]
                  for name, m in rows.items()])


def checks(rows: dict[str, dict]) -> list[tuple[str, bool]]:
    teacher, student = rows["teacher"], rows["distilled student"]
    out = [("the student has at most a third of the teacher's active parameters",
            student["active_params"] * 3 <= teacher["active_params"]),
           ("the distilled student reaches at least 90% of the teacher's pass@1",
            student["pass@1"] >= 0.9 * teacher["pass@1"])]
    if "RL-only student" in rows:
        out.append(("distillation beats RL on the student for the same wall-clock time",
                    student["pass@1"] > rows["RL-only student"]["pass@1"]))
    return out


def report_md(result: dict, cfg: DistillConfig) -> str:
    rows, r = result["rows"], cfg.report
    lines = ["# r1lab distill: a small dense student from a reasoning teacher", "",
             f"Held-out: {r.problems} test-split problems x {r.k} samples (T = {r.sampling.temperature}, top-p "
             f"{r.sampling.top_p}, at most {r.sampling.max_new_tokens} new tokens). Wall time: what produced the model on "
             "this machine (teacher: its RL; distilled student: teacher sampling + SFT; RL-only student: its RL "
             "training, budgeted to the distilled student's time; base student: its pretraining, 0 when cached or "
             f"given). Traces: {result['traces']['kept']} kept of {result['traces']['total']} teacher samples.", "",
             report_table(rows, r.k), "", "## The paper's finding, measured", "", checks_markdown(checks(rows)), "",
             f"Total wall time of this run: {result['wall_seconds']:.0f}s. Stage times: " +
             ", ".join(f"{n} {s['seconds']:.0f}s" for n, s in result["stages"].items()), ""]
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------------


def run_distill(cfg: DistillConfig, log=print) -> dict:
    check_config(cfg)
    build_task(cfg.data)  # a data file's mistakes surface now, not after the teacher or the student base is trained
    t0 = time.time()
    run = start(cfg, log)
    records = {}

    def run_stage(name: str, key: str, body) -> dict:  # body(d, resume): `resume` continues a preempted stage
        return stage(run, name, key, body, log, "distill")  # (student-base and traces write no checkpoints)

    if cfg.teacher == "zero":
        teacher_rl = replace(cfg.teacher_rl, data=cfg.data)
        records["teacher"] = run_stage("teacher", fingerprint(cfg.pretrain, cfg.data, cfg.teacher_rl, cfg.seed),
                                       lambda d, resume: rl_stage(teacher_rl, "builtin", d, log, resume, **shared(cfg)))
        teacher = Path(records["teacher"]["model"])
    else:
        teacher = resolve_model(cfg.teacher, "teacher")  # a directory, or a hub id downloaded once
    records["student_base"] = run_stage("student-base", fingerprint(cfg.student, cfg.pretrain, cfg.student_corpus),
                                        lambda d, resume: student_base_stage(cfg, d, log))
    student_base = Path(records["student_base"]["model"])
    records["traces"] = run_stage("traces", fingerprint(str(teacher.resolve()), cfg.sample, cfg.data, cfg.seed),
                                  lambda d, resume: traces_stage(cfg, teacher, d, log))
    traces = Path(records["traces"]["data"])
    records["student"] = run_stage("student", fingerprint(records["student_base"], records["traces"], cfg.sft),
                                   lambda d, resume: sft_stage(cfg.sft, student_base, traces, d, log, resume,
                                                               **shared(cfg)))
    distill_seconds = records["traces"]["train_seconds"] + records["student"]["train_seconds"]
    rl_student = dict(shared(cfg), data=cfg.data, gate=False)  # RL on the student: R1-Zero's recipe, no gate
    if cfg.compare_rl:  # the same training time as the distilled student cost
        key = fingerprint(records["student_base"], cfg.rl, cfg.data, distill_seconds)
        records["rl_only"] = run_stage("rl-only", key, lambda d, resume: rl_stage(
            cfg.rl, student_base, d, log, resume, **rl_student, max_seconds=distill_seconds))
    if cfg.rl_after_steps:
        after = replace(cfg.rl, max_seconds=0.0, grpo=replace(cfg.rl.grpo, steps=cfg.rl_after_steps))
        distilled = Path(records["student"]["model"])
        records["student_rl"] = run_stage("student-rl", fingerprint(records["student"], after),
                                          lambda d, resume: rl_stage(after, distilled, d, log, resume, **rl_student))

    template = records["student"]["template"]
    models = {"teacher": (teacher, "r1zero", records["teacher"]["train_seconds"] if "teacher" in records else None),
              "distilled student": (Path(records["student"]["model"]), template, distill_seconds)}
    if cfg.rl_after_steps:
        models["distilled student + RL"] = (Path(records["student_rl"]["model"]), "r1zero",
                                            distill_seconds + records["student_rl"]["train_seconds"])
    if cfg.compare_rl:
        models["RL-only student"] = (Path(records["rl_only"]["model"]), "r1zero", records["rl_only"]["train_seconds"])
    models["base student"] = (student_base, template, records["student_base"]["train_seconds"])
    rows = {}
    for name, (model_dir, tmpl, seconds) in models.items():
        log(f"distill: measuring {name}")
        rows[name] = {**measure(model_dir, cfg.data, cfg.report, cfg.seed, cfg.device, tmpl), "seconds": seconds}
    result = {"rows": rows, "stages": records, "traces": records["traces"], "wall_seconds": time.time() - t0,
              "checks": {what: ok for what, ok in checks(rows)}, "config": config_to_dict(cfg)}
    write_result(run, "distill", result, report_md(result, cfg))
    log(report_table(rows, cfg.report.k))
    log(f"distill: wrote {run}/report.md in {result['wall_seconds']:.0f}s")
    return result
