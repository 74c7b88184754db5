"""r1lab's GRPO step against TRL's GRPOTrainer: same models, same work, one run, this CPU.

    flock /tmp/r1lab-cpu.lock .venv/bin/python bench/grpo_vs_trl.py [--steps 3] [--base DIR]

What is compared. Two tiny causal LMs, each trained by both frameworks:
  deepseek  r1lab's own DeepSeek-V3 base (MLA + DeepSeekMoE, 1.81M parameters, 0.93M active per
            token), from `r1lab.model.base.pretrain(PretrainConfig())`: the cached base directory, or
            on a fresh clone ~15 minutes of pretraining first; `--base DIR` uses another directory;
  qwen      a dense `Qwen2ForCausalLM` of the same total size (hidden 128, 4 layers, 4 heads,
            2 KV heads, intermediate 1024: 1.84M parameters, all active, so about twice the
            deepseek model's compute per token; `--qwen-intermediate 384` gives 0.85M, the
            deepseek model's *active* size), random weights from seed 0, r1lab's tokenizer
            copied from the base, saved to a temporary directory.
Both frameworks load a model with `r1lab.runtime.loading.load` (float32, from disk).

The workload, identical for both (r1lab's `GRPOConfig` is the single source; TRL's config is
derived from it in `trl_config`):
  prompts   r1lab's arithmetic task (4 digits, 2 terms, en/zh/ja/ko), train split, seed 1000, in
            the R1-Zero template (`apply_template`); step s takes problems 8s .. 8s+7, the same
            8 for both (TRL gets the rendered strings as a plain-text "prompt" column, in order,
            `shuffle_dataset=False`);
  rollout   P=8 prompts x G=16 samples = 128 completions per step, at most 200 new tokens,
            temperature 1.0, top_p 1.0 (TRL: top_k 0, no min_p, no repetition penalty); both stop
            a sample at the tokenizer's EOS or at `</answer>` (r1lab: `stop_ids` as in stages/zero.py;
            TRL: both ids in the model's generation_config.eos_token_id, which TRL reads into
            its generation config and its completion mask);
  rewards   r1lab's `accuracy` + `format` + this script's `brevity` (a small length penalty that
            gives every group some reward spread, so both frameworks update on every sample; see
            `brevity`) at weights 1.0 / 0.1 / 0.01 (TRL: the same functions wrapped for its
            `reward_funcs` signature, `reward_weights=[1.0, 0.1, 0.01]`, sum then normalise);
  update    lr 5e-5 constant (TRL: `lr_scheduler_type="constant"`), AdamW betas (0.9, 0.99)
            with no weight decay as stages/zero.py builds it (TRL: `optim="adamw_torch"`, the same torch
            class), grad clip 1.0, β = 0 (no reference model), μ = 1, ε = 0.2, group-std
            scaled advantages, loss aggregated per sequence then averaged over the 128 samples
            (r1lab `sequence_mean` = TRL `loss_type="grpo"`: each micro-batch's mean of
            sequence means divided by the 2 accumulation steps), every group kept (r1lab
            `drop_zero_spread=False`; TRL drops none); one optimizer step per 128 completions,
            at most 64 rows per micro-batch (r1lab: `micro_batch=64` and its default
            `micro_tokens=2048`, so rows are split by length into micro-batches of at most 2048
            padded completion tokens, each sharing one prompt pass per update; the loss and
            gradient do not depend on the split, tests/test_rl.py; TRL: two micro-batches,
            per_device_train_batch_size 64,
            gradient_accumulation_steps 2, hence steps_per_generation 2 and a generation batch of
            128; gradient_accumulation_steps is a multiple of steps_per_generation x
            num_iterations, so TRL, like r1lab, computes no separate old-log-prob pass);
            TRL's MoE auxiliary loss is off (`router_aux_loss_coef=0`, set explicitly, though
            DeepseekV3Config declares no coefficient either: DeepSeek-V3 balances experts
            without one and r1lab adds none); float32 throughout (TRL's configs default
            to bf16 autocast, even on CPU, so `bf16=False`);
  memory    no gradient checkpointing in either ("trl"). TRL's configs turn it on by default, so
            a third run, "trl-gc", is TRL exactly so: less activation memory, one more forward
            per micro-batch. The speedup is against "trl" (equal work); the table and ratios show
            both.
  threads   torch's default (2 on this machine) in both.

How it runs. Each (framework, model) pair runs in its own subprocess (this script with
`--worker r1lab|trl|trl-gc`), which does one warm-up step (not timed), then `--steps` timed
steps, and prints one JSON line; the parent prints the table, the ratios r1lab / TRL per model,
and last `speedup X.XX`: r1lab's samples/s over TRL's ("trl", equal settings), the smaller of
the two models' ratios.

What is timed. Step time is wall time per optimizer step in each framework's own loop: for r1lab
around `grpo_step`; for TRL from one `on_step_end` callback to the next (so it includes the
Trainer's batch fetch and bookkeeping between steps). The split, per step:
  generate  r1lab `time_generate` (Sampler.generate: tokenise, prefill, decode, detokenise);
            TRL `GRPOTrainer._generate` (tokenise, `model.generate`, EOS masking, decode,
            length metrics);
  logprobs  no-grad log-prob passes (π_old, π_ref): r1lab `time_logprobs`; TRL the calls to
            `_get_per_token_logps_and_entropies` made with grad disabled. Both 0 here (β = 0,
            μ = 1), which confirms neither does redundant work;
  reward    r1lab `time_score` (rewards + advantages); TRL the rest of
            `_generate_and_score_completions` after generation (padding to tensors, the reward
            functions, advantages, metric logging); the reward functions alone are in the JSON
            as `reward_fns`;
  update    step time minus the three above: the loss forward/backward over all micro-batches,
            clipping, the optimizer step, and each framework's own overhead.
Samples/s is completions per second of step time; tokens/s is generated tokens (stop token
included, as both count it) per second of step time. Peak RSS is the worker's
`ru_maxrss` over its whole life, so it includes imports (TRL pulls in datasets and accelerate)
and model loading; the RSS just after loading is reported too.

Known differences that remain:
  * Sampling streams differ (r1lab's seeded torch.Generator vs TRL's global RNG), so the two
    frameworks draw different completions of different lengths; samples/s depends on those
    lengths, tokens/s much less. The mean completion length is printed to show how close they
    are. The random-weight qwen model rarely samples a stop token, so its completions run long.
  * TRL's group std has Bessel's correction (`nanstd`), r1lab's is the population std (the
    formula in grpo.py): TRL's advantages are sqrt(15/16) = 0.968 times r1lab's. Same cost.
  * Different by design, and part of what is measured (r1lab's side as of this writing; its
    sampler and update are being optimised): TRL repeats each prompt G times and prefills all
    128 copies, r1lab prefills each prompt once and repeats its KV cache; TRL's
    `model.generate` keeps finished rows in the batch until the longest is done, r1lab drops
    them; TRL shuffles the 128 rollouts and pads every micro-batch to the longest sequence of
    the whole generation batch and recomputes each sample's prompt, r1lab sorts rows by length,
    pads each micro-batch to its own longest and computes each prompt once per update (the
    loss is the same either way); TRL's training forward scores every position
    (prompt included) with its chunked fused LM head on CPU and never materialises the logits,
    r1lab materialises the completion's logits only (`logits_to_keep`).
  * TRL's training forward passes no position_ids, so left-padded prompts get positions
    0..L-1 counting the pads, while its `generate` derives positions from the attention mask;
    r1lab uses mask-derived positions in both. (A correctness quirk of TRL, not a cost.)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MODELS = ("qwen", "deepseek")
FRAMEWORKS = ("r1lab", "trl", "trl-gc")  # trl-gc: TRL with its default gradient checkpointing
REWARD_WEIGHTS = {"accuracy": 1.0, "format": 0.1, "brevity": 0.01}


def brevity(completions: list[str], problems: list) -> list[float]:
    """A small length penalty, so that no group has all-equal rewards: a random-weight model never
    earns accuracy or format reward, and a group with no reward spread has zero advantages, whose
    update r1lab skips (their gradient is exactly zero when beta = 0) while TRL computes it. With
    this reward both frameworks do the full update on every sample: equal work."""
    return [-len(c) / 1000 for c in completions]


def reward_fn(name: str):
    from r1lab.rl.rewards import get_reward

    return brevity if name == "brevity" else get_reward(name)
TASK_ARGS = {"digits": 4, "terms": 2}
LANGS = ("en", "zh", "ja", "ko")
PROMPT_SEED = 1000  # data/problems.py's TRAIN_SEED, so these are RL prompts, not the pretraining corpus's


def grpo_config(steps: int):
    """The one workload both frameworks run (r1lab's GRPOConfig; TRL's is derived from it)."""
    from r1lab.engine.params import SamplingConfig
    from r1lab.rl.step import GRPOConfig

    g = GRPOConfig(steps=steps, prompts_per_step=8, group_size=16, lr=5e-5, beta=0.0, mu=1,
                   aggregation="sequence_mean", advantage="grpo", drop_zero_spread=False, micro_batch=64,
                   grad_clip=1.0, sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=200))
    g.validate()
    return g


def step_problems(g, n_steps: int) -> list[list]:
    """The problems of each step: the same P for both frameworks, in the same order."""
    from r1lab.tasks import make_task, register_task

    task = register_task(make_task("arithmetic", **TASK_ARGS))
    pool = task.problems("train", n_steps * g.prompts_per_step, seed=PROMPT_SEED, langs=LANGS)
    return [pool[i : i + g.prompts_per_step] for i in range(0, len(pool), g.prompts_per_step)]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- model set-up (parent) -------------------------------------------------------------------


def base_model_dir(override: str | None) -> Path:
    if override:
        return Path(override)
    from r1lab.model.base import PretrainConfig, base_dir, pretrain

    if not (base_dir(PretrainConfig()) / "config.json").exists():
        print("no cached base model: pretraining r1lab's DeepSeek-V3 base first (~15 min on this CPU)", flush=True)
    return pretrain(PretrainConfig(), log=lambda m: print(m, flush=True))


def write_dense_model(base: Path, out: Path, intermediate: int, seed: int = 0) -> Path:
    """A random-weight Qwen2ForCausalLM with r1lab's tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(base)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=intermediate, max_position_embeddings=1024,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


