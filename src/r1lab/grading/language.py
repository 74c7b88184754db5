"""Language consistency: the share of a chain of thought's words that are in the prompt's language.

DeepSeek-R1 §3 (stage 2) adds a language-consistency reward, "the proportion of target language
words in the CoT", to the accuracy reward, and its rejection-sampling stage drops chains of thought
with mixed languages. This module is that one measure, used three ways: as an RL reward
(rl/rewards.py's `language`: `language_share` of the chain of thought), as an evaluation metric
(`language_mixing`: the share of answers to zh/ja/ko prompts that mix, via `is_mixed`) and by the
rejection filter (r1lab.data.rejection).

The paper does not say how it counts words; here the measure is script-based:

  * what is a word: a Han ideograph (one per character), a kana (one per character, like Han:
    Japanese puts no spaces between words), a run of Hangul (Korean separates words by spaces),
    a run of two or more Latin letters (apostrophes inside, as in "don't", stay in the word), or
    a run of letters of any other script (Cyrillic, Greek, Arabic, ...).
  * what is neutral (in no language, not counted): digits, punctuation, math symbols, whitespace,
    tags such as <think> or <|im_end|>, LaTeX commands such as \\frac, code in ``` fences or
    `backticks` (whether code belongs in a chain of thought is r1lab.data.rejection's call, not a
    question of language), and single Latin letters (in a chain of thought they are far more
    often a variable, "let x = 3", than the English words "a" or "I").
  * which language a word is in: Hangul is ko; kana is ja; Han is zh, except that when the target
    is ja Han is ja in a sentence (or line) that also has kana: Japanese writes with kanji, but
    hardly a Japanese sentence goes without kana (particles, verb endings), while a Chinese one
    never has any. Without that condition a chain of thought written in Chinese reads as
    consistent Japanese (a cold-started model that opened every line of its Japanese chains with
    the Chinese word 位 scored 100% Japanese). The price: a kanji-only heading ("解法") in a
    Japanese chain counts as zh. For a ko target Han stays zh, because Hanja is rare in modern
    Korean and a Han character in a Korean chain of thought is almost always Chinese. Latin words are en when the target is en, zh, ja or ko: r1lab's tasks use only those
    four languages, and the mixing the paper reports is between English and Chinese. Letters of
    any other script count as "other", which is never a target.

Other Latin-script targets (fr, de, es, ...): the language of the Latin words is detected per
sentence (and per line) with lingua-language-detector, imported only when such a target is asked
for. Candidates are the target, English and the major Western European languages; a sentence
lingua cannot decide is neutral. These targets are beyond the paper, which names mixing in
languages other than Chinese and English as future work (§7).

Note the unit: CJK text is counted per character and Latin text per word, so one English word in
a Chinese chain of thought weighs about as much as one Chinese character (a Chinese word is ~1.5
characters). Shares are therefore comparable within a language, not across languages.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

from r1lab.grading.shape import chain_of_thought

# The languages the script rules decide on their own; Latin words count as English for these.
SCRIPT_LANGS = ("en", "zh", "ja", "ko")

# Is a chain of thought mixed? Below this share of target-language words it is. One word in twenty
# may stray: a technical term in a Chinese chain of thought ("GCD", "modulo") is common and is not
# the mixing the paper filters; one English sentence in a short Chinese one is well past it.
MIXED_THRESHOLD = 0.95

_HAN = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"  # 々 is kanji's repeat mark
_KANA = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # not ・
_HANGUL = "\u1100-\u11ff\u3131-\u318e\uac00-\ud7a3"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff\uff21-\uff3a\uff41-\uff5a"  # not × ÷
_WORD = re.compile(
    rf"(?P<han>[{_HAN}])"
    rf"|(?P<kana>[{_KANA}])"
    rf"|(?P<hangul>[{_HANGUL}]+)"
    rf"|(?P<latin>[{_LATIN}]+(?:['’][{_LATIN}]+)*)"
    rf"|(?P<other>[^\W\d_{_HAN}{_KANA}{_HANGUL}{_LATIN}]+)"  # letters of any other script
)
_NEUTRAL = re.compile(
    r"```.*?(?:```|\Z)"  # fenced code, also when the fence is never closed
    r"|`[^`\n]*`"  # inline code
    r"|</?[A-Za-z][\w-]*>"  # tags: <think>, </answer>
    r"|<\|[^<>|]*\|>"  # special tokens: <|im_end|>
    r"|\\[A-Za-z]+",  # LaTeX commands: \frac, \boxed
    re.DOTALL,
)
_SENTENCE_END = re.compile(r"[.!?;。！？；\n]+")

# Candidates for detecting the language of Latin words when the target is another Latin-script
# language: English (what a model trained mostly on English drifts into) and its neighbours.
# All 49 Latin-script languages lingua knows would take ~900 MB and ~10 s to load; these take ~200 MB.
_LATIN_CANDIDATES = ("en", "de", "es", "fr", "it", "nl", "pt")


def language_share(text: str, lang: str) -> float:
    """Share of the counted words of `text` that are in `lang`; 1.0 if none are counted (nothing to mix)."""
    counts = word_languages(text, lang)
    total = sum(counts.values())
    return counts[lang] / total if total else 1.0


def is_mixed(text: str, lang: str, threshold: float = MIXED_THRESHOLD) -> bool:
    """Are fewer than `threshold` of the counted words of `text` in `lang`? (See MIXED_THRESHOLD.)"""
    return language_share(text, lang) < threshold


MIXING_LANGS = ("zh", "ja", "ko")  # where the paper saw R1-Zero mix languages


def language_mixing(completions: list[str], langs: list[str]) -> dict:
    """The share of responses to zh/ja/ko prompts whose chain of thought mixes languages
    (`is_mixed`; a response with no words in its chain of thought does not mix), overall and per
    language; None where there are no such prompts."""
    flags: dict[str, list[bool]] = {lang: [] for lang in MIXING_LANGS}
    for text, lang in zip(completions, langs, strict=True):
        if lang in flags:
            flags[lang].append(is_mixed(chain_of_thought(text), lang))
    every = [f for lang in MIXING_LANGS for f in flags[lang]]
    rate = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"language_mixing": rate(every), "language_mixing_by_lang": {lang: rate(f) for lang, f in flags.items()}}


def word_languages(text: str, lang: str) -> Counter[str]:
    """How many counted words of `text` are in each language, for a chain of thought whose target is `lang`."""
    detect = None if lang in SCRIPT_LANGS else _latin_detector(lang)
    counts: Counter[str] = Counter()
    for sentence in _SENTENCE_END.split(_NEUTRAL.sub(" ", text)):
        words = [(m.lastgroup, m.group()) for m in _WORD.finditer(sentence)]
        latin = [w for script, w in words if script == "latin" and len(w) > 1]
        latin_lang = "en" if detect is None or not latin else detect(" ".join(latin))
        han_lang = "ja" if lang == "ja" and any(script == "kana" for script, _ in words) else "zh"
        for script, word in words:
            if script == "latin":
                if len(word) > 1 and latin_lang is not None:
                    counts[latin_lang] += 1
            else:
                counts[{"han": han_lang, "kana": "ja", "hangul": "ko"}.get(script, "other")] += 1
    return counts


@cache
def _latin_detector(lang: str):
    """A function from a run of Latin words to its ISO 639-1 language (or None when undecided),
    for a Latin-script target `lang` other than English; ValueError if `lang` is not one."""
    supported = f"{', '.join(SCRIPT_LANGS)} or a Latin-script language lingua-language-detector knows"
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:
        raise ValueError(
            f"language {lang!r} needs lingua-language-detector (pip install lingua-language-detector); "
            f"without it the supported languages are {', '.join(SCRIPT_LANGS)}"
        ) from None
    latin = {language.iso_code_639_1.name.lower(): language for language in Language.all_with_latin_script()}
    if lang not in latin:
        raise ValueError(f"unsupported language {lang!r}: choose from {supported} ({', '.join(sorted(latin))})")
    candidates = {latin[code] for code in (*_LATIN_CANDIDATES, lang)}
    detector = LanguageDetectorBuilder.from_languages(*candidates).build()

    def detect(words: str) -> str | None:
        found = detector.detect_language_of(words)
        return None if found is None else found.iso_code_639_1.name.lower()

    return detect
