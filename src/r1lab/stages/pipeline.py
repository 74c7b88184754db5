"""The four-stage DeepSeek-R1 pipeline (§3), end to end, next to the R1-Zero run it improves on.

    r1lab pipeline [recipe.yaml] [key=value ...]

Stages, each in its own directory under `run_dir`, each skipped when a rerun finds it done (a
stage left half-done by an interruption continues from its last checkpoint, or is redone from its
start when it had none: stages/chain.py):

  zero/             R1-Zero: GRPO on the base with accuracy + format rewards (the comparison row)
  stage1-cold-start/  built-in cold-start chains of thought (data/coldstart.py; or `cold_start.data`)
                    in English, Chinese and Korean, the Korean ones left uncleaned (each line's
                    word English with probability `cold_start.mixed_share`: the mixing stage 2's
                    language reward must remove), SFT of the base on them; the pipeline's prompts
                    are in those three languages (ColdStartConfig says why not Japanese)
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
(data/coldstart.py says why); the mixing stage 2 removes is one the cold start leaves in (uncleaned
Korean chains), where the paper's arose in RL on prompts of several languages; the language reward is weighted (`reasoning_rl.rewards.language`)
where the paper adds it to the accuracy reward unweighted, and stage 4 keeps it on reasoning
prompts; stage 3's SFT data are a few thousand samples and the built-in general answers, not
800k; one reward model serves helpfulness and harmlessness, and its score enters stage 4 squashed
into (0, 1) (`rl.reward_model.preference_reward`); the report's RM column scores the summary only.
Each RL stage also runs its own base and final evaluation (its run directory's report.md).
A rerun with the same `run_dir=` skips the stages already done with the same inputs (stages/chain.py
runs the stages and measures every row; this module says which stages, in which order, on what).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from r1lab.data.coldstart import cold_start_examples
from r1lab.data.rejection import Candidate, write_sft_jsonl
from r1lab.engine.params import SamplingConfig
from r1lab.errors import UserError
from r1lab.grading.shape import r1_answer
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.runtime.config import at_least, check_config, config_to_dict, fractions
from r1lab.runtime.device import check as check_device
from r1lab.runtime.files import read_jsonl
from r1lab.runtime.loading import load, resolve_model
from r1lab.runtime.runlog import check_report_to
from r1lab.stages.chain import (
    ReportConfig,
    RMConfig,
    SampleConfig,
    SFTConfig,
    ZeroConfig,
    arithmetic,
    cell,
    checks_markdown,
    fingerprint,
    measure,
    rl_stage,
    rm_stage,
    sample_stage,
    sft_stage,
    stage,
    start,
    table,
    write_result,
)
from r1lab.tasks.general import general_prompts
from r1lab.tasks.prompts import check_langs

LANGUAGE_REWARDS = {"accuracy": 1.0, "format": 0.1, "language": 0.5}


def _rl(lr: float = 2e-4, **over) -> ZeroConfig:
    """An RL stage's defaults. From a fine-tuned model, whose format is settled, RL takes 4x R1-Zero's
    learning rate: at 5e-5 stage 2 moved the language-mixing rate 72% -> 56% in 30 steps, at 2e-4
    72% -> 34%, with the same held-out pass@1 (0.981 / 0.980)."""
    cfg = arithmetic(ZeroConfig(**{"gate": False, "rewards": dict(LANGUAGE_REWARDS), **over}))
    cfg.grpo.lr = lr
    cfg.data.langs = ["en", "zh", "ko"]  # not ja: see ColdStartConfig.mixed_langs
    cfg.eval.pass_k = 0  # the report measures every stage; no pass@64 curve per stage
    return cfg


@dataclass
class ColdStartConfig:
    data: str = ""  # your own cold-start JSONL ({prompt, completion}); "" = the built-in generator
    examples: int = 1000  # built-in cold-start examples to generate (R1 §3 stage 1: "thousands")
    langs: list[str] = field(default_factory=lambda: ["en", "zh", "ko"])  # languages of the cold-start chains of thought
    # The paper's cold-start data was cleaned up for English and Chinese; chains in other languages
    # mix, and stage 2's language reward must remove what the cold start leaves in. It can only
    # select words the policy still writes, in a language the policy can tell from the prompt. Left
    # out of the cold start, Japanese got the Chinese word 位 on every line, and neither stage-2 run
    # moved it; put in uncleaned, Japanese and Chinese prompts got the same mix of 位, けた and
    # "digit" (the same samples, token for token): after the cold start this model no longer tells
    # a Chinese prompt from a Japanese one (docs/devlog.md). So the pipeline's prompts are en/zh/ko
    # (`_rl`), and the Korean chains, whose prompts it does tell apart, are left uncleaned.
    mixed_langs: list[str] = field(default_factory=lambda: ["ko"])  # languages whose cold-start chains are left uncleaned
    mixed_share: float = 0.2  # in those chains, the chance that a line's word is English (the base corpus's mix), in [0, 1]
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=2, lr=3e-4, template="r1zero", seq_len=512,
                                                            rows_per_step=8, micro_rows=8))  # stage 1's fine-tuning of the base on the cold-start data

    def validate(self) -> None:
        at_least(self, 1, "examples")
        fractions(self, "mixed_share")


@dataclass
class RejectionStageConfig:
    # T = 1: at 0.6 the stage-2 policy repeated itself (847 of 1,219 correct, single-language samples
    # of 512 prompts x 4 were duplicates)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(prompts=1024, n=4,
                                                                      sampling=SamplingConfig(1.0, 1.0, 300)))  # stage 3's rejection sampling of the stage-2 policy
    general_answers: bool = True  # add the built-in general prompts' preferred answers to the SFT data
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=2, lr=3e-4, template="r1zero", seq_len=512,
                                                            rows_per_step=8, micro_rows=8))  # stage 3's fine-tuning of the base on the kept samples


@dataclass
class PipelineConfig:
    """The stages' own settings are nested configs; the pipeline sets, for every stage, its base
    model (the previous stage's output), run directory, seed, device and pretraining config, and ties
    every stage's reasoning task to `reasoning_rl.data` (so `zero.data`, `all_rl.data` and
    `rejection.sample.data` are not read) and stage 4's reward model to the
    `rm` stage's output (`all_rl.reward_model` is not read)."""

    run_dir: str = "runs/pipeline-{time}"  # output directory (each stage in its own subdirectory); {time}: start time
    base: str = "builtin"  # the base every stage starts from: "builtin" (pretrained here) or a Hugging Face model dir
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the built-in base (used when base=builtin)
    zero: ZeroConfig = field(default_factory=lambda: _rl(lr=arithmetic(ZeroConfig()).grpo.lr, rewards={"accuracy": 1.0, "format": 0.1}))  # the R1-Zero run it is compared with
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)  # stage 1: SFT on readable long chains of thought
    reasoning_rl: ZeroConfig = field(default_factory=_rl)  # stage 2: GRPO with the language-consistency reward
    ablation: bool = True  # also run stage 2 without the language reward
    rejection: RejectionStageConfig = field(default_factory=RejectionStageConfig)  # stage 3: rejection sampling, then SFT of the base
    rm: RMConfig = field(default_factory=RMConfig)  # the reward model that scores stage 4's general prompts
    # Stage 4 at R1-Zero's learning rate: at 2e-4 it cost 0.04-0.12 pass@1 (runs/pipeline-2, -3)
    all_rl: ZeroConfig = field(default_factory=lambda: _rl(lr=arithmetic(ZeroConfig()).grpo.lr,
                                                          rewards={**LANGUAGE_REWARDS, "preference": 0.5}))
    general_share: float = 0.25  # stage 4: share of each step's prompts that are general ones
    report: ReportConfig = field(default_factory=ReportConfig)  # the closing evaluation of every stage's model
    seed: int = 0  # every stage's seed (overrides theirs)
    # dtypes are each stage's own (`<stage>.dtype`, `report.dtype`): bfloat16 suits sampling, not training
    device: str = "auto"  # every stage's and the report's device: auto (CUDA if present, else cpu) | cpu | cuda | cuda:N
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # every training stage's trackers: tensorboard, wandb, trackio (or [])

    def validate(self) -> None:
        """Every mistake a later stage would trip on, found before the first stage starts."""
        check_device(self)
        check_report_to(self.report_to)
        at_least(self, 0, "seed")

        if "language" not in self.reasoning_rl.rewards:
            raise UserError("reasoning_rl.rewards: stage 2 is defined by its language reward; keep 'language'")
        if "preference" not in self.all_rl.rewards:
            raise UserError("all_rl.rewards: stage 4 scores general prompts with the reward model; keep 'preference'")
        n = round(self.all_rl.grpo.prompts_per_step * self.general_share)
        if not 0 < self.general_share < 1 or not 1 <= n < self.all_rl.grpo.prompts_per_step:
            raise UserError(f"general_share: {self.general_share} of all_rl.grpo.prompts_per_step="
                            f"{self.all_rl.grpo.prompts_per_step} must give at least one general and one reasoning prompt")
        if self.cold_start.data:
            if not Path(self.cold_start.data).exists():
                raise UserError(f"cold_start.data: {self.cold_start.data}: no such file")
        elif self.reasoning_rl.data.task != "arithmetic":
            raise UserError(f"cold_start.data: the built-in cold start writes arithmetic only; for task "
                            f"'{self.reasoning_rl.data.task}' give your own cold-start JSONL")
        check_langs(self.cold_start.langs)
        check_langs(self.cold_start.mixed_langs)


