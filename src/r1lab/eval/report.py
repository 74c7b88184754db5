"""The R1-Zero run report: report.md plus four PNG plots, written into the run directory.

    write_report(run, summary, history, problems, base_samples, final_samples)

`run_zero` calls it last, with `summary` (summary.json: the base and final evaluation metrics
from `metrics.summarize`), `history` (one record per GRPO step, as in metrics.jsonl) and a few
held-out problems with one base and one final completion each. The plots are the small-scale
analogues of the paper's training curves (DeepSeek-R1 §2.2): accuracy during RL (Figure 2),
response length (Figure 3), the rate of reflection phrases (the "aha moment"), and pass@k of the
base model against the final policy.

A report is the last thing a long run writes, so nothing here may crash it: history can be
empty (0 steps), any number can be missing or None, and every missing number is written "n/a".
Each plot is always written, with a note in place of curves when there is nothing to draw, so
that every link in report.md resolves. Figures use matplotlib's object API on an Agg canvas, so
no global backend or pyplot state is touched.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from r1lab.runtime.files import write_atomically

PLOTS = {
    "reward_accuracy.png": "Reward and accuracy on the training batch at each step (cf. R1 Figure 2).",
    "response_length.png": "Mean completion length in tokens at each step, max faint (cf. R1 Figure 3).",
    "reflection.png": "Share of completions with a reflection phrase ('wait', 'let me check', and their "
    "zh/ja/ko equivalents) and share that reason inside the think block.",
    "aha.png": "The aha moment: share of completions that check a candidate (evaluate it, compare it with the "
    "target), candidates tried per completion, accuracy and mean length, at each step (tasks that can tell a check).",
    "pass_at_k.png": "Unbiased pass@k on the held-out problems, base model against final policy.",
    "drift.png": "Rollout-vs-trainer drift: how far the sampler's own log-probs of the tokens it drew are from the "
    "trainer's, mean and max absolute difference per step (log scale; float32 rounding is ~1e-7).",
}
CHECK_ROWS = {  # summary keys of the self-verification table (tasks/attempts.py)
    "self_check_rate": "self-check rate (a candidate evaluated and compared with the target)",
    "self_check_rate_reasoning": "self-check rate among answers that reason",
    "attempts_mean": "candidates tried per answer",
    "first_candidate_accuracy": "first-candidate accuracy",
    "rejection_rate": "share of answers that rejected a wrong candidate",
    "rejected_accuracy": "accuracy of answers that rejected a wrong candidate",
    "unrejected_accuracy": "accuracy of the other answers",
    "reflection_rate": "reflection-phrase rate ('wait', 'recheck', ...)",
    "pass@1": "pass@1",
    "mean_length": "mean length (tokens)",
}
TIMINGS = {"time_generate": "generate", "time_score": "score", "time_update": "update", "time_step": "whole step"}


def write_report(run: Path, summary: dict, history: list[dict], problems: list,
                 base_samples: list[str], final_samples: list[str]) -> Path:
    """Write run/report.md and the PNG plots it links; return the path of report.md."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    history = [r for r in history or [] if isinstance(r, dict)]
    base, final = _metrics(summary, "base"), _metrics(summary, "final")
    plot_reward_accuracy(history, run / "reward_accuracy.png")
    plot_response_length(history, run / "response_length.png")
    plot_reflection(history, run / "reflection.png")
    plot_aha(history, run / "aha.png")
    plot_pass_at_k(base, final, run / "pass_at_k.png")
    plot_drift(history, run / "drift.png")
    checking = base.get("self_check_rate") is not None or final.get("self_check_rate") is not None
    sections = [
        "# R1-Zero run report",
        run_paragraph(summary or {}, base, final, len(history)),
        "## Before and after RL\n\n" + before_after_table(base, final),
        *(["## Self-verification\n\n" + self_check_table(base, final),
           "## Length by difficulty\n\n" + difficulty_table(base, final)] if checking else []),
        "## Training curves\n\n" + "\n\n".join(f"![{name}]({name})\n\n{caption}" for name, caption in PLOTS.items()),
        "## Honest caveat\n\n" + honest_caveat(base, final),
        "## Time per step\n\n" + timing_table(history),
        "## Sample completions\n\n" + samples_section(problems or [], base_samples or [], final_samples or []),
        *(["## The final policy catching its own mistake\n\n" + aha_section((summary or {}).get("aha_samples"))]
          if checking else []),
    ]
    path = run / "report.md"
    write_atomically(path, "\n\n".join(sections) + "\n")
    return path


