"""`r1lab ablate`: the RL algorithms users reach for, side by side, on a laptop.

    r1lab ablate [recipe.yaml] ['variants=[grpo,dr_grpo]'] ['seeds=[0,1]'] [zero.grpo.steps=8 ...]

Every variant is the same R1-Zero run (`zero`: the task, the prompts, the number of steps, the
evaluation; by default `ablation_recipe`) with its `grpo` settings set as the paper that named it
has them (`VARIANTS`), and runs once per seed. By default every variant starts from one shared
warm-up run (`warmup`: the demo's recipe, plain GRPO, cut at step 26, where its answers have turned
to reasoning), so that what the variants are compared on is how they change reasoning answers,
not whether a run happens to leave direct 15-token guessing (run from the built-in base for 20
steps, the runs split by seed into those that reason and those that guess, which swamps every
difference between the losses: docs/results.md). `zero.base=builtin` (or a model directory)
skips the warm-up. A run is a stage of stages/chain.py under run_dir/<variant>-seed<seed>/ (the
warm-up under run_dir/warmup/), so a rerun skips the runs already done and continues a preempted
one. Then `ablate.json` (every run's numbers) and `report.md`: per variant, the mean and the spread
(min..max) across seeds of held-out pass@1 and cons@k, the mean length of correct and of
incorrect answers with how many answers each mean is over, the share of answers cut off at the
length limit, the policy's entropy over the last quarter of steps, the samples generated (dynamic
sampling draws more), and the training time; `lengths.png` (mean length of correct and incorrect
answers per variant) and `pass1.png`. The report checks Dr. GRPO's finding (arXiv 2503.20783 §3):
GRPO's per-sequence mean lets incorrect answers grow longer than Dr. GRPO's constant normaliser
does. Departure from that paper: a few steps from a shared checkpoint on a 2-core CPU, not
hundreds of steps from a base model; lengths are capped at 768 tokens, so an answer that grows
past it is counted at the cap (the truncated share is reported beside it).

Every variant updates twice per rollout (`mu` = 2): at μ = 1 the ratio is 1 at every token, so
GSPO's sequence-level ratio is GRPO's per-sequence mean and CISPO's weight is constant; only
updates on data the policy has moved away from tell the losses apart.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from r1lab.errors import UserError
from r1lab.runtime.files import write_atomically, write_json
from r1lab.stages.chain import ZeroConfig, fingerprint, rl_stage, stage, start

# name -> the `grpo` settings its paper uses (on top of the shared recipe), and the paper
VARIANTS: dict[str, tuple[dict, str]] = {
    "grpo": ({}, "GRPO (DeepSeekMath arXiv 2402.03300): group z-score, per-sequence mean, PPO-clip"),
    "dr_grpo": ({"advantage": "dr_grpo", "aggregation": "constant"},
                "Dr. GRPO (arXiv 2503.20783): centred rewards, a constant normaliser"),
    "dapo": ({"eps_high": 0.28, "aggregation": "token_mean", "resample_rounds": 2, "overlong_buffer": -4},
             "DAPO (arXiv 2503.14476): clip-higher 0.28, token mean, dynamic sampling, soft overlong punishment "
             "over the last quarter of the length"),
    "gspo": ({"loss": "gspo", "eps_low": 3e-4, "eps_high": 4e-4},
             "GSPO (arXiv 2507.18071): one length-normalised ratio per sequence, clipped to [1-3e-4, 1+4e-4]"),
    "cispo": ({"loss": "cispo", "aggregation": "token_mean", "eps_low": 1.0, "eps_high": 1.0},
              "CISPO (arXiv 2506.13585): clipped detached ratios (at most 2, no lower bound) on a token-mean "
              "REINFORCE loss"),
    "rloo": ({"advantage": "rloo"}, "RLOO (arXiv 2402.14740): the leave-one-out baseline"),
    "reinforce_pp": ({"advantage": "reinforce_pp", "aggregation": "token_mean"},
                     "REINFORCE++-baseline (arXiv 2501.03262): group mean removed, normalised over the batch"),
}


def warmup_recipe() -> ZeroConfig:
    """The shared start: the demo's R1-Zero run (signs, plain GRPO at μ = 1, 768 tokens) for its
    first 26 steps, by which its answers have turned to reasoning (the demo's step 26: 480 tokens a
    completion, 73% reasoning, runs/results/zero/run/metrics.jsonl), evaluated as the variants are."""
    cfg = ZeroConfig(gate=False, save_every=1000)
    cfg.grpo.steps = 26
    cfg.data.n_test, cfg.eval.k, cfg.eval.pass_k = 100, 4, 0
    return cfg


def ablation_recipe() -> ZeroConfig:
    """The shared run: 6 GRPO steps at μ = 2 from the warm-up's policy (base "warmup"), the demo's
    completions of at most 768 tokens, a held-out set of 100 problems x 4 samples: few enough steps
    that wrong answers stay common (hundreds per variant) and the 14 runs fit in an hour."""
    cfg = warmup_recipe()
    cfg.base, cfg.grpo.steps, cfg.grpo.mu = "warmup", 6, 2
    return cfg


@dataclass
class AblateConfig:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # names in VARIANTS
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # each variant runs once per seed
    zero: ZeroConfig = field(default_factory=ablation_recipe)  # the R1-Zero run every variant shares
    # zero.base=warmup: every variant starts from this run's final policy (run once, seed its own)
    warmup: ZeroConfig = field(default_factory=warmup_recipe)
    run_dir: str = "runs/ablate-{time}"  # {time}: the start time; each run under <variant>-seed<seed>/

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise UserError(f"variants: expected names from {', '.join(VARIANTS)}, got {self.variants}")
        if len(set(self.seeds)) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds: expected distinct seeds, got {self.seeds}")
        for v in self.variants:
            variant(self.zero, v, self.seeds[0]).validate()
        if self.zero.base == "warmup":
            self.warmup.validate()


def variant(zero: ZeroConfig, name: str, seed: int) -> ZeroConfig:
    """The shared run with variant `name`'s settings and `seed`."""
    settings = dict(VARIANTS[name][0])
    if settings.get("overlong_buffer", 0) < 0:  # a fraction of the length: -4 means the last quarter
        settings["overlong_buffer"] = zero.grpo.sampling.max_new_tokens // -settings["overlong_buffer"]
    return replace(zero, seed=seed, grpo=replace(zero.grpo, **settings))