# --- stages -----------------------------------------------------------------------------------


def cold_start_stage(cfg: PipelineConfig, base: Path, d: Path, resume: bool, log) -> dict:
    data = Path(cfg.cold_start.data) if cfg.cold_start.data else d / "cold_start.jsonl"
    if not cfg.cold_start.data:  # (written again on resume: the same examples)
        examples = cold_start_examples(cfg.cold_start.examples, cfg.seed, tuple(cfg.cold_start.langs),
                                       cfg.reasoning_rl.data.task_args, tuple(cfg.cold_start.mixed_langs),
                                       cfg.cold_start.mixed_share)
        write_sft_jsonl(examples, data, {"generator": "r1lab.data.coldstart", "seed": cfg.seed})
    return {**sft_stage(cfg.cold_start.sft, base, data, d, log, resume, **shared(cfg)), "data": str(data)}


def rejection_stage(cfg: PipelineConfig, sample: SampleConfig, base: Path, stage2: Path, d: Path, resume: bool,
                    log) -> dict:
    data, report = sample_stage(sample, stage2, d, log, resume, seed=cfg.seed, device=cfg.device)
    if cfg.rejection.general_answers:  # the non-reasoning SFT data of stage 3
        general = [Candidate(g.prompt, r1_answer(g.reference), g.lang, True) for g in general_prompts("train")]
        reasoning = [Candidate(r["prompt"], r["completion"], r["lang"], True) for _, r in read_jsonl(data)]
        data = d / "sft_data.jsonl"
        write_sft_jsonl(reasoning + general * 4, data, {"stage": 3})  # general answers x4: ~1/10 of the data
    if report["kept"] == 0:
        log(f"pipeline: stage 3 kept no sampled answer of {report['total']} (see {d / 'sample'}/report.json)")
        if not cfg.rejection.general_answers:
            raise UserError(f"stage 3: rejection sampling kept no sample of {report['total']}; see {d / 'sample'}")
    return {**sft_stage(cfg.rejection.sft, base, data, d, log, resume, **shared(cfg)), "sample": report}


