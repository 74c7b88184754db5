"""Regenerate docs/results.md: every result table the README and docs quote, measured on the code as
it is, with its commands, the commit, the date, the machine and its load.

    python bench/results.py zero|pipeline|distill|eval|bench|serve|ablate   (make results-<section>; make results: all)

Each section runs its commands from scratch (its run directories under runs/results/ are removed
first; the cached base model is reused, since its cache key is its whole config), then replaces its
own part of docs/results.md, between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, and
leaves the other sections as they were. Each records the commit ("+ local changes" when the tree
is dirty), the date, the CPU, the seconds it took, and /proc/loadavg's 1-minute load before and
after: another job on the two cores slows a run and skews a speed ratio, and the load says how far
to trust it. The commands run through the `r1lab` CLI and the bench scripts exactly as a user
would type them, under `flock /tmp/r1lab-cpu.lock` when `make` runs them.

  zero      `r1lab zero` (the demo's recipe: the signs task, where checking pays), twice with the
            same seed: the before/after table with the self-verification measures, issue 17's bars
            checked on it, the training curve at a few steps, pass@k of base and final policy to
            large k, and whether the rerun's summary and per-step metrics equal the first run's
            (timings aside); then the base pretrained again from scratch
            into a fresh cache: its time, and whether its weights equal the cached base's;
  pipeline  `r1lab pipeline` (the arithmetic task), with seeds 0 and 1: R1-Zero and the four stages,
            one row per model, the paper's findings checked on them, and stage 2's language-mixing
            contrast (with and without the language reward) on both seeds;
  distill   `r1lab distill --compare-rl`: teacher, distilled student, RL-only student, base student;
  eval      `r1lab eval` of the zero section's final checkpoint on its held-out signs problems, and `r1lab grade
            --task code` of every HumanEval and MBPP reference solution in ../shared/data (run
            `make results-zero` first);
  bench     bench/grpo_vs_trl.py three times (median speedup), bench/generate.py,
            bench/verifier.py, bench/lora_memory.py and bench/fsdp_memory.py, each one's own report
            verbatim;
  serve     bench/serve.py: `r1lab serve` against `transformers serve` on the zero section's final
            checkpoint, 1, 4 and 16 streaming clients (run `make results-zero` first);
  ablate    `r1lab ablate` with its defaults: 7 RL algorithms x 2 seeds on the R1-Zero recipe, its
            report's table and Dr. GRPO's length finding checked on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
RUNS = ROOT / "runs" / "results"
BIN = Path(sys.executable).parent  # the venv's r1lab and python
WALL_CLOCK = ("time_", "gen_tokens_per_s", "seconds", "tokens_per_s")
HEADER = """# Results

