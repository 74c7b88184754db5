"""Rejection sampling's filters (DeepSeek-R1 §3, stage 3): which sampled answers become SFT data.

From the stage-2 checkpoint the paper samples many answers per prompt, keeps only correct ones,
and filters out "chain-of-thought with mixed languages, long paragraphs, and code blocks". This
module is that filter, as pure functions over graded samples (`Candidate`), plus de-duplication,
a per-prompt cap, a keep-rate report and an atomic JSONL writer. Sampling and grading are the
caller's (`r1lab sample`); nothing here loads a model.

Each filter is a predicate `(candidate, config) -> None | reason`; the filters run in the order of
`FILTERS`, and a rejected sample is counted under the first filter that rejects it. The order
names root causes first: a truncated answer is usually also unclosed and incorrect, and is
counted as truncated; then correctness, the paper's main filter; then the shape the CoT filters
rely on; then degenerate generations (too long, repetitive); then the paper's three readability
filters, in its order.

Beyond the paper (it names only correctness, mixed languages, long paragraphs and code blocks):
`truncated`, `bad_format`, `too_long` and `repetitive` reject what a small model's samples
often are, and which the paper's larger model presumably rarely produced. The paper does not
define "long paragraph" or "mixed"; the limits here are this module's choices (RejectionConfig).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from r1lab.errors import UserError
from r1lab.grading.language import MIXED_THRESHOLD, is_mixed, language_share
from r1lab.grading.shape import chain_of_thought
from r1lab.runtime.files import write_jsonl


@dataclass(frozen=True)
class Candidate:
    """One sampled answer, graded."""

    prompt: str  # the question as the model saw it
    completion: str  # what the model generated after the prompt
    lang: str  # the prompt's language, e.g. "zh" (Problem.lang)
    correct: bool  # did the task's grader accept the final answer?
    truncated: bool = False  # did generation stop at the token limit rather than at EOS?
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # caller's bookkeeping


@dataclass
class RejectionConfig:
    filters: tuple[str, ...] = field(default_factory=lambda: tuple(FILTERS))  # those on (all); run in FILTERS' order
    min_language_share: float = MIXED_THRESHOLD  # mixed_language: below this share of CoT words in the prompt's lang
    max_chars: int = 16_000  # too_long: characters of the whole completion (~4k English tokens, ~10k CJK)
    max_paragraph_chars: int = 2_000  # long_paragraph: characters between two blank lines of the CoT
    max_line_run: int = 3  # repetitive: more than this many identical non-blank lines in a row is a loop
    ngram: int = 4  # repetitive: n of the n-grams of tokens compared
    max_repeated_ngrams: float = 0.5  # repetitive: above this share of n-grams that occurred before is a loop
    min_ngrams: int = 40  # repetitive: texts with fewer n-grams than this are too short to judge by share
    max_per_prompt: int = 0  # keep at most this many samples per prompt after de-duplication; 0 = no cap

    def validate(self) -> None:
        unknown = [name for name in self.filters if name not in FILTERS]
        if unknown:
            raise UserError(f"filters: unknown filter {unknown[0]!r}; choose from {', '.join(FILTERS)}")
        if not 0 <= self.min_language_share <= 1:
            raise UserError(f"min_language_share: expected a share in [0, 1], got {self.min_language_share}")
        if not 0 < self.max_repeated_ngrams <= 1:
            raise UserError(f"max_repeated_ngrams: expected a share in (0, 1], got {self.max_repeated_ngrams}")
        for name in ("max_chars", "max_paragraph_chars", "max_line_run", "ngram"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("min_ngrams", "max_per_prompt"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}: expected >= 0, got {getattr(self, name)}")

    def enabled(self) -> list[str]:
        """The filters that are on, in the order they run."""
        return [name for name in FILTERS if name in self.filters]


# ---------------------------------------------------------------------------------------------
# Filters: None if the candidate passes, else a short reason.


def truncated(c: Candidate, cfg: RejectionConfig) -> str | None:
    return "stopped at the token limit" if c.truncated else None


def incorrect(c: Candidate, cfg: RejectionConfig) -> str | None:
    return None if c.correct else "final answer not verified correct"


def bad_format(c: Candidate, cfg: RejectionConfig) -> str | None:
    """Exactly one <think>, at the start, closed once, then a non-empty summary or answer (R1's
    `|special_token|<reasoning_process>|special_token|<summary>` shape, in r1lab's tags)."""
    text = c.completion.strip()
    if not text.startswith("<think>"):
        return "does not start with <think>"
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return f"{text.count('<think>')} <think> and {text.count('</think>')} </think> tags, expected one each"
    if not text.split("</think>", 1)[1].strip():
        return "nothing after </think>"
    return None


def too_long(c: Candidate, cfg: RejectionConfig) -> str | None:
    """Counted in characters: exact, and needs no tokenizer. (The token limit is `truncated`'s.)"""
    n = len(c.completion)
    return f"{n} characters > {cfg.max_chars}" if n > cfg.max_chars else None


def repetitive(c: Candidate, cfg: RejectionConfig) -> str | None:
    """A generation stuck in a loop: the same line many times in a row, or mostly n-grams seen before.

    Tokens keep every number (and each CJK character is a token), so scratch work that repeats a
    pattern with different numbers ("3+4=7", "7+5=12") has distinct n-grams and passes.
    """
    run = longest_line_run(c.completion)
    if run > cfg.max_line_run:
        return f"one line {run} times in a row > {cfg.max_line_run}"
    tokens = _TOKEN.findall(c.completion)
    if len(tokens) - cfg.ngram + 1 < cfg.min_ngrams:
        return None
    share = repeated_ngram_share(tokens, cfg.ngram)
    if share > cfg.max_repeated_ngrams:
        return f"{share:.0%} of {cfg.ngram}-grams repeated > {cfg.max_repeated_ngrams:.0%}"
    return None


def mixed_language(c: Candidate, cfg: RejectionConfig) -> str | None:
    """Too few of the CoT's words in the prompt's language (r1lab.grading.language: the reward's own measure)."""
    cot = chain_of_thought(c.completion)
    if is_mixed(cot, c.lang, cfg.min_language_share):
        return f"{language_share(cot, c.lang):.0%} of CoT words in {c.lang} < {cfg.min_language_share:.0%}"
    return None


def long_paragraph(c: Candidate, cfg: RejectionConfig) -> str | None:
    """A paragraph of the CoT (text between blank lines) longer than the limit, in characters."""
    longest = max(len(p.strip()) for p in _BLANK_LINE.split(chain_of_thought(c.completion)))
    if longest > cfg.max_paragraph_chars:
        return f"paragraph of {longest} characters > {cfg.max_paragraph_chars}"
    return None


def code_block(c: Candidate, cfg: RejectionConfig) -> str | None:
    """A fenced block (``` or ~~~) in the CoT, or an indented line that starts like code.

    Indentation alone is not code: column arithmetic is indented too. An indented line counts
    when it starts with a statement keyword of a common language (def, return, for ... :, ...).
    """
    cot = chain_of_thought(c.completion)
    if _FENCE.search(cot):
        return "fenced code block in the CoT"
    if _INDENTED_CODE.search(cot):
        return "indented code in the CoT"
    return None


Filter = Callable[[Candidate, RejectionConfig], str | None]

FILTERS: dict[str, Filter] = {
    "truncated": truncated,
    "incorrect": incorrect,
    "bad_format": bad_format,
    "too_long": too_long,
    "repetitive": repetitive,
    "mixed_language": mixed_language,
    "long_paragraph": long_paragraph,
    "code_block": code_block,
}

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
_INDENTED_CODE = re.compile(
    r"^(?: {4,}|\t+)(?:def |class |return\b|import |from \S+ import |(?:for|while|if|elif|with) .*:\s*$|else:"
    r"|print\(|#include|function |(?:var|let|const) \w+ =)",
    re.MULTILINE,
)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]+|\d+|\S")  # CJK character, word, number, or symbol


