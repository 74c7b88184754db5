"""Tables for r1lab.data.rejection: each filter on a sample it rejects and a near-identical one it keeps,
first-filter attribution, de-duplication, the per-prompt cap, the report and the atomic writer."""

from __future__ import annotations

import json
import random

import pytest

from r1lab.data.rejection import (
    FILTERS,
    Candidate,
    RejectionConfig,
    filter_candidates,
    first_rejection,
    repetitive,
    write_sft_jsonl,
)
from r1lab.errors import UserError
from r1lab.model.corpus import worked_lines

GOOD = "<think>\nFirst add 2 and 3, which gives 5.\n</think>\n<answer>5</answer>"


def cand(completion: str = GOOD, prompt: str = "2+3", lang: str = "en", **kw) -> Candidate:
    return Candidate(prompt=prompt, completion=completion, lang=lang, correct=kw.pop("correct", True), **kw)


def think(cot: str, summary: str = "<answer>5</answer>") -> str:
    return f"<think>\n{cot}\n</think>\n{summary}"


# A chain of additions: the same shape on every line, never the same numbers.
CHAIN = list(zip(range(3, 600, 17), range(4, 900, 23)))
SCRATCH = "\n".join(f"{a} + {b} = {a + b}, carry {(a + b) // 100}" for a, b in CHAIN)
LOOP = "\n".join(SCRATCH.splitlines()[:3] * 6)  # a three-line cycle: no line twice in a row

ZH_COT = "先算个位，再算十位，最后进位。"  # 12 zh characters
PARAGRAPH = "Add the ones digits, then the tens digits."  # 42 characters
COLUMNS = "    4821\n  + 1379\n  ------\n    6200"

CASES = [
    # (filter, config, rejected, kept)
    ("truncated", RejectionConfig(), cand(truncated=True), cand()),
    ("incorrect", RejectionConfig(), cand(correct=False), cand()),
    ("bad_format", RejectionConfig(), cand(GOOD.replace("</think>", "")), cand()),  # unclosed
    ("bad_format", RejectionConfig(), cand(GOOD.replace("<think>", "")), cand()),  # never opened
    ("bad_format", RejectionConfig(), cand(GOOD.replace("<answer>5</answer>", "")), cand()),  # no summary
    ("bad_format", RejectionConfig(), cand("Sure! " + GOOD), cand("  \n" + GOOD)),  # text before <think>
    ("bad_format", RejectionConfig(), cand(GOOD.replace("5.\n", "5. <think>\n")), cand()),  # two <think>
    ("too_long", RejectionConfig(max_chars=len(GOOD)), cand(GOOD.replace("5.", "5!.")), cand()),
    (
        "repetitive",
        RejectionConfig(),
        cand(think(PARAGRAPH + "\nWait, let me check.\n" * 4)),  # the same line 4 times in a row
        cand(think(PARAGRAPH + "\nWait, let me check.\n" * 3)),
    ),
    ("repetitive", RejectionConfig(), cand(think(LOOP)), cand(think(SCRATCH))),
    (
        "mixed_language",
        RejectionConfig(),
        cand(think(ZH_COT.replace("进位", "carry 进位")), lang="zh"),  # 12 zh, 1 en: 92% < 95%
        cand(think(ZH_COT, "The answer is <answer>5</answer>"), lang="zh"),  # the summary is not the CoT
    ),
    (
        "long_paragraph",
        RejectionConfig(max_paragraph_chars=60),
        cand(think(PARAGRAPH + "\n" + PARAGRAPH)),  # one paragraph of 85 characters
        cand(think(PARAGRAPH + "\n\n" + PARAGRAPH)),  # two of 42
    ),
    ("code_block", RejectionConfig(), cand(think("```python\nprint(2 + 3)\n```")), cand(think("print(2 + 3)"))),
    ("code_block", RejectionConfig(), cand(think("~~~\nprint(2 + 3)\n~~~")), cand(think("~ 5"))),
    (
        "code_block",
        RejectionConfig(),
        cand(think("def add(a, b):\n    return a + b")),
        cand(think(COLUMNS)),  # indented, but arithmetic
    ),
]


@pytest.mark.parametrize("name, cfg, rejected, kept", CASES)
def test_each_filter_rejects_one_sample_and_keeps_its_near_twin(name, cfg, rejected, kept):
    assert FILTERS[name](rejected, cfg) is not None
    assert FILTERS[name](kept, cfg) is None
    assert first_rejection(rejected, cfg)[0] == name  # nothing else is wrong with it
    assert first_rejection(kept, cfg) is None


def test_every_filter_has_a_case():
    assert {case[0] for case in CASES} == set(FILTERS)


def test_r1lab_scratchpads_are_not_repetitive():
    """The corpus's own worked solutions repeat their shape (and many zeros) on every line."""
    rng = random.Random(0)
    for _ in range(300):
        k, digits = rng.randint(1, 4), rng.randint(1, 6)
        ops = [rng.choice("+-") for _ in range(k)]
        lines, value = worked_lines([rng.randrange(10**digits) for _ in range(k + 1)], ops)
        completion = think("\n".join(lines), f"<answer>{value}</answer>")
        assert repetitive(cand(completion), RejectionConfig()) is None, completion


def test_a_sample_is_counted_under_the_first_filter_that_rejects_it():
    broken = cand(GOOD.replace("</think>", ""), truncated=True, correct=False)  # truncated, incorrect, bad_format
    _, report = filter_candidates([broken], RejectionConfig())
    assert report.rejected == {name: int(name == "truncated") for name in FILTERS}
    _, report = filter_candidates([broken], RejectionConfig(filters=("bad_format", "incorrect")))
    assert report.rejected == {"incorrect": 1, "bad_format": 0}  # FILTERS' order, not the config's


