"""The paper's template, verbatim, and the per-language phrasings."""

import pytest

from r1lab.errors import UserError
from r1lab.tasks.base import LANGS
from r1lab.tasks.prompts import (
    ARITHMETIC_PREFIXES,
    COUNTDOWN_PHRASINGS,
    R1_ZERO_TEMPLATE,
    apply_template,
    arithmetic_prompt,
    check_langs,
    countdown_prompt,
    pick_langs,
)

PAPER = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {prompt}. Assistant:"
)


def test_template_is_the_papers():
    assert R1_ZERO_TEMPLATE == PAPER
    assert apply_template("Compute: 1+2") == PAPER.replace("{prompt}", "Compute: 1+2")


def test_apply_template_leaves_braces_in_the_prompt_alone():
    assert apply_template("{x}").endswith("User: {x}. Assistant:")


@pytest.mark.parametrize(
    "lang, expected",
    [
        ("en", "Compute: 4821+1379"),
        ("zh", "计算：4821+1379"),
        ("ja", "計算してください：4821+1379"),
        ("ko", "계산하세요: 4821+1379"),
    ],
)
def test_arithmetic_phrasing_ends_with_the_expression(lang, expected):
    assert arithmetic_prompt("4821+1379", lang) == expected
    assert apply_template(expected).endswith("4821+1379. Assistant:")


def test_every_language_has_both_phrasings():
    assert set(ARITHMETIC_PREFIXES) == set(COUNTDOWN_PHRASINGS) == set(LANGS)


@pytest.mark.parametrize("lang", LANGS)
def test_countdown_phrasing_shows_numbers_and_target_without_final_punctuation(lang):
    prompt = countdown_prompt([25, 3, 7], 46, lang)
    assert "[25, 3, 7]" in prompt and "46" in prompt
    assert prompt == prompt.strip() and prompt[-1] not in ".。?？!！"


def test_check_langs():
    assert check_langs(["en", "ko"]) == ("en", "ko")
    with pytest.raises(UserError, match="'fr'"):
        check_langs(("en", "fr"))
    with pytest.raises(UserError):
        check_langs(())


def test_pick_langs_is_seeded_and_uses_every_language():
    picked = pick_langs(400, seed=3, langs=LANGS)
    assert picked == pick_langs(400, seed=3, langs=LANGS)
    assert picked != pick_langs(400, seed=4, langs=LANGS)
    assert set(picked) == set(LANGS)
