"""Evaluation metrics against closed-form values."""

from math import comb

import pytest

from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import Generation
from r1lab.eval.metrics import (
    Sample,
    benchmark_metrics,
    breakdown,
    evaluate,
    generation_stats,
    majority_vote,
    pass_at_k,
    sample_metrics,
    score,
)
from r1lab.grading.shape import style_of
from r1lab.tasks.base import Problem


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (8, 0, 1, 0.0),
        (8, 8, 8, 1.0),
        (8, 2, 1, 2 / 8),  # pass@1 is the mean correctness
        (8, 2, 2, 1 - comb(6, 2) / comb(8, 2)),  # 1 - 15/28
        (64, 3, 8, 1 - comb(61, 8) / comb(64, 8)),
        (10, 5, 6, 1.0),  # fewer than k wrong samples: some correct one is always drawn
    ],
)
def test_pass_at_k_unbiased(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_is_not_first_k_hits():
    """nanochat-style "any hit among the first k" would give 0 here (hits at the end)."""
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


@pytest.mark.parametrize(
    "answers, correct, expected",
    [
        (["6200", "06200", "6201"], [True, True, False], True),  # equivalent strings vote together
        (["1/2", "0.5", "\\frac{1}{2}", "3", "3"], [False] * 3 + [True] * 2, False),  # 3 equivalent beat 2
        (["3", "3", "1/2", "0.5", "\\frac{1}{2}"], [True, True, False, False, False], False),
        (["7", "8"], [False, True], False),  # tie: the class seen first wins
        ([None, None, "5"], [False, False, True], True),  # unextracted answers do not vote
        ([None, None], [False, False], False),
    ],
)
def test_majority_vote_groups_by_equivalence(answers, correct, expected):
    assert majority_vote(answers, correct) is expected


@pytest.mark.parametrize(
    "completion, style",
    [
        ("<think>\n4821+1379,0,00000\n1+9+0=10\n</think>\n<answer>6200</answer>", "reasoning"),
        ("<think>\n</think>\n<answer>6200</answer>", "direct"),
        (" 6200", "unformatted"),
        ("<think> ok </think><answer>1</answer>", "direct"),
    ],
)
def test_style_of(completion, style):
    assert style_of(completion) == style


# --- metrics of `r1lab eval`, from per-sample records ------------------------------------------


def make_samples(problem, verdicts, answers=None, meta=None, tokens=None, truncated=None, chunk=0, seconds=1.0):
    n = len(verdicts)
    return [
        Sample(problem=problem, id=f"p{problem}", sample=j, chunk=chunk, prompt="q", completion="c",
               extracted=(answers or ["x"] * n)[j], correct=verdicts[j], gold="g",
               tokens=(tokens or [10] * n)[j], truncated=(truncated or [False] * n)[j], meta=meta or {},
               chunk_seconds=seconds)
        for j in range(n)
    ]


def test_score_matches_closed_form():
    # c = 1, 3, 0 correct of n = 4
    correct = [[False, True, False, False], [True, True, False, True], [False] * 4]
    extracted = [["3", "0.5", "7", None], ["1/2", "0.5", "9", "\\frac{1}{2}"], ["1", "2", "2", "3"]]
    s = score(extracted, correct)
    p2 = [1 - comb(3, 2) / comb(4, 2), 1 - comb(1, 2) / comb(4, 2), 0.0]  # 0.5, 1.0, 0.0
    p3 = [1 - comb(3, 3) / comb(4, 3), 1.0, 0.0]  # 0.75, 1.0, 0.0
    assert s["pass@1"] == pytest.approx((1 + 3 + 0) / 12)
    assert s["pass@k"]["2"] == pytest.approx(sum(p2) / 3) and s["pass@k"]["3"] == pytest.approx(sum(p3) / 3)
    assert s["pass@k"]["4"] == pytest.approx(2 / 3)
    # votes: problem 0 ties (first class "3" is wrong), problem 1's 1/2 class (3 votes) is right
    assert s["cons@k"] == pytest.approx(1 / 3)
    assert (s["problems"], s["k"]) == (3, 4)


def test_score_needs_equal_sample_counts():
    with pytest.raises(ValueError):
        score([["1"], ["1", "2"]], [[True], [True, False]])


def test_sample_metrics_groups_by_problem_whatever_the_order():
    samples = make_samples(0, [True, False], tokens=[4, 8], truncated=[False, True])
    samples += make_samples(1, [False, False], tokens=[2, 2])
    m = sample_metrics(samples[::-1])
    assert m["pass@1"] == pytest.approx(0.25) and m["pass@k"]["2"] == pytest.approx(0.5)
    assert m["mean_length"] == pytest.approx(16 / 4) and m["truncation_rate"] == pytest.approx(1 / 4)


def test_breakdown_orders_levels_numerically_and_keeps_missing_values():
    samples = (make_samples(0, [True], meta={"level": "10"}) + make_samples(1, [False], meta={"level": "2"})
               + make_samples(2, [True], meta={"level": "2"}) + make_samples(3, [True], meta={}))
    by_level = breakdown(samples, "level")
    assert list(by_level) == ["2", "10", "(none)"]
    assert by_level["2"]["problems"] == 2 and by_level["2"]["pass@1"] == pytest.approx(0.5)
    assert by_level["10"]["pass@1"] == 1.0


def test_breakdown_orders_numeric_values_as_numbers():
    samples = make_samples(0, [True], meta={"level": "10"}) + make_samples(1, [False], meta={"level": "9"})
    assert list(breakdown(samples, "level")) == ["9", "10"]


def test_generation_stats_count_each_chunk_once():
    samples = make_samples(0, [True, True], tokens=[30, 10], chunk=0, seconds=2.0)
    samples += make_samples(1, [True], tokens=[20], chunk=1, seconds=3.0)
    assert generation_stats(samples) == {"tokens": 60, "seconds": 5.0, "tokens_per_s": 12.0}


def test_benchmark_metrics_has_a_breakdown_per_field():
    samples = make_samples(0, [True], meta={"subject": "a", "level": "1"})
    samples[0].verifier_timeouts = 2
    m = benchmark_metrics(samples, ["subject", "level"])
    assert set(m["by_subject"]) == {"a"} and set(m["by_level"]) == {"1"}
    assert m["by_subject"]["a"]["pass@1"] == 1.0 and m["verifier_timeouts"] == 2


def test_language_mixing_counts_zh_ja_ko_chains_of_thought():
    from r1lab.grading.language import language_mixing

    texts = ["<think>digit</think>",  # en: never counted
             "<think>位 位</think>", "<think>位 digit</think>",  # zh: clean, mixed
             "<think>けた</think>",  # ja: clean
             "<think>digit</think>", "<think></think>"]  # ko: mixed, no words
    out = language_mixing(texts, ["en", "zh", "zh", "ja", "ko", "ko"])
    assert out["language_mixing"] == 2 / 5
    assert out["language_mixing_by_lang"] == {"zh": 0.5, "ja": 0.0, "ko": 0.5}
    assert language_mixing(["x"], ["en"])["language_mixing"] is None


class _Replies:
    """One prompt, three replies: the second and third hit the token limit."""

    texts = ["so the answer is 4.", "so the sum is 4. Let me redo it: 5 + 6 = 11, so 11", "... = 3"]

    def generate(self, prompts, n, params):
        return Generation([[1]], [[2], [3], [4]], self.texts, [False, True, True], n=n)


def test_prose_is_read_only_in_replies_that_ended():
    """A reply the token limit cut off stated no last word: with prose, its last number would
    outvote the answer it gave (cons@k)."""
    problem = Problem("2+2", "2+2", "4", "arithmetic")
    res = evaluate(_Replies(), [problem], ["p"], 3, SamplingParams(), prose=True)
    assert res.extracted == [["4", None, None]]
    assert res.metrics["cons@3"] == 1.0
