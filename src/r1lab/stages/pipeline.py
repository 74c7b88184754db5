"""The four-stage DeepSeek-R1 pipeline (§3), end to end, next to the R1-Zero run it improves on.

    r1lab pipeline [recipe.yaml] [key=value ...]

Stages, each in its own directory under `run_dir`, each skipped when a rerun finds it done (a
stage left half-done by an interruption is redone from its start):

  zero/             R1-Zero: GRPO on the base with accuracy + format rewards (the comparison row)
  stage1-cold-start/  built-in cold-start chains of thought (coldstart.py; or `cold_start.data`)
                    in English, Chinese and Korean, not Japanese (RL prompts in a language the
                    cold start leaves out still mix: the paper's case for the language reward),
                    SFT of the base on them
  stage2-reasoning-rl/  GRPO from stage 1 with accuracy + format + the language-consistency reward
  stage2-no-language/   the same without the language reward (the ablation; `ablation=false` skips it)
  stage3-rejection/ rejection sampling from stage 2 (`r1lab sample`: correct, single-language,
                    well-formed, de-duplicated) plus general prompts' preferred answers (the
                    paper's non-reasoning data), SFT of the *base* on them, as the paper does
  rm/               a Bradley-Terry reward model on the built-in preference pairs
  stage4-all-rl/    GRPO from stage 3 on reasoning prompts (rule rewards + language) mixed with
                    general prompts (reward-model score)

Then `report.md` and `pipeline.json`: one row per model (base, R1-Zero, each stage, the
ablation), every row measured the same way on held-out problems: pass@1 and cons@k over k
samples at T = 0.6 / top-p 0.95, format rate, the language-mixing rate on zh/ja/ko prompts, mean
response length, and the reward model's mean score of answers to held-out general prompts.

Departures from the paper (all for a CPU-sized run on a million-parameter model): the R1-Zero
template is kept in every stage (the tiny base has no chat template); cold-start chains of
thought are the corpus's scratchpad in one language and the summary is the answer block alone
(coldstart.py says why); the language reward is weighted (`reasoning_rl.rewards.language`)
where the paper adds it to the accuracy reward unweighted, and stage 4 keeps it on reasoning
prompts; stage 3's SFT data are a few thousand samples and the built-in general answers, not
800k; one reward model serves helpfulness and harmlessness, and its score enters stage 4 squashed
into (0, 1) (`rewards.preference_reward`); the report's RM column scores the summary only.
Each RL stage also runs its own base and final evaluation (its run directory's report.md).
A rerun with the same `run_dir=` skips the stages already done with the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Literal

from r1lab.config import config_to_dict, save_config
from r1lab.runtime.device import check as check_device
from r1lab.errors import UserError
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.stages.rm import RMConfig
from r1lab.stages.sample import SampleConfig
from r1lab.stages.sft import SFTConfig
from r1lab.stages.zero import ZeroConfig

LANGUAGE_REWARDS = {"accuracy": 1.0, "format": 0.1, "language": 0.5}


def _rl(lr: float = 2e-4, **over) -> ZeroConfig:
    """An RL stage's defaults. From a fine-tuned model, whose format is settled, RL takes 4x R1-Zero's
    learning rate: at 5e-5 stage 2 moved the language-mixing rate 72% -> 56% in 30 steps, at 2e-4
    72% -> 34%, with the same held-out pass@1 (0.981 / 0.980)."""
    cfg = ZeroConfig(**{"gate": False, "rewards": dict(LANGUAGE_REWARDS), **over})
    cfg.grpo.lr = lr
    cfg.eval.base_pass_k = 0  # the report measures every stage; no pass@64 curve per stage
    return cfg


@dataclass
class ColdStartConfig:
    data: str = ""  # your own cold-start JSONL ({prompt, completion}); "" = the built-in generator
    examples: int = 1000
    # Cold-start data in fewer languages than the RL prompts (the paper's was collected for English
    # and Chinese): RL prompts in the others still mix, which the language reward must remove. It
    # can only select words the policy still writes: from an en/zh cold start, stage 2 took
    # Japanese from 99% mixed to 0% but Korean stayed at 100% (the cold start had made "자리" too
    # improbable to be sampled), so the default leaves out Japanese only.
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ko"])
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=2, lr=3e-4, template="r1zero", seq_len=512,
                                                            rows_per_step=8, micro_rows=8))


@dataclass
class RejectionStageConfig:
    # T = 1: at 0.6 the stage-2 policy repeated itself (847 of 1,219 correct, single-language samples
    # of 512 prompts x 4 were duplicates)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(prompts=1024, n=4, temperature=1.0, top_p=1.0))
    general_answers: bool = True  # add the built-in general prompts' preferred answers to the SFT data
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=2, lr=3e-4, template="r1zero", seq_len=512,
                                                            rows_per_step=8, micro_rows=8))


@dataclass
class ReportConfig:
    k: int = 8
    problems: int = 100  # held-out reasoning problems
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 200
    dtype: Literal["float32", "bfloat16"] = "float32"  # the measured models' (and the reward model's) weights


@dataclass
class PipelineConfig:
    """The stages' own settings are nested configs; the pipeline sets, for every stage, its base
    model (the previous stage's output), run directory, seed, device and pretraining config, and ties
    every stage's reasoning task to `reasoning_rl.data` (so `zero.data`, `all_rl.data` and
    `rejection.sample.{task,task_args,langs}` are not read) and stage 4's reward model to the
    `rm` stage's output (`all_rl.reward_model` is not read)."""

    run_dir: str = "runs/pipeline-{time}"
    base: str = "builtin"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    zero: ZeroConfig = field(default_factory=lambda: _rl(lr=ZeroConfig().grpo.lr, rewards={"accuracy": 1.0, "format": 0.1}))
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    reasoning_rl: ZeroConfig = field(default_factory=_rl)
    ablation: bool = True  # also run stage 2 without the language reward
    rejection: RejectionStageConfig = field(default_factory=RejectionStageConfig)
    rm: RMConfig = field(default_factory=RMConfig)
    # Stage 4 at R1-Zero's learning rate: at 2e-4 it cost 0.04-0.12 pass@1 (runs/pipeline-2, -3)
    all_rl: ZeroConfig = field(default_factory=lambda: _rl(lr=ZeroConfig().grpo.lr,
                                                          rewards={**LANGUAGE_REWARDS, "preference": 0.5}))
    general_share: float = 0.25  # stage 4: share of each step's prompts that are general ones
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0
    # every stage's and the report's device: auto (CUDA if present, else cpu) | cpu | cuda | cuda:N (device.py);
    # dtypes are each stage's own (`<stage>.dtype`, `report.dtype`): bfloat16 suits sampling, not training
    device: str = "auto"

    def validate(self) -> None:
        """Every mistake a later stage would trip on, found before the first stage starts."""
        from r1lab.tasks.prompts import check_langs

        check_device(self)

        if "language" not in self.reasoning_rl.rewards:
            raise UserError("reasoning_rl.rewards: stage 2 is defined by its language reward; keep 'language'")
        if "preference" not in self.all_rl.rewards:
            raise UserError("all_rl.rewards: stage 4 scores general prompts with the reward model; keep 'preference'")
        n = round(self.all_rl.grpo.prompts_per_step * self.general_share)
        if not 0 < self.general_share < 1 or not 1 <= n < self.all_rl.grpo.prompts_per_step:
            raise UserError(f"general_share: {self.general_share} of all_rl.grpo.prompts_per_step="
                            f"{self.all_rl.grpo.prompts_per_step} must give at least one general and one reasoning prompt")
        if self.report.k < 1 or self.report.problems < 1:
            raise UserError("report.k, report.problems: expected >= 1")
        if self.cold_start.data:
            if not Path(self.cold_start.data).exists():
                raise UserError(f"cold_start.data: {self.cold_start.data}: no such file")
        elif self.reasoning_rl.data.task != "arithmetic":
            raise UserError(f"cold_start.data: the built-in cold start writes arithmetic only; for task "
                            f"'{self.reasoning_rl.data.task}' give your own cold-start JSONL")
        check_langs(self.cold_start.langs)