# --- workers: one (framework, model) per process ---------------------------------------------


def run_r1lab(model_dir: Path, steps: list[list], g, seed: int) -> tuple[list[dict], float]:
    """grpo_step exactly as stages/zero.py calls it; returns per-step measurements and RSS after loading."""
    import torch

    from r1lab.data.prompting import answer_stop_ids
    from r1lab.engine.sampler import HFSampler
    from r1lab.rl.step import group_seeds, grpo_step
    from r1lab.runtime.loading import load
    from r1lab.tasks import apply_template

    model, tok = load(model_dir)
    loaded = rss_mib()
    sampler = HFSampler(model, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, weight_decay=g.weight_decay, betas=(0.9, 0.99))
    reward_fns = {name: reward_fn(name) for name in REWARD_WEIGHTS}
    stop_ids = answer_stop_ids(tok)
    model.train()
    out = []
    for step, batch in enumerate(steps):
        t0 = time.perf_counter()
        record, gen = grpo_step(model, None, opt, sampler, batch, [apply_template(p.prompt) for p in batch],
                                reward_fns, REWARD_WEIGHTS, g, tok.pad_token_id, stop_ids,
                                seed=group_seeds(seed, step, range(len(batch))), step=step)
        wall = time.perf_counter() - t0
        out.append({"step": wall, "generate": record["time_generate"], "logprobs": record["time_logprobs"],
                    "reward": record["time_score"], "reward_fns": None, "samples": len(gen.texts),
                    "tokens": gen.num_tokens, "reward_mean": record["reward"]})
        print(f"r1lab step {step}: {wall:.1f}s, {gen.num_tokens} tokens", file=sys.stderr, flush=True)
    return out, loaded


