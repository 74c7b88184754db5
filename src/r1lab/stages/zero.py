"""Stage R1-Zero: reinforcement learning straight from a base model (DeepSeek-R1 §2.2).

    r1lab zero [recipe.yaml] [key=value ...] [--resume]

1. Get the base: r1lab's own tiny DeepSeek-V3 (pretrained once, cached; model/base.py) or
   any Hugging Face causal LM directory (`base=path/to/model`).
2. Evaluate the base on the held-out test split, and gate: print its mix of styles (reasoning /
   direct answer / unformatted) and the accuracy of each, its self-verification measures
   (tasks/attempts.py), and refuse to start when the skill RL would select is not reliably right
   (RL can select a behaviour; it cannot create one at this scale).
3. GRPO with rule-based rewards (accuracy + format) under the R1-Zero template, one flat loop:
   sample G completions per prompt, score them, group-normalised advantages, a clipped
   policy-gradient update with optional k3 KL to the frozen base.
4. Evaluate the final policy the same way; write summary.json and report.md with plots.

The default task is `signs` (tasks/signs.py), where a first answer is a guess and checking it
pays: the demo of the paper's "aha moment" (issue 17). `arithmetic(cfg)` puts a config on the
arithmetic task that the pipeline and distillation use (recipes/zero-arithmetic.yaml).

Departures from the paper, all for a CPU-sized run: a tiny model and a procedurally generated
task instead of DeepSeek-V3-Base on competition math; a much lower learning rate relative to
batch size than usual (the probe in issue 2 saw a larger first Adam step flip the style and
break the worked solutions); groups whose rewards are all equal are dropped from the update
(DAPO's dynamic-sampling filter, without re-sampling to refill the batch), since they carry no
gradient and only dilute the aggregation; β defaults to 0 (no reference model), as in DAPO and
Dr. GRPO, where R1-Zero used a small KL term (set `grpo.beta`).

Where it runs: `device` (auto: the GPU when torch sees one, else the CPU) and `dtype` (float32, or
bfloat16 weights without a float32 master copy) place the policy, its reference and the reward
model (runtime/device.py); every tensor of the rollout and the update is made on the policy's device.
Under torchrun, `parallel=ddp` replicates the policy on every rank and `parallel=fsdp2` shards its
weights, gradients and Adam state (and the reference's weights) by decoder layer; the sampler then
decodes with a full copy on each rank, which gets the policy's weights gathered after every
optimizer step (runtime/distributed.py; its memory: docs/guide.md).

The same loop runs the R1 pipeline's and distillation's RL stages (through stages/chain.py):
stage 2 adds the `language` reward; stage 4 (`data.general_share` > 0, `reward_model=DIR`) draws that share of each step's prompts
from the built-in general prompts, scored by the reward model (`preference` reward) since they
have no verifiable answer; their accuracy is 0, so the logged accuracy of a stage-4 step counts
them as misses.
"""

from __future__ import annotations

import functools
import json
import random
import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from r1lab.data.problems import TEST_SEED, TRAIN_SEED, DataConfig, build_task
from r1lab.data.prompting import answer_stop_ids, chat_template_to_save
from r1lab.engine.params import SamplingConfig, sampling
from r1lab.engine.sampler import HFSampler
from r1lab.engine.vllm import RolloutConfig, check_backend, make_sampler
from r1lab.errors import UserError
from r1lab.eval.metrics import EvalResult, evaluate
from r1lab.eval.report import fmt, write_report
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.rl.reward_model import preference_reward
from r1lab.rl.rewards import get_reward
from r1lab.rl.step import GRPOConfig, group_seeds, grpo_step
from r1lab.runtime import distributed, preempt
from r1lab.runtime.card import metrics_table, write_model_card
from r1lab.runtime.checkpoint import resume as resume_from
from r1lab.runtime.checkpoint import save_checkpoint, save_sharded_checkpoint
from r1lab.runtime.config import at_least, check_config, config_to_dict, fractions, save_config
from r1lab.runtime.device import check as check_device
from r1lab.runtime.files import write_json
from r1lab.runtime.loading import load, resolve_model
from r1lab.runtime.lora import LoRAConfig, add_adapters, check_targets, merge, reference_model
from r1lab.runtime.run import claim_run_dir, start_run
from r1lab.runtime.runlog import RunLog, check_report_to
from r1lab.tasks import apply_template, make_task, register_task
from r1lab.tasks.attempts import attempts_of


