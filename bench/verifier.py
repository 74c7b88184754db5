"""r1lab's verifier against math-verify on the real MATH-500 reference solutions, in one run.

    .venv/bin/python bench/verifier.py [--data ../shared/data] [--repeat 3]

Both graders decide, for each of the 500 problems, whether the reference `solution` (a worked
solution ending in `\\boxed{...}`) is correct against the gold `answer`:
  r1lab:        r1lab.grading.verify.grade(solution, answer)
  math-verify:  verify(parse(f"${answer}$"), parse(solution))   (its documented usage, gold first)
Each timing is the median of `--repeat` passes over all 500 items, after both have started up
(math-verify's import and r1lab's symbolic process are not counted; the startups are printed).
Printed: items/s of each, how many each accepts, the agreement between their verdicts, then the
same for GSM8K test (reference rationales against their `####` answers) and for MATH-500 with
each solution paired with the next problem's answer (acceptances there are false positives
unless the two gold answers normalise to the same string), and for 3,000 random pairs of
MATH-500 gold answers plus a few equal rewritings (`\\frac{1}{\\sqrt{3}}` vs `\\frac{\\sqrt{3}}{3}`),
answer against answer, where most verdicts come from r1lab's numeric rejection rather than
sympy.

Then the battery, tests/grading/verifier_battery.jsonl (hand-written (gold, prediction, label,
category) cases labelled by mathematical truth; its header states the conventions): per
category, how many labels each grader agrees with, each called as a user would call it on a
file of model outputs:
  r1lab:        verify.grade(prediction, extract.gold_answer(gold, prose=True), bare=True, prose=True)
                (exactly `r1lab grade`)
  math-verify:  bool(verify(parse(gold), parse(prediction)))   (the plain call: default extraction
                configs, LaTeX and expression targets, gold first, no `$` added; an exception is False)
The last line is `speedup X.XX` (math-verify's time / r1lab's on the MATH-500 references).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATTERY = Path(__file__).resolve().parents[1] / "tests" / "grading" / "verifier_battery.jsonl"


def timed(fn, items, repeat: int) -> tuple[list[bool], float]:
    times, verdicts = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        verdicts = [fn(pred, gold) for pred, gold in items]
        times.append(time.perf_counter() - t0)
    return verdicts, statistics.median(times)


REWRITINGS = [  # equal answers written differently: must be accepted by both
    ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"), ("\\sqrt{117}", "3\\sqrt{13}"), ("2\\pi r", "2r\\pi"),
    ("0.5", "\\frac{1}{2}"), ("\\frac{1}{2}\\pi", "\\frac{\\pi}{2}"), ("x^2+2x+1", "(x+1)^2"), ("i^2", "-1"),
    ("\\sqrt[3]{-8}", "-2"), ("2^{-1}", "0.5"), ("(x+1)^2", "x^2+1"), ("\\dfrac{14}{3}", "14/3"),
]


def random_pairs(answers: list[str], n: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    import random

    rng = random.Random(seed)
    return [(rng.choice(answers), rng.choice(answers)) for _ in range(n)] + REWRITINGS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    from math_verify import parse, verify

    parse("$1$")
    mv_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    from r1lab.grading import verify as r1

    r1.warm_up()
    r1_start = time.perf_counter() - t0
    print(f"startup: math-verify import {mv_start:.2f}s, r1lab symbolic process {r1_start:.2f}s (not timed below)")

    def mv(pred: str, gold: str) -> bool:
        try:
            return bool(verify(parse(f"${gold}$"), parse(pred if "\\boxed" in pred else f"${pred}$")))
        except Exception:
            return False

    def ours(pred: str, gold: str) -> bool:
        return r1.grade(pred, gold, bare=True)[1]  # bare: the answer-pairs suite has no box

    math = [json.loads(line) for line in (args.data / "math500.jsonl").read_text().splitlines() if line.strip()]
    gsm = [json.loads(line) for line in (args.data / "gsm8k_test.jsonl").read_text().splitlines() if line.strip()]
    suites = {
        "math500 references": [(r["solution"], r["answer"]) for r in math],
        "gsm8k references": [(r["solution"], r["answer"]) for r in gsm],
        "math500 rotated": [(r["solution"], o["answer"]) for r, o in zip(math, math[1:] + math[:1])],
        "math500 answer pairs": random_pairs([r["answer"] for r in math]),
    }
    speedup = None
    print(f"{'suite':<20} {'items':>5} | {'r1lab/s':>9} {'ok':>5} | {'m-v/s':>8} {'ok':>5} | {'agree':>7} {'speedup':>8}")
    for name, items in suites.items():
        r1.reset_stats()
        ours_v, ours_t = timed(ours, items, args.repeat)
        symbolic = r1.stats()
        mv_v, mv_t = timed(mv, items, args.repeat)
        agree = sum(a == b for a, b in zip(ours_v, mv_v)) / len(items)
        print(f"{name:<20} {len(items):>5} | {len(items) / ours_t:>9.0f} {sum(ours_v):>5} | "
              f"{len(items) / mv_t:>8.0f} {sum(mv_v):>5} | {agree:>7.1%} {mv_t / ours_t:>7.2f}x"
              f"   (r1lab symbolic calls {symbolic['symbolic'] // args.repeat}, timeouts {symbolic['timeouts']})")
        if name == "math500 rotated":
            same = [r1.normalize_answer(r["answer"]) == r1.normalize_answer(o["answer"])
                    for r, o in zip(math, math[1:] + math[:1])]
            fp = lambda verdicts: sum(v and not s for v, s in zip(verdicts, same))  # noqa: E731
            print(f"{'':<20} false positives: r1lab {fp(ours_v)}, math-verify {fp(mv_v)}")
        for i, (a, b) in enumerate(zip(ours_v, mv_v)):
            if a != b:
                print(f"{'':<20} disagree: r1lab {a}, math-verify {b}: gold {items[i][1]!r}, "
                      f"extracted {r1.extract_answer(items[i][0])!r}")
        if name == "math500 references":
            speedup = mv_t / ours_t
    battery_table(r1, parse, verify)
    print(f"speedup {speedup:.2f}")


def battery_table(r1, parse, verify) -> None:
    """Per category of the battery: cases, r1lab's and math-verify's agreement with the labels."""
    from r1lab.grading.extract import gold_answer

    def mv_plain(gold: str, pred: str) -> bool:
        try:
            return bool(verify(parse(gold), parse(pred)))
        except Exception:
            return False

    rows = [json.loads(line) for line in BATTERY.read_text().splitlines() if line.strip() and not line.startswith("#")]
    table: dict[str, list[int]] = {}
    for r in rows:
        ours = r1.grade(r["prediction"], gold_answer(r["gold"], prose=True), bare=True, prose=True)[1]
        row = table.setdefault(r["category"], [0, 0, 0])
        row[0] += 1
        row[1] += ours == r["label"]
        row[2] += mv_plain(r["gold"], r["prediction"]) == r["label"]
    print(f"battery ({BATTERY.name})  {'cases':>5} {'r1lab':>6} {'m-v':>6}")
    for name, (n, a, b) in sorted(table.items()):
        print(f"  {name:<20} {n:>5} {a:>6} {b:>6}")
    total = [sum(row[i] for row in table.values()) for i in range(3)]
    print(f"  {'total':<20} {total[0]:>5} {total[1]:>6} {total[2]:>6}")


if __name__ == "__main__":
    main()