# --- stages -----------------------------------------------------------------------------------


def fingerprint(*parts) -> str:
    """A hash of a stage's settings and of the records of the stages it builds on."""
    blob = json.dumps([config_to_dict(p) if is_dataclass(p) else p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage(run: Path, name: str, key: str, body, log, command: str = "pipeline") -> dict:
    """Run `body(directory)` unless `run/name/done.json` says it finished with the same inputs
    (`key`, a `fingerprint`); returns its record. A stage that is half done, or done with other
    settings or from other upstream results, starts over; so then do the stages after it, whose
    keys include its record."""
    d = run / name
    done = d / "done.json"
    if done.exists():
        with suppress(ValueError):
            record = json.loads(done.read_text())
            if record.get("key") == key:
                log(f"{command}: {name} already done, skipped")
                return record
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.time()
    log(f"{command}: {name} ...")
    record = {**body(d), "seconds": time.time() - t0, "key": key}
    tmp = d / ".done.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(done)
    log(f"{command}: {name} done in {record['seconds']:.0f}s")
    return record


def rl_stage(cfg: ZeroConfig, base: Path, pcfg: PipelineConfig, d: Path, log, **over) -> dict:
    from r1lab.stages.zero import run_zero

    stage_cfg = replace(cfg, base=str(base), pretrain=pcfg.pretrain, run_dir=str(d / "run"), seed=pcfg.seed,
                        device=pcfg.device, **over)
    stage_cfg.validate()
    summary = run_zero(stage_cfg, log=log)
    latest = (d / "run" / "latest").read_text().strip()
    return {"model": str((d / "run" / latest).resolve()), "final": summary["final"]}


def sft_stage(cfg: SFTConfig, base: Path, data: Path, pcfg: PipelineConfig, d: Path, log) -> dict:
    from r1lab.stages.sft import run_sft

    out = run_sft(replace(cfg, base=str(base), data=str(data), run_dir=str(d / "sft"), seed=pcfg.seed,
                          device=pcfg.device,
                          pretrain=pcfg.pretrain), log=log)
    return {"model": str(out.resolve())}


def cold_start_stage(cfg: PipelineConfig, base: Path, d: Path, log) -> dict:
    from r1lab.data.coldstart import cold_start_examples
    from r1lab.data.rejection import write_sft_jsonl

    data = Path(cfg.cold_start.data) if cfg.cold_start.data else d / "cold_start.jsonl"
    if not cfg.cold_start.data:
        examples = cold_start_examples(cfg.cold_start.examples, cfg.seed, tuple(cfg.cold_start.langs),
                                       cfg.reasoning_rl.data.task_args)
        write_sft_jsonl(examples, data, {"generator": "r1lab.data.coldstart", "seed": cfg.seed})
    return {**sft_stage(cfg.cold_start.sft, base, data, cfg, d, log), "data": str(data)}


def rejection_stage(cfg: PipelineConfig, sample: SampleConfig, base: Path, stage2: Path, d: Path, log) -> dict:
    from r1lab.data.general import general_prompts, r1_answer
    from r1lab.data.rejection import Candidate, write_sft_jsonl
    from r1lab.stages.sample import run_sample

    data = run_sample(replace(sample, model=str(stage2), out=str(d / "sample"), seed=cfg.seed, device=cfg.device),
                      log=log)
    report = json.loads((d / "sample" / "report.json").read_text())
    if cfg.rejection.general_answers:  # the non-reasoning SFT data of stage 3
        general = [Candidate(g.prompt, r1_answer(g.reference), g.lang, True) for g in general_prompts("train")]
        kept = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
        reasoning = [Candidate(r["prompt"], r["completion"], r["lang"], True) for r in kept]
        data = d / "sft_data.jsonl"
        write_sft_jsonl(reasoning + general * 4, data, {"stage": 3})  # general answers x4: ~1/10 of the data
    if report["kept"] == 0:
        log(f"pipeline: stage 3 kept no sampled answer of {report['total']} (see {d / 'sample'}/report.json)")
        if not cfg.rejection.general_answers:
            raise UserError(f"stage 3: rejection sampling kept no sample of {report['total']}; see {d / 'sample'}")
    return {**sft_stage(cfg.rejection.sft, base, data, cfg, d, log), "sample": report}


def rm_stage(cfg: PipelineConfig, base: Path, d: Path, log) -> dict:
    from r1lab.stages.rm import run_rm

    out = run_rm(replace(cfg.rm, base=str(base), run_dir=str(d / "run"), seed=cfg.seed, pretrain=cfg.pretrain,
                         device=cfg.device), log=log)
    return {"model": str(out.resolve()), **json.loads((out / "rm.json").read_text())}


# --- the report -------------------------------------------------------------------------------


def measure(model_dir: Path, rm, rm_tok, cfg: PipelineConfig) -> dict:
    """Every report column for one model, measured the same way for all rows."""
    import torch

    from r1lab.eval.metrics import evaluate
    from r1lab.data.general import general_prompts
    from r1lab.rl.rewards import summary_of
    from r1lab.stages.rm import scores
    from r1lab.engine.sampler import HFSampler, SamplingParams
    from r1lab.tasks import apply_template
    from r1lab.stages.zero import build_task, load_policy

    r = cfg.report
    task = build_task(cfg.reasoning_rl.data)
    langs = tuple(cfg.reasoning_rl.data.langs)
    test = task.problems("test", r.problems, seed=cfg.seed + 1, langs=langs)
    model, tok = load_policy(model_dir, cfg.device, r.dtype)
    sampler = HFSampler(model, tok)
    params = SamplingParams(r.temperature, r.top_p, r.max_new_tokens, seed=cfg.seed + 7)
    m = evaluate(sampler, test, [apply_template(p.prompt) for p in test], r.k, params).metrics
    general = [g for g in general_prompts("test") if g.lang in langs]  # held-out general prompts
    gen = sampler.generate([apply_template(p.prompt) for p in general], r.k, params)
    prompts = [p.prompt for p in general for _ in range(r.k)]
    with torch.no_grad():
        rm_scores = scores(rm.eval(), rm_tok, prompts, [summary_of(t) for t in gen.texts])
    return {"pass@1": m["pass@1"], f"cons@{r.k}": m[f"cons@{r.k}"], "format_rate": m["format_rate"],
            "language_mixing": m["language_mixing"], "language_mixing_by_lang": m["language_mixing_by_lang"],
            "mean_length": m["mean_length"], "rm_score": float(rm_scores.mean()),
            "general_sample": gen.texts[0]}


def report_table(rows: dict[str, dict], k: int) -> str:
    head = f"| model | pass@1 | cons@{k} | format | mixing zh/ja/ko | mean length | RM score (general) |\n|---|---|---|---|---|---|---|"
    cell = lambda x, f: "n/a" if x is None else format(x, f)  # noqa: E731
    lines = [f"| {name} | {cell(m['pass@1'], '.3f')} | {cell(m[f'cons@{k}'], '.3f')} | {cell(m['format_rate'], '.2f')} | "
             f"{cell(m['language_mixing'], '.1%')} | {cell(m['mean_length'], '.1f')} | {cell(m['rm_score'], '.2f')} |"
             for name, m in rows.items()]
    return "\n".join([head, *lines])


# --- the command ------------------------------------------------------------------------------


def run_pipeline(cfg: PipelineConfig, log=print) -> dict:
    from r1lab.runtime.checkpoint import resolve_run_dir

    t0 = time.time()
    run = resolve_run_dir(cfg.run_dir, resume=False)
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    base = pretrain(cfg.pretrain, log=log) if cfg.base == "builtin" else Path(cfg.base)
    no_language = {k: v for k, v in cfg.reasoning_rl.rewards.items() if k != "language"}

    data = cfg.reasoning_rl.data  # the reasoning task of every stage
    zero = replace(cfg.zero, data=data)
    stage4 = replace(cfg.all_rl, data=replace(data, general_share=cfg.general_share))
    sample = replace(cfg.rejection.sample, task=data.task, task_args=data.task_args, langs=data.langs)
    records = {"zero": stage(run, "zero", fingerprint(str(base), zero), lambda d: rl_stage(zero, base, cfg, d, log), log)}
    records["stage1"] = stage(run, "stage1-cold-start", fingerprint(str(base), cfg.cold_start, data),
                              lambda d: cold_start_stage(cfg, base, d, log), log)
    s1 = Path(records["stage1"]["model"])
    records["stage2"] = stage(run, "stage2-reasoning-rl", fingerprint(records["stage1"], cfg.reasoning_rl),
                              lambda d: rl_stage(cfg.reasoning_rl, s1, cfg, d, log), log)
    if cfg.ablation:
        records["stage2_no_language"] = stage(
            run, "stage2-no-language", fingerprint(records["stage1"], cfg.reasoning_rl, "no language"),
            lambda d: rl_stage(cfg.reasoning_rl, s1, cfg, d, log, rewards=no_language), log)
    s2 = Path(records["stage2"]["model"])
    records["stage3"] = stage(run, "stage3-rejection", fingerprint(str(base), records["stage2"], sample, cfg.rejection),
                              lambda d: rejection_stage(cfg, sample, base, s2, d, log), log)
    records["rm"] = stage(run, "rm", fingerprint(str(base), cfg.rm), lambda d: rm_stage(cfg, base, d, log), log)
    s3, rm_dir = Path(records["stage3"]["model"]), Path(records["rm"]["model"])
    stage4 = replace(stage4, reward_model=str(rm_dir))
    records["stage4"] = stage(run, "stage4-all-rl", fingerprint(records["stage3"], records["rm"], stage4),
                              lambda d: rl_stage(stage4, s3, cfg, d, log), log)

    names = {"base": base, "R1-Zero": records["zero"]["model"], "stage 1: cold start": s1,
             "stage 2: reasoning RL + language reward": s2}
    if cfg.ablation:
        names["stage 2 without the language reward (ablation)"] = records["stage2_no_language"]["model"]
    names |= {"stage 3: rejection sampling + SFT": s3, "stage 4: RL for all scenarios (R1)": records["stage4"]["model"]}
    from r1lab.stages.rm import load_reward_model

    rm, rm_tok = load_reward_model(rm_dir, cfg.device, cfg.report.dtype)
    rows = {}
    for name, model_dir in names.items():
        log(f"pipeline: measuring {name}")
        rows[name] = measure(Path(model_dir), rm.eval(), rm_tok, cfg)
    result = {"rows": rows, "stages": records, "wall_seconds": time.time() - t0, "rm_held_out_accuracy":
              records["rm"].get("held_out_accuracy")}
    (run / "pipeline.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (run / "report.md").write_text(report_md(result, cfg), encoding="utf-8")
    log(report_table(rows, cfg.report.k))
    log(f"pipeline: wrote {run}/report.md in {result['wall_seconds']:.0f}s")
    return result


def report_md(result: dict, cfg: PipelineConfig) -> str:
    rows, k = result["rows"], cfg.report.k
    zero, final = rows["R1-Zero"], rows["stage 4: RL for all scenarios (R1)"]
    lines = ["# r1lab pipeline: R1-Zero and the four stages of DeepSeek-R1", "",
             f"Held-out: {cfg.report.problems} problems x {k} samples (T = {cfg.report.temperature}, top-p "
             f"{cfg.report.top_p}); mixing = share of answers to zh/ja/ko prompts whose chain of thought mixes "
             "languages; RM score = the stage-4 reward model's mean score of answers to held-out general prompts "
             f"(held-out pair accuracy of the reward model: {result['rm_held_out_accuracy']}).", "",
             report_table(rows, k), "",
             "## The paper's findings, measured", ""]
    checks = [("R1-Zero mixes languages on zh/ja/ko prompts", (zero["language_mixing"] or 0) > 0),
              ("the final model mixes at most 5%, and at most a third of R1-Zero",
               final["language_mixing"] is not None and final["language_mixing"] <= 0.05
               and final["language_mixing"] <= (zero["language_mixing"] or 0) / 3),
              ("the final model's pass@1 is at least R1-Zero's", final["pass@1"] >= zero["pass@1"])]
    if cfg.ablation:
        with_lang = rows["stage 2: reasoning RL + language reward"]["language_mixing"] or 0
        without = rows["stage 2 without the language reward (ablation)"]["language_mixing"] or 0
        checks.append(("stage 2 with the language reward mixes less than without it", with_lang < without))
    lines += [f"- {'yes' if ok else 'NO'}: {what}" for what, ok in checks]
    lines += ["", f"Wall time: {result['wall_seconds']:.0f}s. Stage times: " +
              ", ".join(f"{n} {r['seconds']:.0f}s" for n, r in result["stages"].items()), "",
              "One answer of the final model to a held-out general prompt:", "", "```", final["general_sample"], "```", ""]
    return "\n".join(lines)