@dataclass
class EvalConfig:
    k: int = 8  # samples per problem: pass@1 averaged over k, cons@k, pass@k' for k' <= k (R1 §5: k 4..64)
    pass_k: int = 64  # base's and final policy's pass@k curves up to this k (0: skip), on pass_k_problems
    pass_k_problems: int = 50  # held-out problems of the wide pass@k curves (the first ones of the test set)
    sampling: SamplingConfig = sampling(temperature=0.6, top_p=0.95, max_new_tokens=200)  # the paper's protocol (R1 §5)
    RENAMED: ClassVar[dict[str, str]] = {"temperature": "sampling.temperature", "top_p": "sampling.top_p",
                                         "max_new_tokens": "sampling.max_new_tokens", "base_pass_k": "pass_k",
                                         "base_pass_k_problems": "pass_k_problems"}

    def validate(self) -> None:
        if self.k < 1:
            raise UserError(f"k: expected >= 1, got {self.k}")
        at_least(self, 1, "pass_k_problems")
        if self.pass_k < 0 or (self.pass_k and self.pass_k_problems < 1):
            raise UserError(f"pass_k, pass_k_problems: expected >= 0 and >= 1, got {self.pass_k} "
                            f"and {self.pass_k_problems}")


SIGNS_TOKENS = 768  # room for four checked candidates (~180 tokens each) of the signs task


def signs_data() -> DataConfig:
    """The demo's task: Countdown with + and - in order (tasks/signs.py), where checking pays."""
    return DataConfig(task="signs", task_args={"n_numbers": 3}, langs=["en"], n_train=5000, n_test=200)


def arithmetic(cfg: ZeroConfig) -> ZeroConfig:
    """`cfg` on the arithmetic task (4-digit sums, prompts in en/zh/ja/ko), 30 steps at 5e-5 and
    completions up to 200 tokens: the R1 pipeline's and distillation's RL stages, and
    recipes/zero-arithmetic.yaml."""
    cfg.data = DataConfig()
    cfg.grpo.steps, cfg.grpo.lr = 30, 5e-5
    cfg.grpo.sampling.max_new_tokens = cfg.eval.sampling.max_new_tokens = 200
    return cfg


@dataclass
class ZeroConfig:
    base: str = "builtin"  # "builtin": r1lab's tiny DeepSeek-V3 (pretrained, cached); else a HF model dir or hub id
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the built-in base (used when base=builtin)
    data: DataConfig = field(default_factory=signs_data)  # the RL prompts and held-out set (recipes/zero-arithmetic.yaml: arithmetic)
    # reward function → weight, summed (R1 §2.2.2: accuracy + format); names from rl/rewards.py or a
    # dotted path to your own function (r1lab's signature or TRL's), e.g. {accuracy: 1.0, mypkg.r.brevity: 0.2}
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.1})
    reward_model: str = ""  # a `r1lab rm` model dir: enables the "preference" reward (general prompts)
    # the accuracy reward (and the held-out eval) also read answers stated in prose, as `r1lab eval`
    # does; off: under RL a lenient extractor is an optimiser target (rl/rewards.py `accuracy`)
    accuracy_prose: bool = False
    # 40 steps at 1e-4 on signs: at 5e-5 checking did not take hold within 30 steps (docs/devlog.md)
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=40, lr=1e-4,
                                                                sampling=SamplingConfig(1.0, 1.0, SIGNS_TOKENS)))
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # backend=vllm: rollouts on a colocated vLLM (GPU)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # lora.r > 0: train adapters, reference = adapters off
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(sampling=SamplingConfig(0.6, 0.95, SIGNS_TOKENS)))  # the held-out evaluation of the base and the final policy
    gate: bool = True  # refuse to start RL when the skill RL would select is not reliably right
    gate_min_accuracy: float = 0.5  # of the reasoning style, or of candidate evaluations (signs)
    run_dir: str = "runs/zero-{time}"  # {time}: start time; --resume picks the newest match
    save_every: int = 10  # GRPO steps between checkpoints (the last step is always saved)
    max_seconds: float = 0.0  # stop RL after this much training time (rollouts + updates, not evaluation); 0: off
    seed: int = 0  # seeds prompt order, rollouts and evaluation; the same seed gives the same run
    threads: int = 0  # torch CPU threads; 0: torch's default
    parallel: str = "ddp"  # under torchrun: ddp (replicated weights) | fsdp2 (sharded; runtime/distributed.py)
    device: str = "auto"  # auto (CUDA if present, cuda:LOCAL_RANK under torchrun, else cpu) | cpu | cuda | cuda:N
    dtype: Literal["float32", "bfloat16"] = "float32"  # the policy's (and reference's) weights (runtime/device.py)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # trackers that also get each step's metrics: tensorboard, wandb, trackio (or [])
    TRL_NAMES: ClassVar[dict[str, str]] = {  # TRL's GRPOConfig names → these keys (docs/trl.md)
        **{k: f"grpo.{v}" for k, v in GRPOConfig.TRL_NAMES.items()},
        **{k: f"grpo.{k}" for k in ("beta", "warmup_steps", "weight_decay")}, "scale_rewards": "grpo.advantage",
        "temperature": "grpo.sampling.temperature", "top_p": "grpo.sampling.top_p", "reward_weights": "rewards",
        "output_dir": "run_dir", "save_steps": "save_every", "bf16": "dtype", "use_vllm": "rollout.backend",
        "vllm_gpu_memory_utilization": "rollout.gpu_memory_utilization", "vllm_max_model_length": "rollout.max_model_len",
        "vllm_enable_sleep_mode": "rollout.sleep"}

    def validate(self) -> None:
        distributed.check_parallel(self.parallel)
        if self.parallel == "fsdp2" and self.lora.r:
            raise UserError("parallel, lora.r: LoRA adapters are not sharded (the base they train on fits one device "
                            "when its adapters do); use parallel=ddp with lora.r, or parallel=fsdp2 without")
        check_device(self)
        check_report_to(self.report_to)
        if not self.rewards:
            raise UserError("rewards: at least one reward function is needed")
        for name in self.rewards:
            if name != "preference":
                get_reward(name)  # raises a UserError naming the choices
        if self.max_seconds < 0:
            raise UserError(f"max_seconds: expected >= 0 (0: no time limit), got {self.max_seconds}")
        if self.save_every < 1:
            raise UserError(f"save_every: expected >= 1, got {self.save_every}")
        if self.threads < 0:
            raise UserError(f"threads: expected >= 0 (0: torch's default), got {self.threads}")
        at_least(self, 0, "seed")
        fractions(self, "gate_min_accuracy")