def longest_line_run(text: str) -> int:
    """The most times one non-blank line occurs in a row (blank lines in between do not break the run)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    longest, run = 0, 0
    for i, line in enumerate(lines):
        run = run + 1 if i and line == lines[i - 1] else 1
        longest = max(longest, run)
    return longest


def repeated_ngram_share(tokens: list[str], n: int) -> float:
    """Share of the n-grams of `tokens` that already occurred earlier; 0.0 if there are none."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def first_rejection(c: Candidate, cfg: RejectionConfig) -> tuple[str, str] | None:
    """(filter name, reason) of the first enabled filter that rejects `c`, or None if all pass."""
    for name in cfg.enabled():
        reason = FILTERS[name](c, cfg)
        if reason is not None:
            return name, reason
    return None


# ---------------------------------------------------------------------------------------------
# The whole pass: filters, then de-duplication, then the per-prompt cap.


@dataclass
class Report:
    """How many samples each stage saw and removed. Stages run in order, so each sees what the
    previous ones kept: `filters` in FILTERS' order, then "duplicate", then "max_per_prompt"."""

    total: int
    removed: dict[str, int]  # stage name -> samples it removed

    @property
    def kept(self) -> int:
        return self.total - sum(self.removed.values())

    @property
    def rejected(self) -> dict[str, int]:
        """Samples removed by each filter (de-duplication and the cap are not filters)."""
        return {name: n for name, n in self.removed.items() if name in FILTERS}

    @property
    def duplicates(self) -> int:
        return self.removed.get("duplicate", 0)

    @property
    def capped(self) -> int:
        return self.removed.get("max_per_prompt", 0)

    def reached(self) -> dict[str, int]:
        """Samples that reached each stage."""
        out, left = {}, self.total
        for name, n in self.removed.items():
            out[name] = left
            left -= n
        return out

    def keep_rates(self) -> dict[str, float]:
        """Per stage: the share of the samples reaching it that it lets through (1.0 if none reach it)."""
        return {name: _rate(n - self.removed[name], n) for name, n in self.reached().items()}

    @property
    def keep_rate(self) -> float:
        return _rate(self.kept, self.total)

    def format(self) -> str:
        rows = [f"{'stage':<16}{'reached':>9}{'removed':>9}{'keep rate':>11}"]
        for name, n in self.reached().items():
            rows.append(f"{name:<16}{n:>9}{self.removed[name]:>9}{self.keep_rates()[name]:>11.1%}")
        rows.append(f"{'kept':<16}{self.kept:>9}{'of ' + str(self.total):>9}{self.keep_rate:>11.1%}")
        return "\n".join(rows)