The measured side of r1lab's reproduction of DeepSeek-R1 (arXiv 2501.12948). Every table below is
written by `make results` (`bench/results.py`; one target per section, e.g.
`make results-zero`), which runs the commands shown on the code of the commit shown, on this
project's 2-core CPU machine. A section is replaced whole when its target runs again; the others
stay as they were, each with its own commit and date. The README quotes only numbers from here.
"""


# --- running and recording ---------------------------------------------------------------------


def sh(cmd: list[str], log: Path) -> str:
    """Run `cmd` in the repository root, stdout and stderr to `log`; return stdout; fail loudly."""
    print("$", " ".join(cmd), flush=True)
    with log.open("w") as err:
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    log.with_suffix(".out").write_text(done.stdout)
    if done.returncode != 0:
        sys.exit(f"results: {' '.join(cmd)} exited {done.returncode}; see {log}")
    return done.stdout


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/results.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()  # results.md: written here
    return head + (" + local changes" if dirty else "")


def provenance(commands: list[str], seconds: float, load_before: float) -> str:
    lines = "\n".join(f"    {c}" for c in commands)
    return (f"Commands:\n\n{lines}\n\nCommit {commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"{machine()}; {seconds:.0f} s; 1-minute load {load_before:.2f} before, {load1():.2f} after.")


def write_section(name: str, body: str) -> None:
    """Replace section `name` of docs/results.md (or add it), keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    if "<!-- results:" in text:  # the header as it is now, then the sections as they were
        text = HEADER + "\n" + text[text.index("<!-- results:"):]
    block = f"<!-- results:{name} -->\n{body.strip()}\n<!-- /results:{name} -->"
    pattern = re.compile(rf"<!-- results:{name} -->.*?<!-- /results:{name} -->", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(f"results: wrote the {name} section of {RESULTS.relative_to(ROOT)}")


def fresh(name: str) -> Path:
    d = RUNS / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                     ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def num(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def without_clock(obj):
    """`obj` with every wall-clock measurement removed: what a rerun with the same seed must equal."""
    if isinstance(obj, dict):
        return {k: without_clock(v) for k, v in obj.items() if not any(k.startswith(w) or k.endswith(w) for w in WALL_CLOCK)
                and k not in ("wall_seconds", "train_seconds", "seconds", "run_dir", "final_model")}  # paths differ
    if isinstance(obj, list):
        return [without_clock(v) for v in obj]
    return obj


def s_base(run: Path) -> str:
    """The base model directory a zero run trained from (its summary's base_model)."""
    return json.loads((run / "summary.json").read_text())["base_model"]


def weights_equal(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


# --- sections ------------------------------------------------------------------------------------


def zero() -> str:
    d = fresh("zero")
    rel = d.relative_to(ROOT)
    commands = [f"r1lab zero run_dir={rel}/run", f"r1lab zero run_dir={rel}/rerun",
                f"r1lab pretrain cache_dir={rel}/cache"]
    t0, load = time.time(), load1()
    for c, name in zip(commands, ("run", "rerun", "pretrain")):
        sh([str(BIN / "r1lab"), *c.split()[1:]], d / f"{name}.log")
    cached = json.loads((ROOT / s_base(d / "run")).joinpath("pretrain.json").read_text())
    fresh_base = json.loads(next((d / "cache").glob("base-*/pretrain.json")).read_text())
    same_base = weights_equal(ROOT / s_base(d / "run"), next((d / "cache").glob("base-*/pretrain.json")).parent)
    s = json.loads((d / "run" / "summary.json").read_text())
    again = json.loads((d / "rerun" / "summary.json").read_text())
    steps = [json.loads(line) for line in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    steps_again = [json.loads(line) for line in (d / "rerun" / "metrics.jsonl").read_text().splitlines()]
    same_summary = without_clock({**s, "config": None}) == without_clock({**again, "config": None})
    step_diffs = {}  # key -> largest relative difference between the two runs' per-step records
    for a, b in zip(without_clock(steps), without_clock(steps_again)):
        for key in a:
            if a[key] != b.get(key):
                rel = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12) if isinstance(a[key], float) else float("inf")
                step_diffs[key] = max(step_diffs.get(key, 0.0), rel)
    k = s["final"]["k"]
    base, final = s["base"], s["final"]

    def row(name, m):
        return [name, num(m["pass@1"]), num(m[f"cons@{k}"]), num(m["pass@k"][str(k)]), num(m["format_rate"], ".2f"),
                num(m["mean_length"], ".1f"), num(m["self_check_rate"]), num(m["self_check_rate_reasoning"]),
                num(m["attempts_mean"], ".2f"), num(m["first_candidate_accuracy"]), num(m["rejected_accuracy"]),
                num(m["reflection_rate"])]

    before_after = table(["model", "pass@1", f"cons@{k}", f"pass@{k}", "format rate", "mean length (tokens)",
                          "self-check rate", "self-check rate among reasoning answers", "candidates per answer",
                          "first-candidate accuracy", "accuracy after rejecting a candidate", "reflection rate"],
                         [row("base (pretrained by r1lab)", base), row(f"after {s['steps']} GRPO steps", final)])
    ratio = lambda a, b: a / b if a is not None and b else float("inf") if a else None  # noqa: E731
    checks = {
        "pass@1 rises by at least 25 points": final["pass@1"] - base["pass@1"] >= 0.25,
        "the base's self-check rate is at most 0.05": base["self_check_rate"] <= 0.05,
        "the final policy's self-check rate is at least 0.30": final["self_check_rate"] >= 0.30,
        "self-checking among reasoning answers at least triples":
            (ratio(final["self_check_rate_reasoning"], base["self_check_rate_reasoning"]) or 0) >= 3,
        "candidates per answer rise": final["attempts_mean"] > base["attempts_mean"],
        "mean length at least 1.5x the base's": final["mean_length"] >= 1.5 * base["mean_length"],
        "at least half the answers that rejected a candidate end right": (final["rejected_accuracy"] or 0) >= 0.5,
        "a rerun with the same seed gives the same numbers": same_summary and not step_diffs,
    }
    marks = sorted({1, 5, 10, 15, 20, 25, 30, 40, 50, 60, len(steps)} & set(range(1, len(steps) + 1)))
    curve = table(["step"] + [str(m) for m in marks],
                  [[label] + [num(steps[m - 1][key], spec) for m in marks] for key, label, spec in (
                      ("accuracy", "training-batch accuracy", ".2f"), ("len_mean", "mean completion length", ".0f"),
                      ("self_check_rate", "self-check rate", ".2f"), ("attempts_mean", "candidates per answer", ".2f"),
                      ("first_candidate_accuracy", "first-candidate accuracy", ".2f"),
                      ("reflection_rate", "reflection rate", ".2f"))])
    wide_base, wide_final = base.get("pass@k_large", {}), final.get("pass@k_large", {})
    ks = [j for j in (1, 2, 4, 8, 16, 32, 64, 128, 256) if str(j) in wide_base and str(j) in wide_final]
    pass_k = table(["k"] + [str(j) for j in ks], [["base"] + [num(wide_base[str(j)]) for j in ks],
                                                 ["final policy"] + [num(wide_final[str(j)]) for j in ks]]) if ks else ""
    notes = [f"Held-out: {final['problems']} problems of the test split, k = {k} samples each at T = "
             f"{s['config']['eval']['sampling']['temperature']}, top-p {s['config']['eval']['sampling']['top_p']}; "
             f"task `{s['config']['data']['task']}` {s['config']['data']['task_args']}.",
             f"Training: {s['train_seconds']:.0f} s of GRPO, {s['wall_seconds']:.0f} s wall-clock (base evaluation, "
             f"{s['steps']} steps, final evaluation, pass@k curves, report), base model cache "
             f"`{Path(s['base_model']).name}`.",
             f"The base: {cached['parameters'] / 1e6:.2f}M parameters ({cached['active'] / 1e6:.2f}M active per token), "
             f"pretrained by r1lab on {cached['tokens'] / 1e6:.2f}M tokens.",
             f"Pretraining the base again from scratch (`r1lab pretrain`, what a fresh clone's `make demo` does "
             f"first): {fresh_base['seconds']:.0f} s, final loss {fresh_base['final_loss']:.4f} (the cached base: "
             f"{cached['final_loss']:.4f}); its weights " +
             ("equal the cached base's bit for bit." if same_base else "**differ** from the cached base's."),
             "Rerun with the same seed: " + ("the same summary.json, every metric (timings aside); " if same_summary
                                             else "a **different** summary.json; ") +
             ("the same per-step metrics." if not step_diffs else "per-step metrics equal except " +
              ", ".join(f"{k} (at most {v:.1e} relative)" for k, v in sorted(step_diffs.items())) + ".")]
    return "\n\n".join([
        "## R1-Zero and the aha moment (the demo: `make demo`)", before_after,
        "The issue-17 bars, checked on these rows:",
        "\n".join(f"- {'yes' if ok else 'NO'}: {what}" for what, ok in checks.items()),
        "Training curve of the first run:", curve,
        f"Unbiased pass@k on the first {s['config']['eval']['pass_k_problems']} held-out problems "
        f"({s['config']['eval']['pass_k']} samples each):" if pass_k else "", pass_k,
        "\n".join(f"- {n}" for n in notes if n), provenance(commands, time.time() - t0, load)])


def pipeline() -> str:
    d = fresh("pipeline")
    rel = d.relative_to(ROOT)
    commands = [f"r1lab pipeline run_dir={rel}/run", f"r1lab pipeline run_dir={rel}/seed1 seed=1"]
    t0, load = time.time(), load1()
    for c, name in zip(commands, ("run", "seed1")):
        sh([str(BIN / "r1lab"), *c.split()[1:]], d / f"{name}.log")
    result = json.loads((d / "run" / "pipeline.json").read_text())
    other = json.loads((d / "seed1" / "pipeline.json").read_text())
    k = result["config"]["report"]["k"]
    rows = [[name, num(m["pass@1"]), num(m[f"cons@{k}"]), num(m["format_rate"], ".2f"), pct(m["language_mixing"]),
             ", ".join(f"{lang} {pct(v)}" for lang, v in m["language_mixing_by_lang"].items()),
             num(m["mean_length"], ".1f"), num(m["rm_score"], ".2f")] for name, m in result["rows"].items()]
    checks = "\n".join(f"- {'yes' if ok else 'NO'}: {what}" for what, ok in result["checks"].items())
    stages = ", ".join(f"{n} {r['seconds']:.0f} s" for n, r in result["stages"].items())
    stage2 = [name for name in result["rows"] if name.startswith("stage 2")]
    seeds = {0: result, 1: other}
    contrast = table(["seed"] + [f"{name}: mixing" for name in stage2] + ["R1-Zero: mixing", "final: pass@1"],
                     [[str(seed)] + [pct(r["rows"][name]["language_mixing"]) for name in stage2]
                      + [pct(r["rows"]["R1-Zero"]["language_mixing"]), num(list(r["rows"].values())[-1]["pass@1"])]
                      for seed, r in seeds.items()])
    spread = [other["checks"][what] for what in result["checks"]]
    return "\n\n".join([
        "## The R1 pipeline (`r1lab pipeline`, on the arithmetic task)",
        table(["model", "pass@1", f"cons@{k}", "format", "mixing zh/ja/ko", "by language", "mean length",
               "RM score (general)"], rows),
        f"Held-out: {result['config']['report']['problems']} problems x {k} samples; the reward model's held-out "
        f"pair accuracy {num(result['rm_held_out_accuracy'])}. The paper's findings, checked on these rows (seed 0):",
        checks, f"Stage times: {stages}.",
        "The language reward's effect over two seeds (the whole pipeline run again with `seed=1`: other RL "
        "prompts, cold-start data and sampling seeds, the same base):", contrast,
        f"Seed 1's checks: {sum(spread)} of {len(spread)} hold" + ("." if all(spread) else ": " + "; ".join(
            what for what, ok in other["checks"].items() if not ok) + " fail."),
        provenance(commands, time.time() - t0, load)])


def distill() -> str:
    d = fresh("distill")
    commands = [f"r1lab distill --compare-rl run_dir={d.relative_to(ROOT)}/run"]
    t0, load = time.time(), load1()
    sh([str(BIN / "r1lab"), *commands[0].split()[1:]], d / "run.log")
    result = json.loads((d / "run" / "distill.json").read_text())
    k = result["config"]["report"]["k"]
    rows = [[name, f"{m['params'] / 1e6:.2f}M ({m['active_params'] / 1e6:.2f}M)", num(m["pass@1"]),
             num(m[f"cons@{k}"]), pct(m["language_mixing"]), num(m["mean_length"], ".1f"),
             "given" if m["seconds"] is None else f"{m['seconds']:.0f} s"] for name, m in result["rows"].items()]
    checks = "\n".join(f"- {'yes' if ok else 'NO'}: {what}" for what, ok in result["checks"].items())
    traces = result["traces"]
    return "\n\n".join([
        "## Distillation (`r1lab distill --compare-rl`)",
        table(["model", "parameters (active)", "pass@1", f"cons@{k}", "mixing zh/ja/ko", "mean length",
               "training time"], rows),
        f"Traces: {traces['kept']} kept of {traces['total']} teacher samples (teacher accuracy "
        f"{pct(traces['accuracy'])}). The RL-only student trains for the distilled student's time (teacher "
        "sampling + SFT). The paper's findings, checked on these rows:",
        checks, provenance(commands, time.time() - t0, load)])


def evaluation() -> str:
    d = fresh("eval")
    summary = RUNS / "zero" / "run" / "summary.json"
    checkpoint = RUNS / "zero" / "run" / f"checkpoint-{json.loads(summary.read_text())['steps'] if summary.exists() else 0}"
    if not checkpoint.is_dir():
        sys.exit(f"results: {checkpoint.relative_to(ROOT)} is missing; run `make results-zero` first")
    rel, data = d.relative_to(ROOT), Path("../shared/data")
    base = Path(json.loads(summary.read_text())["base_model"])
    wide = "--data task:signs --limit 50 --k 256 --max-new-tokens 768 --batch-rows 512"
    commands = [f"r1lab eval {checkpoint.relative_to(ROOT)} --data task:signs --limit 200 --k 8 --max-new-tokens 768 "
                f"--batch-rows 256 --out {rel}/signs",
                f"r1lab eval {base} {wide} --out {rel}/wide-base",
                f"r1lab eval {checkpoint.relative_to(ROOT)} {wide} --out {rel}/wide-final",
                f"r1lab grade {data}/humaneval.jsonl --task code --pred-field canonical_solution --out {rel}/humaneval.jsonl",
                f"r1lab grade {data}/mbpp.jsonl --task code --pred-field answer --out {rel}/mbpp.jsonl"]
    t0, load = time.time(), load1()
    seconds = []
    for i, c in enumerate(commands):
        t = time.time()
        sh([str(BIN / "r1lab"), *c.split()[1:]], d / f"command{i}.log")
        seconds.append(time.time() - t)
    r = json.loads((d / "signs" / "results.json").read_text())
    k = r["k"]
    rows = [["all", r["problems"], num(r["pass@1"]), num(r["pass@k"][str(k)]), num(r["cons@k"]), num(r["mean_length"], ".1f"),
             pct(r["truncation_rate"])]]
    rows += [[f"lang {v}", m["problems"], num(m["pass@1"]), num(m["pass@k"][str(k)]), num(m["cons@k"]),
              num(m["mean_length"], ".1f"), pct(m["truncation_rate"])] for v, m in r.get("by_lang", {}).items()]
    code = []
    for name, secs in (("HumanEval", seconds[3]), ("MBPP", seconds[4])):
        graded = [json.loads(line) for line in (d / f"{name.lower()}.jsonl").read_text().splitlines()]
        code.append([name, f"{sum(g['correct'] for g in graded)} / {len(graded)}",
                     f"{sum(g['tests_passed'] for g in graded)} / {sum(g['tests_total'] for g in graded)}",
                     f"{len(graded) / secs:.0f}"])
    return "\n\n".join([
        "## Evaluation and grading (`r1lab eval`, `r1lab grade`)",
        f"The R1-Zero run's final checkpoint through `r1lab eval` on the held-out set `r1lab zero` evaluates on "
        f"(k = {k}, T = {r['settings']['sampling']['temperature']}, top-p {r['settings']['sampling']['top_p']}; "
        "its own sampling seeds, so the numbers are close to, not equal to, the zero section's):",
        table(["problems", "n", "pass@1", f"pass@{k}", f"cons@{k}", "mean length", "truncated"], rows),
        wide_table(d),
        "Every reference solution in ../shared/data run against its tests in the sandbox "
        "(`r1lab grade --task code`; a program is correct when every test passes):",
        table(["benchmark", "correct programs", "tests passed", "programs per second"], code),
        provenance(commands, time.time() - t0, load)])


def wide_table(d: Path) -> str:
    """pass@k to k = 256 of the base and the final policy on the first 50 held-out problems, and what it shows."""
    base, final = (json.loads((d / name / "results.json").read_text()) for name in ("wide-base", "wide-final"))
    ks = [j for j in (1, 2, 4, 8, 16, 32, 64, 128, 256) if str(j) in base["pass@k"]]
    rows = [[name] + [num(r["pass@k"][str(j)]) for j in ks] for name, r in (("base", base), ("final policy", final))]
    top = str(ks[-1])
    if final["pass@k"][top] > base["pass@k"][top] + 0.02:
        verdict = (f"RL raised pass@{top} as well as pass@1 ({num(base['pass@k'][top])} -> {num(final['pass@k'][top])}): "
                   "the final policy solves problems the base did not solve in 256 samples, a new capability at the "
                   "edge of competence (arXiv 2512.07783) and not selection alone (Yue et al. 2025).")
    elif final["pass@k"][top] < base["pass@k"][top] - 0.02:
        verdict = (f"RL raised pass@1 but lowered pass@{top} ({num(base['pass@k'][top])} -> {num(final['pass@k'][top])}): "
                   "selection, as Yue et al. 2025 argue: the base reaches more problems given enough samples.")
    else:
        verdict = (f"pass@1 went {num(base['pass@1'])} -> {num(final['pass@1'])} while pass@{top} stayed where the "
                   f"base's was ({num(base['pass@k'][top])} -> {num(final['pass@k'][top])}): selection, as Yue et al. 2025 "
                   "argue: the base could already reach these answers by sampling; RL made them its first try.")
    if base["pass@k"][top] >= 0.99:
        verdict += (" On this task that is guaranteed at large k: each problem has four candidate answers, and a base "
                    "that guesses reaches all four. What RL changed is how an answer is reached: by checking.")
    return "\n\n".join(["Selection or new capability: unbiased pass@k of the base and the final policy on the first 50 "
                        "held-out problems, 256 samples each (T = 0.6, top-p 0.95):",
                        table(["model"] + [f"pass@{j}" for j in ks], rows), verdict])


def bench() -> str:
    d = fresh("bench")
    py = str(BIN / "python")
    parts, t0, load = ["## Speed and memory (bench/)"], time.time(), load1()
    speedups = []
    for i in range(1, 4):
        out = sh([py, "bench/grpo_vs_trl.py"], d / f"grpo_vs_trl_{i}.log")
        speedups.append(float(re.findall(r"^speedup ([\d.]+)$", out, re.M)[-1]))
        if i == 1:
            first = out
    median = statistics.median(speedups)
    parts += ["### GRPO step: r1lab against TRL's GRPOTrainer (`python bench/grpo_vs_trl.py`, three runs)",
              f"Speedups (r1lab's samples/s over TRL's, the smaller of the two models' ratios): "
              f"{', '.join(f'{x:.2f}' for x in speedups)}; median **{median:.2f}**. The first run's report:",
              "```text\n" + first.strip() + "\n```"]
    for script, title in (("generate.py", "Generation: r1lab's sampler against `model.generate`"),
                          ("verifier.py", "Grading: r1lab's verifier against math-verify"),
                          ("lora_memory.py", "LoRA memory: adapters against a full fine-tune"),
                          ("fsdp_memory.py", "Sharded GRPO memory: parallel=fsdp2 against ddp, 2 ranks")):
        out = sh([py, f"bench/{script}"], d / f"{script}.log")
        parts += [f"### {title} (`python bench/{script}`)", "```text\n" + out.strip() + "\n```"]
    commands = ["python bench/grpo_vs_trl.py  (3 times)", "python bench/generate.py", "python bench/verifier.py",
                "python bench/lora_memory.py", "python bench/fsdp_memory.py"]
    parts.append(provenance(commands, time.time() - t0, load))
    return "\n\n".join(parts)


def serve() -> str:
    """bench/serve.py on the zero section's final checkpoint: r1lab serve against transformers serve."""
    fresh("serve")
    summary = RUNS / "zero" / "run" / "summary.json"
    if not summary.exists():
        sys.exit("results: runs/results/zero/run is missing; run `make results-zero` first")
    checkpoint = (RUNS / "zero" / "run" / f"checkpoint-{json.loads(summary.read_text())['steps']}").relative_to(ROOT)
    command = f"python bench/serve.py --model {checkpoint} --peer-mode both"
    t0, load = time.time(), load1()
    out = sh([str(BIN / "python"), *command.split()[1:]], RUNS / "serve" / "serve.log")
    return "\n\n".join([
        "## Serving: `r1lab serve` against `transformers serve` (`python bench/serve.py`)",
        "The R1-Zero run's final checkpoint behind each server in turn, on loopback, driven by the same streaming "
        "chat load (each client sends its requests one after another; temperature 0, so both servers generate "
        "the same tokens). transformers serve runs both with and without its continuous batching; the speedup "
        "is over the faster of the two at the top load.",
        "```text\n" + out.strip() + "\n```", provenance([command], time.time() - t0, load)])


def ablate() -> str:
    """`r1lab ablate` with its defaults: its report's table, the variants' papers and the Dr. GRPO check."""
    d = fresh("ablate")
    command = f"r1lab ablate run_dir={d.relative_to(ROOT)}/run"
    t0, load = time.time(), load1()
    sh([str(BIN / "r1lab"), *command.split()[1:]], d / "ablate.log")
    report = (d / "run" / "report.md").read_text()
    body = report.split("\n", 1)[1].replace("![pass@1](pass1.png)", "").replace("![lengths](lengths.png)", "")
    body = body.replace("## Dr. GRPO's finding", "### Dr. GRPO's finding")
    cfg = json.loads(next((d / "run").glob("*-seed*/run/summary.json")).read_text())["config"]
    return "\n\n".join([
        "## RL algorithms side by side (`r1lab ablate`)",
        f"Each variant is the R1-Zero recipe (task `{cfg['data']['task']}` {cfg['data']['task_args']}, "
        f"{cfg['grpo']['steps']} GRPO steps at μ = {cfg['grpo']['mu']}, {cfg['grpo']['prompts_per_step']} prompts x "
        f"{cfg['grpo']['group_size']} samples a step, completions of at most {cfg['grpo']['sampling']['max_new_tokens']} "
        "tokens) from the same warm-up run's policy (the demo's recipe, plain GRPO, to the step where its answers "
        "have turned to reasoning), with the same prompts per seed; few steps, so that wrong answers stay common "
        "and the length of incorrect answers is a mean over hundreds of them. Warming up first is what makes the "
        "comparison one between reasoning answers: from the built-in base, 20 steps split the runs by seed into "
        "those that reason and those that keep guessing in 15 tokens (this section on commit 1677f20). "
        "The figures (pass1.png, lengths.png) are in the run directory.",
        re.sub(r"\n{3,}", "\n\n", body.strip()), provenance([command], time.time() - t0, load)])


SECTIONS = {"zero": zero, "pipeline": pipeline, "distill": distill, "eval": evaluation, "bench": bench, "serve": serve,
            "ablate": ablate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=list(SECTIONS))
    args = parser.parse_args()
    write_section(args.section, SECTIONS[args.section]())


if __name__ == "__main__":
    main()