# ---------------------------------------------------------------------------------------------


CARD_METRICS = {"pass@1": "pass@1", "format_rate": "format", "mean_length": "mean length", "reflection_rate": "reflection",
                "self_check_rate": "self-check", "attempts_mean": "attempts", "language_mixing": "mixing"}


def data_note(data: DataConfig) -> str:
    """One line on a run's problems, for its model card."""
    what = f"`{data.path}` (task file)" if data.task == "file" else f"the built-in `{data.task}` task {data.task_args}"
    return f"{what}, {data.n_train} training prompts, {data.n_test} held-out problems, prompts in {', '.join(data.langs)}"


def eval_model(sampler, problems, cfg: ZeroConfig, seed: int, k: int | None = None) -> EvalResult:
    params = cfg.eval.sampling.params(seed=seed)
    return evaluate(sampler, problems, [apply_template(p.prompt) for p in problems], k or cfg.eval.k, params,
                    prose=cfg.accuracy_prose)  # graded as the accuracy reward grades


def print_eval(name: str, res: EvalResult, log) -> None:
    m = res.metrics
    styles = ", ".join(
        f"{s} {v['share']:.0%}" + (f" (acc {v['accuracy']:.0%})" if v["accuracy"] is not None else "")
        for s, v in m["styles"].items()
    )
    mixing = "" if m.get("language_mixing") is None else f"  mixing {m['language_mixing']:.2f}"
    checks = "" if m.get("self_check_rate") is None else (
        f"  self-check {m['self_check_rate']:.3f} (reasoning {fmt(m['self_check_rate_reasoning'])})  attempts "
        f"{m['attempts_mean']:.2f}  first candidate {m['first_candidate_accuracy']:.3f}")
    log(f"{name}: pass@1 {m['pass@1']:.3f}  cons@{res.k} {m[f'cons@{res.k}']:.3f}  pass@{res.k} "
        f"{m['pass@k'][str(res.k)]:.3f}  format {m['format_rate']:.2f}  length {m['mean_length']:.1f}{mixing}  "
        f"reflection {m['reflection_rate']:.3f}{checks}  styles: {styles}  [{res.seconds:.0f}s]")