def trl_reward(name: str, fn, problems: list):
    """An r1lab reward `fn(completions, problems)` with TRL's signature; the dataset row's
    `problem_index` column says which problem each completion answers."""

    def reward(completions, problem_index, **_):
        return fn(completions, [problems[i] for i in problem_index])

    reward.__name__ = name  # TRL names metrics after the function
    return reward


def trl_config(g, n_steps: int, seed: int, output_dir: str, checkpointing: bool):
    from trl import GRPOConfig as TRLGRPOConfig

    batch = g.prompts_per_step * g.group_size
    assert batch % g.micro_batch == 0, "one optimizer step per generation batch needs micro_batch | P*G"
    return TRLGRPOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
        logging_strategy="no", disable_tqdm=True, log_completions=False, dataloader_num_workers=0,
        remove_unused_columns=False, seed=seed, max_steps=n_steps, shuffle_dataset=False, use_vllm=False,
        gradient_checkpointing=checkpointing,  # TRL's default is True; r1lab has none, so False for equal work
        # one generation batch of P*G = one optimizer step of P*G / micro_batch micro-batches
        per_device_train_batch_size=g.micro_batch, gradient_accumulation_steps=batch // g.micro_batch,
        num_generations=g.group_size, max_completion_length=g.sampling.max_new_tokens,
        temperature=g.sampling.temperature, top_p=g.sampling.top_p, top_k=0, min_p=None, repetition_penalty=1.0,
        learning_rate=g.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=g.weight_decay,
        adam_beta1=0.9, adam_beta2=0.99, optim="adamw_torch", max_grad_norm=g.grad_clip,
        beta=g.beta, num_iterations=g.mu, epsilon=g.eps_low, epsilon_high=g.eps_high, loss_type="grpo",
        scale_rewards={"grpo": "group", "dr_grpo": "none"}[g.advantage], reward_weights=list(REWARD_WEIGHTS.values()),
        router_aux_loss_coef=0.0,
    )