def shared(cfg: PipelineConfig) -> dict:
    """The settings every training stage of the pipeline takes from the pipeline's own."""
    return {"seed": cfg.seed, "device": cfg.device, "pretrain": cfg.pretrain, "report_to": cfg.report_to}


# --- the command ------------------------------------------------------------------------------


def run_pipeline(cfg: PipelineConfig, log=print) -> dict:
    t0 = time.time()
    check_config(cfg)
    given = None if cfg.base == "builtin" else resolve_model(cfg.base)  # a missing model: before any run dir
    run = start(cfg, log)
    base = pretrain(cfg.pretrain, log=log) if given is None else given
    no_language = {k: v for k, v in cfg.reasoning_rl.rewards.items() if k != "language"}

    data = cfg.reasoning_rl.data  # the reasoning task of every stage
    zero = replace(cfg.zero, data=data)
    stage4 = replace(cfg.all_rl, data=replace(data, general_share=cfg.general_share))
    sample = replace(cfg.rejection.sample, data=data.task_config())

    def rl(c: ZeroConfig, b: Path, **over):  # the body of an RL stage from `b`
        return lambda d, resume: rl_stage(c, b, d, log, resume, **shared(cfg), **over)

    records = {"zero": stage(run, "zero", fingerprint(str(base), zero, cfg.seed), rl(zero, base), log)}
    records["stage1"] = stage(run, "stage1-cold-start", fingerprint(str(base), cfg.cold_start, data, cfg.seed),
                              lambda d, resume: cold_start_stage(cfg, base, d, resume, log), log)
    s1 = Path(records["stage1"]["model"])
    records["stage2"] = stage(run, "stage2-reasoning-rl", fingerprint(records["stage1"], cfg.reasoning_rl),
                              rl(cfg.reasoning_rl, s1), log)
    if cfg.ablation:
        records["stage2_no_language"] = stage(
            run, "stage2-no-language", fingerprint(records["stage1"], cfg.reasoning_rl, "no language"),
            rl(cfg.reasoning_rl, s1, rewards=no_language), log)
    s2 = Path(records["stage2"]["model"])
    records["stage3"] = stage(run, "stage3-rejection", fingerprint(str(base), records["stage2"], sample, cfg.rejection),
                              lambda d, resume: rejection_stage(cfg, sample, base, s2, d, resume, log), log)
    records["rm"] = stage(run, "rm", fingerprint(str(base), cfg.rm, cfg.seed),
                          lambda d, resume: rm_stage(cfg.rm, base, d, log, resume, **shared(cfg)), log)
    s3, rm_dir = Path(records["stage3"]["model"]), Path(records["rm"]["model"])
    stage4 = replace(stage4, reward_model=str(rm_dir))
    records["stage4"] = stage(run, "stage4-all-rl", fingerprint(records["stage3"], records["rm"], stage4),
                              rl(stage4, s3), log)

    names = {"base": base, "R1-Zero": records["zero"]["model"], "stage 1: cold start": s1,
             "stage 2: reasoning RL + language reward": s2}
    if cfg.ablation:
        names["stage 2 without the language reward (ablation)"] = records["stage2_no_language"]["model"]
    names |= {"stage 3: rejection sampling + SFT": s3, "stage 4: RL for all scenarios (R1)": records["stage4"]["model"]}
    rm = load(rm_dir, cfg.device, cfg.report.dtype, head="score")
    rows = {}
    for name, model_dir in names.items():
        log(f"pipeline: measuring {name}")
        rows[name] = measure(Path(model_dir), data, cfg.report, cfg.seed, cfg.device, rm=rm)
    result = {"rows": rows, "stages": records, "rm_held_out_accuracy": records["rm"].get("held_out_accuracy"),
              "config": config_to_dict(cfg)}
    result["checks"] = {what: ok for what, ok in checks(rows, cfg)}
    result["wall_seconds"] = time.time() - t0
    write_result(run, "pipeline", result, report_md(result, cfg))
    log(report_table(rows, cfg.report.k))
    log(f"pipeline: wrote {run}/report.md in {result['wall_seconds']:.0f}s")
    return result