def wide_pass_k(sampler, test, cfg: ZeroConfig, name: str, log) -> dict:
    """pass@k' for k' up to eval.pass_k on the first eval.pass_k_problems held-out problems. With
    the final pass@1 it tells selection (RL sharpening what the base could already sample) from new
    capability (RL solving what the base could not, even with many samples); cf. Yue et al. 2025."""
    wide = eval_model(sampler, test[: cfg.eval.pass_k_problems], cfg, seed=cfg.seed + 11, k=cfg.eval.pass_k)
    log(f"{name}: pass@{cfg.eval.pass_k} {wide.metrics['pass@k'][str(cfg.eval.pass_k)]:.3f} "
        f"on {len(wide.problems)} problems [{wide.seconds:.0f}s]")
    return wide.metrics["pass@k"]


def aha_samples(problems: list, base_first: list[str], res: EvalResult, n: int = 3) -> list[dict]:
    """Up to `n` held-out problems on which the final policy rejected a wrong candidate of its own
    and then answered right, each with the base's first sample on the same problem."""
    out = []
    for i, (problem, texts, answers, correct) in enumerate(zip(problems, res.completions, res.extracted, res.correct)):
        for text, attempt, ok in zip(texts, attempts_of(texts, [problem] * len(texts), answers), correct):
            if ok and attempt is not None and attempt.rejected_wrong:
                out.append({"prompt": problem.prompt, "answer": problem.answer,
                            "base": base_first[i] if i < len(base_first) else None, "final": text})
                break
        if len(out) == n:
            break
    return out


def check_gate(res: EvalResult, cfg: ZeroConfig) -> None:
    """RL can only select a behaviour the base already has: refuse to start when the skill it would
    select is not reliably right. For a task that can tell a check (tasks/attempts.py) that skill is
    evaluating a candidate (the answers need not be right: a first candidate is a guess); for the
    others it is the reasoning style's accuracy."""
    m = res.metrics
    if m.get("evaluation_accuracy") is not None or m.get("self_check_rate") is not None:
        acc, what = m.get("evaluation_accuracy"), "evaluation of a candidate"
    else:
        acc, what = m["styles"]["reasoning"]["accuracy"], "reasoning style"
    if acc is None or acc < cfg.gate_min_accuracy:
        shown = "never used" if acc is None else f"right {acc:.0%} of the time"
        raise UserError(
            f"gate: the base model's {what} is {shown} (need >= {cfg.gate_min_accuracy:.0%}); "
            "RL can only select a behaviour the base already has. Pretrain longer or set gate=false"
        )


def describe(record: dict) -> str:
    """The progress bar's summary of a step record."""
    acc = record.get("accuracy")
    return (f"reward {record['reward']:.3f} acc {acc if acc is None else round(acc, 3)} "
            f"len {record['len_mean']:.0f} {record['time_step']:.1f}s/step")