def time_method(obj, name: str, totals: dict, key: str, only_without_grad: bool = False, count_tokens=None):
    """Replace `obj.name` by a wrapper adding its wall time to totals[key] (only calls made under
    no_grad if `only_without_grad`); `count_tokens(result)` adds to totals['tokens']."""
    import torch

    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        if only_without_grad and torch.is_grad_enabled():
            return inner(*args, **kwargs)
        t0 = time.perf_counter()
        result = inner(*args, **kwargs)
        totals[key] += time.perf_counter() - t0
        if count_tokens:
            totals["tokens"] += count_tokens(result)
            totals["samples"] += len(result[1])
        return result

    setattr(obj, name, wrapper)


def run_trl(model_dir: Path, steps: list[list], g, seed: int, checkpointing: bool) -> tuple[list[dict], float]:
    """TRL's GRPOTrainer on the same model and prompts, its internals wrapped with timers."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    from r1lab.data.prompting import answer_stop_ids
    from r1lab.runtime.loading import load
    from r1lab.tasks import apply_template

    hf_logging.set_verbosity_error()
    model, tok = load(model_dir)
    loaded = rss_mib()
    # TRL stops generation at, and masks after, every id in the model's generation_config EOS list.
    model.generation_config.eos_token_id = sorted({tok.eos_token_id, *answer_stop_ids(tok)})
    problems = [p for batch in steps for p in batch]
    dataset = Dataset.from_dict({"prompt": [apply_template(p.prompt) for p in problems],
                                 "problem_index": list(range(len(problems)))})
    rewards = [trl_reward(name, reward_fn(name), problems) for name in REWARD_WEIGHTS]
    totals: dict[str, float] = defaultdict(float)
    out: list[dict] = []

    class StepClock(TrainerCallback):
        """Per optimizer step: wall time since the previous step ended, and the timers' deltas."""

        def __init__(self):
            self.last, self.seen = None, {}

        def on_step_begin(self, args, state, control, **kw):
            if self.last is None:
                self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            d = {k: v - self.seen.get(k, 0.0) for k, v in totals.items()}
            self.seen = dict(totals)
            out.append({"step": now - self.last, "generate": d.get("generate", 0.0),
                        "logprobs": d.get("logprobs", 0.0),
                        "reward": d.get("score", 0.0) - d.get("generate", 0.0) - d.get("logprobs", 0.0),
                        "reward_fns": d.get("reward_fns", 0.0), "samples": int(d.get("samples", 0)),
                        "tokens": int(d.get("tokens", 0)), "reward_mean": trainer._metrics["train"]["reward"][-1]})
            print(f"trl step {len(out) - 1}: {now - self.last:.1f}s, {out[-1]['tokens']} tokens",
                  file=sys.stderr, flush=True)
            self.last = now

    with tempfile.TemporaryDirectory() as tmp:
        args = trl_config(g, len(steps), seed, tmp, checkpointing)
        trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                              processing_class=tok, callbacks=[StepClock()])
        time_method(trainer, "_generate", totals, "generate",
                    count_tokens=lambda r: sum(len(ids) for ids in r[1]))  # r[1]: completion_ids
        time_method(trainer, "_get_per_token_logps_and_entropies", totals, "logprobs", only_without_grad=True)
        time_method(trainer, "_calculate_rewards", totals, "reward_fns")
        time_method(trainer, "_generate_and_score_completions", totals, "score")
        trainer.train()
    return out, loaded


def worker(args) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, raised inside TRL

    g = grpo_config(args.warmup + args.steps)
    steps = step_problems(g, args.warmup + args.steps)
    if args.worker == "r1lab":
        per_step, loaded = run_r1lab(Path(args.model_dir), steps, g, args.seed)
    else:
        per_step, loaded = run_trl(Path(args.model_dir), steps, g, args.seed, checkpointing=args.worker == "trl-gc")
    timed = per_step[args.warmup :]
    assert len(timed) == args.steps, f"expected {args.steps} timed steps, measured {len(timed)}"
    for s in timed:
        s["update"] = s["step"] - s["generate"] - s["logprobs"] - s["reward"]
    print(json.dumps({"framework": args.worker, "threads": torch.get_num_threads(), "steps": timed,
                      "rss_loaded_mib": loaded, "peak_rss_mib": rss_mib()}))