def test_filters_that_are_off_do_not_run():
    cfg = RejectionConfig(filters=("incorrect",))
    kept, report = filter_candidates([cand(truncated=True), cand(correct=False)], cfg)
    assert kept == [cand(truncated=True)]
    assert report.rejected == {"incorrect": 1}


def test_all_filters_are_on_by_default():
    assert RejectionConfig().enabled() == list(FILTERS)


def test_duplicates_up_to_whitespace_are_removed_per_prompt_keeping_the_first():
    first = cand(meta={"i": 0})
    cands = [
        first,
        cand(GOOD.replace("\n", "  \n ") + "\n", meta={"i": 1}),  # same words, other spaces
        cand(prompt="3+2", meta={"i": 2}),  # same completion, other prompt: not a duplicate
        cand(GOOD.replace("First", "Then"), meta={"i": 3}),
    ]
    kept, report = filter_candidates(cands, RejectionConfig())
    assert [c.meta["i"] for c in kept] == [0, 2, 3]
    assert report.duplicates == 1


def test_max_per_prompt_caps_distinct_samples_in_input_order():
    texts = [GOOD, GOOD + " ", GOOD.replace("First", "Then"), GOOD.replace("First", "So")]
    cands = [cand(t, meta={"i": i}) for i, t in enumerate(texts)] + [cand(prompt="1+1", meta={"i": 9})]
    kept, report = filter_candidates(cands, RejectionConfig(max_per_prompt=2))
    assert [c.meta["i"] for c in kept] == [0, 2, 9]  # 1 is a duplicate of 0; the cap counts 0 and 2
    assert (report.duplicates, report.capped) == (1, 1)
    kept, _ = filter_candidates(cands, RejectionConfig(max_per_prompt=0))
    assert [c.meta["i"] for c in kept] == [0, 2, 3, 9]


def test_report_counts_and_keep_rates():
    cands = (
        [cand(truncated=True)] * 2
        + [cand(correct=False)] * 3
        + [cand(think(ZH_COT + " and so on"), lang="zh")]
        + [cand(), cand(), cand(prompt="p2"), cand(prompt="p3")]
    )
    kept, report = filter_candidates(cands, RejectionConfig())
    assert (report.total, report.kept, len(kept), report.duplicates) == (10, 3, 3, 1)
    assert report.rejected == {**dict.fromkeys(FILTERS, 0), "truncated": 2, "incorrect": 3, "mixed_language": 1}
    rates = report.keep_rates()
    assert rates["truncated"] == pytest.approx(8 / 10)
    assert rates["incorrect"] == pytest.approx(5 / 8)
    assert rates["bad_format"] == 1.0
    assert rates["mixed_language"] == pytest.approx(4 / 5)
    assert rates["duplicate"] == pytest.approx(3 / 4)
    assert rates["max_per_prompt"] == 1.0
    assert report.keep_rate == pytest.approx(0.3)
    rows = [line.split() for line in report.format().splitlines()]
    assert rows[0] == ["stage", "reached", "removed", "keep", "rate"]
    assert rows[1] == ["truncated", "10", "2", "80.0%"]
    assert ["duplicate", "4", "1", "75.0%"] in rows
    assert rows[-1] == ["kept", "3", "of", "10", "30.0%"]


def test_report_of_no_samples():
    kept, report = filter_candidates([], RejectionConfig())
    assert kept == [] and report.kept == 0 and report.keep_rate == 1.0
    assert report.format().splitlines()[-1].split() == ["kept", "0", "of", "0", "100.0%"]


# --------------------------------------------------------------------------------------------
# Writing the SFT set


def test_write_sft_jsonl_writes_one_object_per_sample_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("old contents\n")
    kept = [cand(), cand(think(ZH_COT), prompt="计算：2+3", lang="zh")]
    provenance = {"checkpoint": "runs/r1-stage2/step-100", "samples_per_prompt": 8}
    write_sft_jsonl(kept, path, provenance)
    text = path.read_text(encoding="utf-8")
    assert "计算" in text  # readable, not \u-escaped
    assert [json.loads(line) for line in text.splitlines()] == [
        {"prompt": "2+3", "completion": GOOD, "lang": "en", "source": provenance},
        {"prompt": "计算：2+3", "completion": think(ZH_COT), "lang": "zh", "source": provenance},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("old contents\n")
    with pytest.raises(TypeError):
        write_sft_jsonl([cand(), cand()], path, {"seed": object()})  # not JSON: fails mid-write
    assert path.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]


# --------------------------------------------------------------------------------------------
# Config

BAD_CONFIGS = [
    ({"filters": ("incorrect", "too_short")}, "filters: unknown filter 'too_short'; choose from truncated"),
    ({"min_language_share": 1.5}, "min_language_share: expected a share in"),
    ({"max_repeated_ngrams": 0.0}, "max_repeated_ngrams: expected a share in"),
    ({"max_chars": 0}, "max_chars: expected >= 1, got 0"),
    ({"max_paragraph_chars": -5}, "max_paragraph_chars: expected >= 1, got -5"),
    ({"max_line_run": 0}, "max_line_run: expected >= 1"),
    ({"ngram": 0}, "ngram: expected >= 1"),
    ({"min_ngrams": -1}, "min_ngrams: expected >= 0"),
    ({"max_per_prompt": -1}, "max_per_prompt: expected >= 0, got -1"),
]


@pytest.mark.parametrize("changes, message", BAD_CONFIGS)
def test_config_validation_names_the_field(changes, message):
    cfg = RejectionConfig(**changes)
    with pytest.raises(UserError, match=message) as e:
        cfg.validate()
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=message):
        filter_candidates([cand()], cfg)


def test_default_config_is_valid():
    RejectionConfig().validate()