def _rate(kept: int, seen: int) -> float:
    return kept / seen if seen else 1.0


def filter_candidates(cands: list[Candidate], cfg: RejectionConfig) -> tuple[list[Candidate], Report]:
    """The candidates that pass every enabled filter, de-duplicated and capped per prompt, in input order."""
    cfg.validate()
    removed = dict.fromkeys(cfg.enabled(), 0)
    passed = []
    for c in cands:
        rejected = first_rejection(c, cfg)
        if rejected is None:
            passed.append(c)
        else:
            removed[rejected[0]] += 1
    distinct = dedupe(passed)
    kept = cap_per_prompt(distinct, cfg.max_per_prompt)
    removed["duplicate"] = len(passed) - len(distinct)
    removed["max_per_prompt"] = len(distinct) - len(kept)
    return kept, Report(total=len(cands), removed=removed)


def dedupe(cands: list[Candidate]) -> list[Candidate]:
    """The first of each group of candidates with the same prompt and the same completion up to whitespace."""
    seen: set[tuple[str, str]] = set()
    out = []
    for c in cands:
        key = (c.prompt, " ".join(c.completion.split()))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def cap_per_prompt(cands: list[Candidate], cap: int) -> list[Candidate]:
    """The first `cap` candidates of each prompt (all of them when `cap` is 0)."""
    if cap == 0:
        return list(cands)
    taken: Counter[str] = Counter()
    out = []
    for c in cands:
        if taken[c.prompt] < cap:
            taken[c.prompt] += 1
            out.append(c)
    return out


def write_sft_jsonl(kept: list[Candidate], path: str | Path, provenance: dict) -> None:
    """Write one JSON object per kept candidate, {"prompt", "completion", "lang", "source": provenance},
    atomically (runtime/files.py): a reader, or a crash, never sees a half-written file."""
    write_jsonl(path, ({"prompt": c.prompt, "completion": c.completion, "lang": c.lang, "source": provenance}
                       for c in kept))