def report_table(rows: dict[str, dict], k: int) -> str:
    return table(["model", "pass@1", f"cons@{k}", "format", "mixing zh/ja/ko", "mean length", "RM score (general)"],
                 [[name, cell(m["pass@1"], ".3f"), cell(m[f"cons@{k}"], ".3f"), cell(m["format_rate"], ".2f"),
                   cell(m["language_mixing"], ".1%"), cell(m["mean_length"], ".1f"), cell(m["rm_score"], ".2f")]
                  for name, m in rows.items()])


def checks(rows: dict[str, dict], cfg: PipelineConfig) -> list[tuple[str, bool]]:
    """The paper's findings about the pipeline, each checked on the measured rows."""
    zero, final = rows["R1-Zero"], rows["stage 4: RL for all scenarios (R1)"]
    out = [("R1-Zero mixes languages on zh/ja/ko prompts", (zero["language_mixing"] or 0) > 0),
           ("the final model mixes at most 5%, and at most a third of R1-Zero",
            final["language_mixing"] is not None and final["language_mixing"] <= 0.05
            and final["language_mixing"] <= (zero["language_mixing"] or 0) / 3),
           ("the final model's pass@1 is at least R1-Zero's", final["pass@1"] >= zero["pass@1"])]
    if cfg.ablation:
        with_lang = rows["stage 2: reasoning RL + language reward"]["language_mixing"] or 0
        without = rows["stage 2 without the language reward (ablation)"]["language_mixing"] or 0
        out.append(("stage 2 with the language reward mixes less than without it", with_lang < without))
    return out


def report_md(result: dict, cfg: PipelineConfig) -> str:
    rows, k = result["rows"], cfg.report.k
    final = rows["stage 4: RL for all scenarios (R1)"]
    lines = ["# r1lab pipeline: R1-Zero and the four stages of DeepSeek-R1", "",
             f"Held-out: {cfg.report.problems} problems x {k} samples (T = {cfg.report.sampling.temperature}, top-p "
             f"{cfg.report.sampling.top_p}); mixing = share of answers to zh/ja/ko prompts whose chain of thought mixes "
             "languages; RM score = the stage-4 reward model's mean score of answers to held-out general prompts "
             f"(held-out pair accuracy of the reward model: {result['rm_held_out_accuracy']}).", "",
             report_table(rows, k), "", "## The paper's findings, measured", "",
             checks_markdown(checks(rows, cfg)), "",
             f"Wall time: {result['wall_seconds']:.0f}s. Stage times: " +
             ", ".join(f"{n} {r['seconds']:.0f}s" for n, r in result["stages"].items()), "",
             "One answer of the final model to a held-out general prompt:", "", "```", final["general_sample"], "```", ""]
    return "\n".join(lines)