def run_zero(cfg: ZeroConfig, resume: bool = False, log=print) -> dict:
    t_start = time.time()
    check_config(cfg)
    # Under torchrun / accelerate (runtime/distributed.py) every rank runs this function on its
    # share of each step's prompts; rank 0 alone evaluates and writes files, and its log is the run's.
    run, log = start_run(cfg.run_dir, resume, cfg.threads, log)
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    cfg.run_dir = str(run)
    if cfg.grpo.prompts_per_step < world:
        raise UserError(f"grpo.prompts_per_step: {cfg.grpo.prompts_per_step} prompts cannot be shared by {world} ranks "
                        "(each rank needs at least one group)")

    # Everything the user can get wrong is checked before any expensive work or any write.
    # (checked here, not in validate(), because the pipeline fills these in for its stage 4)
    if (cfg.data.general_share > 0) != ("preference" in cfg.rewards):
        raise UserError("data.general_share, rewards: general prompts and the 'preference' reward go together "
                        "(general prompts have no other reward)")
    n_general = round(cfg.grpo.prompts_per_step * cfg.data.general_share)
    if cfg.data.general_share > 0 and not 1 <= n_general < cfg.grpo.prompts_per_step:
        raise UserError(f"data.general_share: {cfg.data.general_share} of {cfg.grpo.prompts_per_step} prompts "
                        "per step leaves no general or no reasoning prompt")
    if "preference" in cfg.rewards and not cfg.reward_model:
        raise UserError("reward_model: the preference reward and general prompts need a reward model "
                        "(a `r1lab rm` output directory)")
    if cfg.reward_model:
        resolve_model(cfg.reward_model, "reward_model")
    check_backend(cfg.rollout)
    if cfg.rollout.backend == "vllm" and cfg.lora.r:
        raise UserError("rollout.backend, lora.r: vLLM rollouts of a LoRA model are not supported; use rollout.backend=hf")
    task = build_task(cfg.data)
    langs = tuple(cfg.data.langs)
    # A seed offset so that RL prompts are not the pretraining corpus's problems (same generator).
    train = task.problems("train", cfg.data.n_train, seed=cfg.seed + TRAIN_SEED, langs=langs)
    test = task.problems("test", cfg.data.n_test, seed=cfg.seed + TEST_SEED, langs=langs)
    if not train or not test:
        raise UserError(f"data: need train and test problems, got {len(train)} train and {len(test)} test")

    base_path = distributed.main_first(lambda: pretrain(cfg.pretrain, log=log)) if cfg.base == "builtin" \
        else distributed.main_first(lambda: resolve_model(cfg.base))  # rank 0 downloads a hub id first
    model, tok = load(base_path, cfg.device, cfg.dtype)
    if cfg.lora.r:
        check_targets(model, cfg.lora)  # before the run directory is written
    sampler = make_sampler(cfg.rollout, model, tok, base_path, log=log)
    state_path = run / "state.json"
    if resume:
        state = json.loads(state_path.read_text())
        base_res_metrics, base_samples = state["base"], state["base_samples"]
    elif not main:  # only rank 0 evaluates; the others learn whether the gate let it through
        base_res_metrics, base_samples = {}, []
        if gate_error := distributed.broadcast(None):
            raise UserError(gate_error)
    else:
        base_res = eval_model(sampler, test, cfg, seed=cfg.seed + 7)
        print_eval("base", base_res, log)
        try:
            if cfg.gate:
                check_gate(base_res, cfg)
        except UserError as e:
            distributed.broadcast(str(e))
            raise
        distributed.broadcast(None)
        base_res_metrics = base_res.metrics
        if cfg.eval.pass_k > 0:
            base_res_metrics["pass@k_large"] = wide_pass_k(sampler, test, cfg, "base", log)
        base_samples = [row[0] for row in base_res.completions]  # the first sample of every problem
        claim_run_dir(run, resume)  # the run directory appears (locked: runtime/run.py) only once RL starts
        save_config(cfg, run / "config.yaml")
        write_json(state_path, {"base": base_res_metrics, "base_samples": base_samples})

    g = cfg.grpo
    if cfg.lora.r:
        model = add_adapters(model, cfg.lora)
        sampler = HFSampler(model, tok)  # the model's own forward: the static decoder would skip the adapters
    ref = reference_model(model) if g.beta > 0 else None  # LoRA: the same model with adapters off
    if cfg.parallel == "fsdp2" and world > 1:  # an HF sampler keeps decoding with the full `model`
        model = distributed.shard_policy(model, ref, keep_full=isinstance(sampler, HFSampler))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, weight_decay=g.weight_decay, betas=(0.9, 0.99))
    start_step, history = 0, []
    if resume:
        state = resume_from(run, model, opt, log)  # ref, copied above, stays the base
        if "history" not in state:
            raise UserError(f"--resume: {run}'s checkpoints hold no metrics history (written by an older r1lab); "
                            "start a new run")
        start_step, history = state["step"], state["history"]
        sampler.load_weights(model)
    reward_fns = {name: get_reward(name) for name in cfg.rewards if name != "preference"}
    if cfg.accuracy_prose and "accuracy" in reward_fns:
        reward_fns["accuracy"] = functools.partial(reward_fns["accuracy"], prose=True)
    if "preference" in cfg.rewards:
        rm, rm_tok = load(cfg.reward_model, cfg.device, cfg.dtype, head="score", field="reward_model")
        reward_fns["preference"] = preference_reward(rm.eval(), rm_tok)
    general = register_task(make_task("general")).problems("train", 10_000, seed=cfg.seed, langs=langs) if n_general else []
    stop_ids = answer_stop_ids(tok)
    logger = RunLog(run, history, total=g.steps, bar="grpo", report_to=cfg.report_to, postfix=describe,
                    config=config_to_dict(cfg)) if main else None

    model.train()
    t_train, steps_done = time.time(), g.steps
    with preempt.watch():  # SIGTERM: the step under way finishes and is checkpointed (runtime/preempt.py)
        for step in range(start_step, g.steps):
            # --- rollout, rewards, update (rl/step.py); the order depends only on seed and step ---
            rng = random.Random(cfg.seed * 1_000_003 + step)
            batch = rng.sample(train, min(g.prompts_per_step - n_general, len(train)))
            batch += [rng.choice(general) for _ in range(n_general)]  # stage 4: general prompts, scored by the reward model
            own = distributed.shard(len(batch), rank, world)  # whole groups: this rank's prompts of the batch
            mine = [batch[i] for i in own]

            def refill(r: int, rng=rng, size=len(batch), own=own, step=step):
                """Round r of fresh prompts for dynamic sampling (grpo.resample_rounds), this rank's share:
                the step's generator drawn on, so a function of (seed, step, r) on every rank."""
                fresh = rng.sample(train, min(size, len(train)))
                fresh = [fresh[i % len(fresh)] for i in own]
                return fresh, [apply_template(p.prompt) for p in fresh], group_seeds(
                    cfg.seed, step, range(own.start + r * size, own.stop + r * size))

            record, _ = grpo_step(model, ref, opt, sampler, mine, [apply_template(p.prompt) for p in mine],
                                  reward_fns, cfg.rewards, g, tok.pad_token_id, stop_ids, seed=group_seeds(cfg.seed, step, own),
                                  step=step, log=log, refill=refill)
            sampler.load_weights(model)  # the next rollout samples the updated policy (vLLM holds its own copy)
            if logger:
                logger.log(record)
            out_of_time = cfg.max_seconds > 0 and distributed.max_across(time.time() - t_train) >= cfg.max_seconds
            stop = preempt.requested()  # SIGTERM on any rank: a checkpoint at this step, then the end
            if (step + 1) % cfg.save_every == 0 or step + 1 == g.steps or out_of_time or stop:
                state = {"seed": cfg.seed, "history": logger.history if main else []}
                if distributed.is_sharded(model):  # every rank writes its optimizer shard
                    save_sharded_checkpoint(run, step + 1, model, opt, tok, state,
                                            chat_template=chat_template_to_save("r1zero", tok))
                elif main:
                    save_checkpoint(run, step + 1, model, tok, {**state, "optimizer": opt.state_dict()},
                                    chat_template=chat_template_to_save("r1zero", tok))
            if stop:
                preempt.stop(run / f"checkpoint-{step + 1}", run, logger)
            if out_of_time:
                steps_done = step + 1
                log(f"zero: max_seconds={cfg.max_seconds:.0f} reached after {steps_done} steps")
                break
    train_seconds = time.time() - t_train
    if not main:
        return {"steps": steps_done, "train_seconds": train_seconds}
    logger.close()
    if cfg.lora.r:  # evaluate the merged model, as saved, on the sampler's fast path
        model = merge(model)
        sampler = HFSampler(model, tok)

    final_res = eval_model(sampler, test, cfg, seed=cfg.seed + 7)
    print_eval("final", final_res, log)
    if cfg.eval.pass_k > 0:
        final_res.metrics["pass@k_large"] = wide_pass_k(sampler, test, cfg, "final", log)
    summary = {
        "base": base_res_metrics,
        "final": final_res.metrics,
        "base_model": str(base_path),
        "final_model": str(run / f"checkpoint-{steps_done}"),
        "wall_seconds": time.time() - t_start,
        "first_mean_length": logger.history[0]["len_mean"] if logger.history else None,
        "last_mean_length": logger.history[-1]["len_mean"] if logger.history else None,
        "steps": steps_done,
        "train_seconds": train_seconds,
        "config": config_to_dict(cfg),
    }
    summary["aha_samples"] = aha_samples(test, base_samples, final_res)
    write_json(run / "summary.json", summary)
    write_model_card(summary["final_model"], "r1lab zero", "R1-Zero: GRPO with rule-based rewards straight from the "
                     "base model (DeepSeek-R1 §2).", str(base_path), summary["config"], data_note(cfg.data),
                     f"Held-out problems ({final_res.metrics.get('problems', len(test))}), {cfg.eval.k} samples "
                     f"each at T = {cfg.eval.sampling.temperature}, top-p {cfg.eval.sampling.top_p}:\n\n"
                     + metrics_table({"base": base_res_metrics, "final": final_res.metrics}, CARD_METRICS))
    final_samples = [final_res.completions[i][0] for i in range(min(4, len(test)))]
    write_report(run, summary, logger.history, test[: len(final_samples)], base_samples[:4], final_samples)
    log(f"zero: pass@1 {base_res_metrics['pass@1']:.3f} -> {final_res.metrics['pass@1']:.3f}, "
        f"wrote {run}/summary.json and {run}/report.md in {summary['wall_seconds']:.0f}s")
    return summary
