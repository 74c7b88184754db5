"""Tables for r1lab.grading.language: words per script and language, shares, mixing, the CoT, the reward.

Every expected share is counted by hand in the comment beside it (words in the target / all counted words).
"""

from __future__ import annotations

import sys

import pytest

from r1lab.grading import language
from r1lab.grading.language import is_mixed, language_share
from r1lab.grading.shape import chain_of_thought
from r1lab.rl.rewards import language_consistency
from r1lab.tasks.base import Problem

SHARES = [
    # (text, target, expected share)
    ("First add the ones digits, then carry.", "en", 1.0),
    ("先算个位，再进位。", "zh", 1.0),
    ("我们先 check 一下", "zh", 5 / 6),  # 我们先一下: 5 zh; check: 1 en
    ("First 计算 the sum", "en", 3 / 5),  # First the sum: 3 en; 计算: 2 zh
    ("計算します", "ja", 1.0),  # kanji count as ja for a ja target, in a sentence with kana
    ("位 1+9+0=10\n位 2+3=5", "ja", 0.0),  # ... not in lines without kana: a Chinese chain is not Japanese
    ("けた 1+9+0=10\n位 2+3=5", "ja", 2 / 3),  # per line: けた 2 ja; 位 on a kana-less line: 1 zh
    ("答えは 12。解法", "ja", 3 / 5),  # the price: a kanji-only heading counts as zh (答えは 3 ja; 解法 2 zh)
    ("計算します", "zh", 2 / 5),  # ... but as zh for a zh target: 計算 zh, します 3 ja
    ("コンピューター", "ja", 1.0),  # katakana, ー included: 7 ja
    ("이 문제는 덧셈 문제입니다 answer", "ko", 4 / 5),  # 4 Hangul runs, 1 en
    ("숫자를 더하면 10입니다", "ko", 1.0),  # 숫자를 더하면 입니다: the digits are neutral
    ("數學 문제", "ko", 1 / 3),  # Han is zh for a ko target: 2 zh, 1 ko
    ("これ 문제", "ko", 1 / 3),  # 2 ja, 1 ko
    ("2+3=5, \\frac{1}{2} \\times 4 = 2", "zh", 1.0),  # math only: no words at all
    ("```python\nprint(sum(range(10)))\n```", "zh", 1.0),  # fenced code is neutral
    ("用 `print(x)` 输出", "zh", 1.0),  # inline code too: 用输出 3 zh
    ("<think>先算</think><answer>5</answer>", "zh", 1.0),  # tags are neutral
    ("<|im_start|>好<|im_end|>", "zh", 1.0),  # special tokens too
    ("x = 42 ok 答案", "zh", 2 / 3),  # x (one letter) and 42 neutral; ok 1 en; 答案 2 zh
    ("设 x = 3，则 x + 2 = 5", "zh", 1.0),  # variables are not English words: 设则 2 zh
    ("naïve café 很好", "zh", 2 / 4),  # accented letters stay inside their word: 2 en, 2 zh
    ("don't stop 算", "zh", 1 / 3),  # don't stop: 2 en; 算: 1 zh
    ("Давайте посчитаем the sum", "en", 2 / 4),  # Cyrillic words are in another language
    ("", "en", 1.0),
    ("  \n\t", "ko", 1.0),
]


@pytest.mark.parametrize("text, lang, expected", SHARES)
def test_language_share(text, lang, expected):
    assert language_share(text, lang) == pytest.approx(expected)


MIXED = [
    ("好" * 19 + " ok", "zh", 0.95, False),  # 19/20 = 0.95 is not below 0.95
    ("好" * 18 + " ok", "zh", 0.95, True),  # 18/19 < 0.95
    ("好 ok ok", "zh", 0.5, True),  # 1/3 < 0.5
    ("好 ok", "zh", 0.5, False),  # 1/2 is not below 0.5
    ("3 + 4 = 7", "ko", 0.95, False),  # nothing to mix
]


@pytest.mark.parametrize("text, lang, threshold, expected", MIXED)
def test_is_mixed(text, lang, threshold, expected):
    assert is_mixed(text, lang, threshold) is expected


def test_is_mixed_default_threshold():
    assert not is_mixed("好" * 19 + " ok", "zh")
    assert is_mixed("好" * 18 + " ok", "zh")


COTS = [
    ("<think>a b</think> <answer>c</answer>", "a b"),
    ("<think>cut off", "cut off"),  # unclosed: to the end
    ("opened in the prompt</think> summary", "opened in the prompt"),
    ("no tags at all", "no tags at all"),
    ("x <think>first</think> y <think>second</think>", "first"),
]


@pytest.mark.parametrize("completion, cot", COTS)
def test_chain_of_thought(completion, cot):
    assert chain_of_thought(completion) == cot


def problem(lang: str) -> Problem:
    return Problem(key="1+1", prompt="1+1", answer="2", task="arithmetic", lang=lang)


def test_language_reward_is_share_of_the_chain_of_thought_in_the_problems_language():
    completions = [
        "<think>计算 sum</think> <answer>two</answer>",  # CoT: 2 zh, 1 en; the answer is not scored
        "<think>計算します</think> <answer>2</answer>",  # all ja for a ja problem
        "<think>計算します</think> <answer>2</answer>",  # the same text asked in zh: 2 zh of 5
    ]
    rewards = language_consistency(completions, [problem("zh"), problem("ja"), problem("zh")])
    assert rewards == pytest.approx([2 / 3, 1.0, 2 / 5])


def test_language_reward_needs_one_problem_per_completion():
    with pytest.raises(ValueError, match="2 completions for 1 problems"):
        language_consistency(["a", "b"], [problem("en")])


# --------------------------------------------------------------------------------------------
# Latin-script targets other than English: lingua decides which language each sentence is in


def test_latin_target_detects_the_language_of_each_sentence():
    pytest.importorskip("lingua")
    text = "Nous devons calculer la somme. First we add the numbers.\nDonc la réponse est 5."
    # French sentences: Nous devons calculer la somme (5), Donc la réponse est (4); English: 5 words
    assert language_share(text, "fr") == pytest.approx(9 / 14)
    assert language_share("Nous devons calculer la somme des deux nombres.", "fr") == 1.0


def test_unsupported_language_is_a_clear_error():
    pytest.importorskip("lingua")
    with pytest.raises(ValueError, match="unsupported language 'ru'.*en, zh, ja, ko"):
        language_share("Давайте", "ru")


def test_latin_target_without_lingua_says_what_is_supported(monkeypatch):
    monkeypatch.setitem(sys.modules, "lingua", None)  # import lingua now raises ImportError
    language._latin_detector.cache_clear()
    try:
        with pytest.raises(ValueError, match="lingua-language-detector.*en, zh, ja, ko"):
            language_share("bonjour", "fr")
    finally:
        language._latin_detector.cache_clear()