# --- parent: run the workers, print the table -----------------------------------------------


def run_worker(framework: str, model_dir: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", framework, "--model-dir", str(model_dir),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)  # stderr: live progress
    if proc.returncode != 0:
        sys.exit(f"worker {framework} on {model_dir} failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t0
    return result


def summarise(result: dict) -> dict:
    steps = result["steps"]
    total = sum(s["step"] for s in steps)
    samples, tokens = sum(s["samples"] for s in steps), sum(s["tokens"] for s in steps)
    mean = lambda key: sum(s[key] for s in steps) / len(steps)
    return {"samples_s": samples / total, "tokens_s": tokens / total, "len": tokens / samples,
            "step": mean("step"), "generate": mean("generate"), "logprobs": mean("logprobs"),
            "reward": mean("reward"), "update": mean("update"), "rss": result["peak_rss_mib"],
            "rss_loaded": result["rss_loaded_mib"], "reward_mean": mean("reward_mean")}


def print_table(results: dict) -> float:
    """The per-run table and per-model ratios; returns the smaller samples/s ratio against `trl`."""
    head = (f"{'model':<9} {'framework':<9} {'samples/s':>9} {'tokens/s':>9} {'len':>6} | {'step s':>7} "
            f"{'generate':>8} {'logprobs':>8} {'reward':>7} {'update':>7} | "
            f"{'peak RSS':>8} {'loaded':>7} {'reward':>7}")
    print(head)
    print("-" * len(head))
    for (model, fw), r in results.items():
        s = summarise(r)
        print(f"{model:<9} {fw:<9} {s['samples_s']:>9.2f} {s['tokens_s']:>9.0f} {s['len']:>6.1f} | {s['step']:>7.2f} "
              f"{s['generate']:>8.2f} {s['logprobs']:>8.2f} {s['reward']:>7.3f} {s['update']:>7.2f} | "
              f"{s['rss']:>6.0f}Mi {s['rss_loaded']:>5.0f}Mi {s['reward_mean']:>7.3f}")
    print("(len: mean completion tokens; step split in seconds per step; peak RSS of the whole worker,"
          " loaded: RSS after loading the model; reward: mean total reward)")
    print()
    ratios = []
    for model in MODELS:
        ours = summarise(results[model, "r1lab"])
        for fw in FRAMEWORKS[1:]:
            theirs = summarise(results[model, fw])
            ratio = ours["samples_s"] / theirs["samples_s"]
            if fw == "trl":  # the speedup is against TRL at equal settings
                ratios.append(ratio)
            tokens = ours["tokens_s"] / theirs["tokens_s"]
            print(f"{model:<9} r1lab/{fw:<7} samples/s {ratio:5.2f}x  tokens/s {tokens:5.2f}x  "
                  f"generate time {ours['generate'] / theirs['generate']:5.2f}x  update time "
                  f"{ours['update'] / theirs['update']:5.2f}x  peak RSS {ours['rss'] / theirs['rss']:5.2f}x")
    return min(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per framework per model")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--base", help="DeepSeek-V3 base model dir (default: r1lab's cached pretrained base)")
    ap.add_argument("--qwen-intermediate", type=int, default=1024, help="dense model's MLP width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import torch
    import transformers
    import trl

    base = base_model_dir(args.base)
    g = grpo_config(args.warmup + args.steps)
    print(f"CPU {cpu_name()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, trl {trl.__version__}")
    print(f"P={g.prompts_per_step} x G={g.group_size} = {g.prompts_per_step * g.group_size} completions/step, "
          f"max {g.sampling.max_new_tokens} new tokens, T={g.sampling.temperature}, top_p={g.sampling.top_p}, lr={g.lr}, beta={g.beta}, "
          f"mu={g.mu}, micro-batch {g.micro_batch}, {args.warmup} warm-up + {args.steps} timed steps")
    tmp = Path(tempfile.mkdtemp(prefix="grpo-vs-trl-"))
    try:
        dirs = {"qwen": write_dense_model(base, tmp / "qwen", args.qwen_intermediate), "deepseek": base}
        print(f"models: qwen = random Qwen2 (intermediate {args.qwen_intermediate}) in {dirs['qwen']}, "
              f"deepseek = {base}", flush=True)
        results = {}
        for model in MODELS:
            for fw in FRAMEWORKS:
                results[model, fw] = run_worker(fw, dirs[model], args)
                print(f"{model} {fw}: done in {results[model, fw]['wall']:.0f}s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    speedup = print_table(results)
    print(f"speedup {speedup:.2f}")


if __name__ == "__main__":
    main()