def run_ablate(cfg: AblateConfig, log=print) -> dict:
    cfg.validate()
    run = start(cfg, log)
    base, warm = cfg.zero.base, None
    if base == "warmup":
        warm = stage(run, "warmup", fingerprint(cfg.warmup),
                     lambda d, resume: rl_stage(cfg.warmup, cfg.warmup.base, d, log, resume), log, "ablate")
        base = warm["model"]
    after = [warm["key"]] if warm else []
    rows = {}
    for name in cfg.variants:
        for seed in cfg.seeds:
            zero = variant(cfg.zero, name, seed)
            rec = stage(run, f"{name}-seed{seed}", fingerprint(zero, *after),
                        lambda d, resume, zero=zero: rl_stage(zero, base, d, log, resume), log, "ablate")
            rows.setdefault(name, []).append(measures(rec, run / f"{name}-seed{seed}" / "run"))
    result = {"variants": {n: {"settings": VARIANTS[n][0], "paper": VARIANTS[n][1], "runs": r} for n, r in rows.items()},
              "seeds": cfg.seeds, "k": cfg.zero.eval.k, "warmup": warm_row(warm) if warm else None}
    write_json(run / "ablate.json", result)
    plot(rows, run)
    write_atomically(run / "report.md", report(result))
    log(f"ablate: wrote {run}/report.md")
    return result