# --- numbers ---------------------------------------------------------------------------------


def _metrics(summary: dict | None, which: str) -> dict:
    m = (summary or {}).get(which)
    return m if isinstance(m, dict) else {}


def _num(x) -> float | None:
    """x as a finite float, or None (None, strings, NaN and inf are all "no number")."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def fmt(x, spec: str = ".3f") -> str:
    v = _num(x)
    return "n/a" if v is None else format(v, spec)


def pass_curve(m: dict, key: str = "pass@k") -> dict[int, float]:
    """{k: pass@k} from a metrics dict's "pass@k" (string keys), numeric entries only, sorted by k."""
    raw = m.get(key)
    curve = {}
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        if str(key).isdigit() and int(key) > 0 and _num(value) is not None:
            curve[int(key)] = float(value)
    return dict(sorted(curve.items()))


def widest_curve(m: dict) -> dict[int, float]:
    """The pass@k curve to the largest k measured: the base's extra many-sample curve if any."""
    return pass_curve(m, "pass@k_large") or pass_curve(m)


def reasoning_style(m: dict) -> dict:
    styles = m.get("styles")
    r = styles.get("reasoning") if isinstance(styles, dict) else None
    return r if isinstance(r, dict) else {}


def series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key` over the history, skipping records where it is missing or None."""
    steps, values = [], []
    for i, record in enumerate(history):
        v = _num(record.get(key))
        if v is not None:
            step = _num(record.get("step"))
            steps.append(i + 1 if step is None else step)
            values.append(v)
    return steps, values


# --- plots -----------------------------------------------------------------------------------


def _figure(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, ax, path: Path, empty_note: str) -> None:
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, empty_note, ha="center", va="center", transform=ax.transAxes, color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reward_accuracy(history: list[dict], path: Path) -> None:
    fig, ax = _figure("Reward and accuracy during GRPO", "step", "mean over the step's completions")
    for key, style in (("reward", dict(lw=2, label="reward (total)")), ("accuracy", dict(lw=2, label="accuracy"))):
        steps, values = series(history, key)
        if steps:
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, **style)
    names = sorted({k for r in history for k in r if k.startswith("reward/")})
    for key in names:
        steps, values = series(history, key)
        if steps:
            ax.plot(steps, values, lw=1, ls="--", label=key)
    _save(fig, ax, path, "no steps logged")


def plot_response_length(history: list[dict], path: Path) -> None:
    fig, ax = _figure("Response length during GRPO", "step", "completion tokens")
    steps, values = series(history, "len_mean")
    if steps:
        ax.plot(steps, values, lw=2, label="mean")
    steps, values = series(history, "len_max")
    if steps:
        ax.plot(steps, values, lw=1, alpha=0.3, color="gray", label="max")
    _save(fig, ax, path, "no steps logged")


def plot_reflection(history: list[dict], path: Path) -> None:
    fig, ax = _figure("Reflection and reasoning during GRPO", "step", "share of completions")
    for key, label in (("reflection_rate", "reflection phrase"), ("reasoning_rate", "reasons in <think>")):
        steps, values = series(history, key)
        if steps:
            ax.plot(steps, values, lw=2, label=label)
    ax.set_ylim(-0.03, 1.03)
    _save(fig, ax, path, "no steps logged")


def plot_drift(history: list[dict], path: Path) -> None:
    fig, ax = _figure("Rollout-vs-trainer drift during GRPO", "step", "|log-prob difference|")
    for key, label, lw in (("drift_logp_mean", "mean", 2), ("drift_logp_max", "max", 1)):
        steps, values = series(history, key)
        if steps and max(values) > 0:
            ax.plot(steps, [max(v, 1e-12) for v in values], lw=lw, label=label)
    if ax.lines:
        ax.set_yscale("log")
    _save(fig, ax, path, "no drift logged (the rollout carried no log-probs)")


def plot_aha(history: list[dict], path: Path) -> None:
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.set(title="Checking and accuracy during GRPO", xlabel="step", ylabel="share of completions")
    right.set(title="Attempts and length during GRPO", xlabel="step", ylabel="candidates per completion")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    for key, label in (("self_check_rate", "checks a candidate"), ("accuracy", "accuracy"),
                       ("first_candidate_accuracy", "first candidate right"), ("reflection_rate", "says 'wait'")):
        steps, values = series(history, key)
        if steps:
            left.plot(steps, values, lw=2 if key in ("self_check_rate", "accuracy") else 1, label=label)
    left.set_ylim(-0.03, 1.03)
    steps, values = series(history, "attempts_mean")
    if steps:
        right.plot(steps, values, lw=2, color="C4", label="candidates tried")
        twin = right.twinx()
        length_steps, lengths = series(history, "len_mean")
        twin.plot(length_steps, lengths, lw=1, color="gray", label="mean length (tokens, right axis)")
        twin.set_ylabel("completion tokens")
        right.legend(handles=right.lines + twin.lines, fontsize=8)
    if left.lines:
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no self-check metrics logged (a task that cannot tell a check)", ha="center",
                  va="center", transform=left.transAxes, color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_pass_at_k(base: dict, final: dict, path: Path) -> None:
    fig, ax = _figure("pass@k on held-out problems", "k (samples per problem)", "pass@k")
    ks = set()
    for name, m in (("base model", base), ("final policy", final)):
        curve = widest_curve(m)
        if curve:
            ax.plot(list(curve), list(curve.values()), marker="o", lw=2, label=name)
            ks |= set(curve)
    if ks:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sorted(ks)))
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.03, 1.03)
    _save(fig, ax, path, "no pass@k in the summary")


# --- markdown --------------------------------------------------------------------------------


def run_paragraph(summary: dict, base: dict, final: dict, logged: int) -> str:
    steps = summary.get("steps")
    steps_text = f"{steps} steps" if isinstance(steps, int) else "n/a steps"
    if steps != logged:
        steps_text += f" ({logged} logged)"
    k = final.get("k", base.get("k"))
    n = final.get("problems", base.get("problems"))
    return (
        f"DeepSeek-R1-Zero recipe (R1 §2.2): GRPO with rule-based rewards straight from the base model "
        f"`{summary.get('base_model', 'n/a')}`, no SFT, for {steps_text}, "
        f"{fmt(summary.get('wall_seconds'), '.0f')} s wall-clock in all. Base model and final policy "
        f"were evaluated on the same {n if isinstance(n, int) else 'n/a'} held-out problems with "
        f"{k if isinstance(k, int) else 'n/a'} sampled completions each; pass@1 is the mean "
        f"correctness over those samples, as in R1 §5."
    )


def before_after_table(base: dict, final: dict) -> str:
    ks = {m.get("k") for m in (base, final)}
    shared = ks.pop() if len(ks) == 1 else None  # one k for both rows: put it in the header
    kh = shared if isinstance(shared, int) else "k"
    lines = [
        f"| model | pass@1 | cons@{kh} | pass@{kh} | format rate | mean length | truncation rate "
        "| reasoning share | reasoning accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("base model", base), ("final policy", final)):
        k, curve, r = m.get("k"), pass_curve(m), reasoning_style(m)
        tag = f" (k={k})" if shared is None and isinstance(k, int) else ""
        kmax = max(curve) if curve else None
        pass_k = "n/a" if kmax is None else fmt(curve[kmax]) + (f" (k={kmax})" if kmax != shared else "")
        cells = [fmt(m.get("pass@1")), fmt(m.get(f"cons@{k}")) + tag, pass_k, fmt(m.get("format_rate")),
                 fmt(m.get("mean_length"), ".1f"), fmt(m.get("truncation_rate")), fmt(r.get("share")),
                 fmt(r.get("accuracy"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def honest_caveat(base: dict, final: dict) -> str:
    curve = widest_curve(base)
    k = max(curve) if curve else None
    base_pk, final_p1 = (curve[k] if curve else None), _num(final.get("pass@1"))
    facts = (f"Base pass@{k if k else 'k'} is {fmt(base_pk)}: the share of held-out problems the base model "
             f"solves in at least one of {k if k else 'k'} samples. Final pass@1 is {fmt(final_p1)}.")
    if base_pk is None or final_p1 is None:
        return facts + " Without both numbers this run cannot say whether RL added anything beyond selection."
    if final_p1 <= base_pk:
        verdict = (" The final policy's first try does not beat what the base already reached by sampling: at this "
                   "scale RL mostly selects a behaviour the base already has, making a solution it could already "
                   "sample the likely one, rather than teaching a new one.")
    else:
        verdict = (f" Final pass@1 exceeds base pass@{k}, more than selection among {k} base samples explains; "
                   "the base may still reach these answers with more samples, so measure pass@k at larger k "
                   "before calling it a new capability.")
    final_pk = pass_curve(final).get(k)
    if final_pk is not None and final_pk < base_pk:
        verdict += (f" Final pass@{k} ({fmt(final_pk)}) is below the base's: RL narrowed the set of problems "
                    f"the model can solve at all within {k} samples.")
    return facts + verdict


def self_check_table(base: dict, final: dict) -> str:
    lines = ["| measure | base model | final policy |", "|---|---|---|"]
    for key, label in CHECK_ROWS.items():
        spec = ".1f" if key == "mean_length" else ".2f" if key == "attempts_mean" else ".3f"
        lines.append(f"| {label} | {fmt(base.get(key), spec)} | {fmt(final.get(key), spec)} |")
    return "\n".join(lines) + (
        "\n\nA check is read off the completion itself (tasks/attempts.py): a candidate, its evaluation, and a "
        "comparison of the value reached with the target; a reflection phrase alone is not one.")


def difficulty_table(base: dict, final: dict) -> str:
    """Mean length of base and final answers, held-out problems grouped by how often the base solved them."""
    b, f = base.get("per_problem") or {}, final.get("per_problem") or {}
    solved, k = b.get("correct"), base.get("k")
    if not solved or not isinstance(k, int) or len(solved) != len(f.get("correct") or []):
        return "n/a (per-problem results missing)"
    bins = [("never (0 of k)", lambda c: c == 0), ("sometimes (1 to k/2)", lambda c: 0 < c <= k / 2),
            ("mostly (more than k/2)", lambda c: c > k / 2)]
    lines = [f"Problems grouped by the base's correct samples out of k = {k} (the difficulty the base meets).", "",
             "| base solves the problem | problems | base mean length | final mean length | final pass@1 |",
             "|---|---|---|---|---|"]
    for label, test in bins:
        idx = [i for i, c in enumerate(solved) if test(c)]
        mean = lambda xs: sum(xs[i] for i in idx) / len(idx) if idx else None  # noqa: E731
        final_acc = mean([c / final.get("k", k) for c in f["correct"]])
        lines.append(f"| {label} | {len(idx)} | {fmt(mean(b['mean_length']), '.1f')} | "
                     f"{fmt(mean(f['mean_length']), '.1f')} | {fmt(final_acc)} |")
    return "\n".join(lines)


def aha_section(samples) -> str:
    if not samples:
        return "None: no held-out answer of the final policy rejected a wrong candidate and then ended right."
    parts = []
    for i, s in enumerate(samples):
        parts += [f"### Problem {i + 1}", "> " + str(s.get("prompt")), f"Gold answer: **{s.get('answer')}**",
                  "Base model (its first sample):\n\n" + fenced(s.get("base")),
                  "Final policy:\n\n" + fenced(s.get("final"))]
    return "\n\n".join(parts)


def timing_table(history: list[dict]) -> str:
    means = {key: _mean(series(history, key)[1]) for key in TIMINGS}
    total = means["time_step"]
    lines = ["| phase | mean seconds per step | share of step |", "|---|---|---|"]
    for key, label in TIMINGS.items():
        share = means[key] / total if means[key] is not None and total else None
        lines.append(f"| {label} | {fmt(means[key], '.2f')} | {fmt(share, '.0%')} |")
    tps = _mean(series(history, "gen_tokens_per_s")[1])
    return "\n".join(lines) + f"\n\nMean generation throughput: {fmt(tps, '.0f')} tokens/s over {len(history)} steps."


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def samples_section(problems: list, base_samples: list[str], final_samples: list[str]) -> str:
    if not problems:
        return "n/a (no sample problems were given)"
    parts = []
    for i, p in enumerate(problems):
        prompt = str(getattr(p, "prompt", "n/a"))
        parts += [
            f"### Problem {i + 1}",
            "\n".join("> " + line for line in prompt.splitlines() or [""]),
            f"Gold answer: **{getattr(p, 'answer', 'n/a')}**",
            "Base model:\n\n" + fenced(base_samples[i] if i < len(base_samples) else None),
            "Final policy:\n\n" + fenced(final_samples[i] if i < len(final_samples) else None),
        ]
    return "\n\n".join(parts)


def fenced(text: str | None) -> str:
    """`text` in a code fence longer than any run of backticks inside it, so it cannot close early."""
    text = "n/a" if text is None else str(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"
