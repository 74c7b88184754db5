"""The verifier battery (verifier_battery.jsonl, beside this file): hand-written (gold, prediction,
label, category) cases labelled by mathematical truth, the conventions stated in its header.

The battery lives with the grading tests because it is their data: this file holds r1lab to it,
and bench/verifier.py reads the same file to compare r1lab with math-verify per category.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from r1lab.grading import verify
from r1lab.grading.extract import gold_answer

BATTERY = Path(__file__).with_name("verifier_battery.jsonl")
MIN_CASES = 200
# r1lab's floor per category: the share of cases it must grade as labelled. 1.0 everywhere: the
# battery was written with the prose extraction (issue 19) and r1lab agrees on every case; a
# regression in any category fails here.
FLOOR = 1.0


def _cases() -> list[dict]:
    return [json.loads(line) for line in BATTERY.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_battery_is_well_formed():
    cases = _cases()
    assert len(cases) >= MIN_CASES
    assert all(set(c) == {"category", "gold", "prediction", "label"} and isinstance(c["label"], bool) for c in cases)
    assert len({(c["gold"], c["prediction"]) for c in cases}) == len(cases), "duplicate cases"
    labels = defaultdict(Counter)
    for c in cases:
        labels[c["category"]][c["label"]] += 1
    assert all(counts[True] and counts[False] for counts in labels.values()), labels  # right and wrong in each


@pytest.fixture(scope="module", autouse=True)
def symbolic_process_started():
    assert verify.warm_up()


def test_r1lab_agrees_with_the_battery_in_every_category():
    """Graded as `r1lab grade` grades a line: the gold read with prose, the prediction with prose and bare."""
    agree, total, misses = Counter(), Counter(), []
    for c in _cases():
        extracted, ok = verify.grade(c["prediction"], gold_answer(c["gold"], prose=True), bare=True, prose=True)
        total[c["category"]] += 1
        agree[c["category"]] += ok == c["label"]
        if ok != c["label"]:
            misses.append((c["category"], c["gold"], c["prediction"][-80:], extracted))
    below = {cat: f"{agree[cat]}/{n}" for cat, n in total.items() if agree[cat] < FLOOR * n}
    assert not below, (below, misses)