def measures(rec: dict, run: Path) -> dict:
    """One run's row: its final evaluation and what its training records say."""
    final = rec["final"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    late = records[-max(1, len(records) // 4):]
    k = next(key for key in final if key.startswith("cons@"))
    return {"pass@1": final["pass@1"], "cons@k": final[k], "mean_length": final["mean_length"],
            "length_correct": final["mean_length_correct"], "length_incorrect": final["mean_length_incorrect"],
            "correct": final["n_correct"], "incorrect": final["n_incorrect"], "truncated": final["truncation_rate"],
            "entropy": statistics.mean(r["entropy"] for r in late),
            "generations": sum(r.get("generations", 0) for r in records), "train_seconds": rec["train_seconds"]}


def warm_row(rec: dict) -> dict:
    """The warm-up's steps and the held-out measures of the policy every variant starts from (its stage record)."""
    f = rec["final"]
    return {"steps": rec["steps"], "pass@1": f["pass@1"], "mean_length": f["mean_length"],
            "length_incorrect": f["mean_length_incorrect"], "incorrect": f["n_incorrect"],
            "truncated": f["truncation_rate"], "self_check": f["self_check_rate"]}


def spread(values: list[float | None], spec: str = ".3f") -> str:
    """mean (min..max) over seeds."""
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    mean = format(statistics.mean(known), spec)
    return mean if len(known) == 1 else f"{mean} ({format(min(known), spec)}..{format(max(known), spec)})"


COLUMNS = [("pass@1", ".3f"), ("cons@k", ".3f"), ("length_correct", ".0f"), ("length_incorrect", ".0f"),
           ("truncated", ".2f"), ("entropy", ".3f"), ("generations", ".0f"), ("train_seconds", ".0f")]


def report(result: dict) -> str:
    k = result["k"]
    header = ["variant", "pass@1", f"cons@{k}", "length correct (n)", "length incorrect (n)", "truncated", "entropy", "samples",
              "training s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, v in result["variants"].items():
        runs = v["runs"]
        cells = {c: spread([r[c] for r in runs], f) for c, f in COLUMNS}
        lines.append(f"| {name} | {cells['pass@1']} | {cells['cons@k']} | {cells['length_correct']} "
                     f"({sum(r['correct'] for r in runs)}) | {cells['length_incorrect']} "
                     f"({sum(r['incorrect'] for r in runs)}) | {cells['truncated']} | {cells['entropy']} | {cells['generations']} | "
                     f"{cells['train_seconds']} |")
    papers = "\n".join(f"- `{n}`: {v['paper']}" for n, v in result["variants"].items())
    return "\n\n".join(["# RL algorithms, side by side (`r1lab ablate`)",
                        f"Mean over seeds {result['seeds']} (min..max in brackets); held-out pass@1 and cons@{k} "
                        f"over {k} samples per problem at T = 0.6, top-p 0.95; lengths in tokens, with the number of "
                        "answers behind each mean (all seeds); truncated: the share of answers cut off at the length "
                        "limit; entropy: the policy's, over the last quarter of steps.", starting_point(result.get("warmup")),
                        "\n".join(lines), papers, "![pass@1](pass1.png)\n\n![lengths](lengths.png)",
                        "## Dr. GRPO's finding\n\n" + dr_grpo_check(result)]) + "\n"


def starting_point(w: dict | None) -> str:
    """Where every variant started."""
    if w is None:
        return "Every variant starts from the same base model."
    return (f"Every variant starts from the warm-up's policy ({w['steps']} steps of plain GRPO, run once): held-out "
            f"pass@1 {w['pass@1']:.3f}, mean length {w['mean_length']:.0f} tokens, incorrect answers "
            f"{fmt(w['length_incorrect'])} tokens (over {w['incorrect']}), truncated {w['truncated']:.2f}, "
            f"self-check rate {w['self_check']:.2f}.")


def dr_grpo_check(result: dict) -> str:
    """Does GRPO's per-sequence mean leave incorrect answers longer than Dr. GRPO's constant does?"""
    v = result["variants"]
    if "grpo" not in v or "dr_grpo" not in v:
        return "Needs both the grpo and the dr_grpo variants."
    g, d = ([r["length_incorrect"] for r in v[n]["runs"] if r["length_incorrect"] is not None] for n in ("grpo", "dr_grpo"))
    n_g, n_d = (sum(r["incorrect"] for r in v[n]["runs"]) for n in ("grpo", "dr_grpo"))
    if not g or not d:
        return "No incorrect answers to compare."
    apart = min(g) > max(d)
    verdict = ("reproduced: every GRPO seed's incorrect answers are longer than every Dr. GRPO seed's"
               if apart else "not reproduced here: the seeds' ranges overlap" if max(g) >= min(d) and min(g) <= max(d)
               else "reversed: Dr. GRPO's incorrect answers are longer")
    per_seed = "; ".join(f"seed {s}: GRPO {fmt(a['length_incorrect'])}, Dr. GRPO {fmt(b['length_incorrect'])}"
                         + (f" (truncated {a['truncated']:.2f} and {b['truncated']:.2f})" if "truncated" in a else "")
                         for s, a, b in zip(result["seeds"], v["grpo"]["runs"], v["dr_grpo"]["runs"]))
    w = result.get("warmup")
    before = f" (at the start, the warm-up's policy: {fmt(w['length_incorrect'])})" if w else ""
    return (f"Mean length of incorrect answers{before}: GRPO {spread(g, '.0f')} over {n_g} answers, Dr. GRPO "
            f"{spread(d, '.0f')} over {n_d}: {verdict}. Seed by seed (the same prompts and samples' seeds): "
            f"{per_seed}.")


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def plot(rows: dict[str, list[dict]], run: Path) -> None:
    names = list(rows)
    for filename, title, series in (("pass1.png", "Held-out pass@1", [("pass@1", "pass@1")]),
                                    ("lengths.png", "Mean length of held-out answers",
                                     [("length_correct", "correct"), ("length_incorrect", "incorrect")])):
        fig = Figure(figsize=(max(6, 1.1 * len(names)), 3.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        width = 0.8 / len(series)
        for j, (key, label) in enumerate(series):
            for i, name in enumerate(names):
                values = [r[key] for r in rows[name] if r[key] is not None]
                if values:
                    x = i + (j - (len(series) - 1) / 2) * width
                    ax.bar(x, statistics.mean(values), width, color=f"C{j}", label=label if i == 0 else None)
                    ax.plot([x] * len(values), values, "k.", ms=4)  # each seed
        ax.set(title=title + " (bars: mean over seeds; dots: each seed)", xticks=range(len(names)), xticklabels=names)
        if len(series) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run / filename, dpi=100)
