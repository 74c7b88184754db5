"""The signs documents of the pretraining corpus, verified independently of the code that wrote them:
every evaluation step shown is right arithmetic, every rejected candidate was wrong, and candidates
are guesses (retries are not the gold more often than a uniform draw among the untried ones)."""

from __future__ import annotations

import random
import re

import pytest

from r1lab.model.corpus import SignsCorpusConfig, build_signs_documents, signs_completion
from r1lab.tasks import make_task
from r1lab.tasks.signs import expression, parse_key, sign_patterns

PROBLEMS = make_task("signs").problems("train", 500, seed=0)
FACT = re.compile(r"^(\d)([+-])(\d)\2(\d)=(\d)(\d)$")
REGISTER = re.compile(r"^(\d+)([+-])(\d+),(\d),(\d+)$")


def value(candidate: str) -> int:
    return eval(candidate)  # noqa: S307 -- digits, + and - only (checked by the caller)


def chains(n_docs: int = 3000, style: str = "checked"):
    rng = random.Random(0)
    for i in range(n_docs):
        problem = PROBLEMS[i % len(PROBLEMS)]
        yield problem, signs_completion(problem, style, rng)


def attempts(text: str) -> list[tuple[str, list[str], list[str], str | None]]:
    """(candidate, evaluation lines, comparison lines, verdict or None) for each `try` block."""
    body = text.split("<think>\n", 1)[1].split("\n</think>", 1)[0]
    out = []
    for line in body.splitlines():
        if line.startswith("try "):
            out.append([line[4:], [], [], None])
        elif line.startswith(("want ", "check ")) or out[-1][2]:
            if line in ("right", "wrong, wait"):
                out[-1][3] = line
            else:
                out[-1][2].append(line.removeprefix("check "))
        else:
            out[-1][1].append(line)
    return [tuple(block) for block in out]


def check_evaluation(candidate: str, lines: list[str]) -> int:
    """Every fact line is right arithmetic on the digits of the register line before it; every
    register line after a fact is that register shifted right with the fact's carry and digit
    shifted in; a block starts from the previous block's result and the candidate's next number.
    Returns the value the last register holds."""
    numbers, ops = [int(x) for x in re.findall(r"\d+", candidate)], re.findall(r"[+-]", candidate)
    block, prev, fact = -1, None, None
    for line in lines:
        if m := FACT.match(line):
            a, op, b, c, carry, digit = m.groups()
            s = int(a) + int(b) + int(c) if op == "+" else int(a) - int(b) - int(c)
            assert (int(carry), int(digit)) == ((s >= 10, s % 10) if op == "+" else (s < 0, s % 10)), line
            assert prev is not None and (prev[0][-1], prev[1], prev[2][-1], prev[3]) == (a, op, b, c), (prev, line)
            fact = (carry, digit)
            continue
        m = REGISTER.match(line)
        assert m, line
        x, op, y, c, r = m.groups()
        if fact is None:  # a block's first register: the running value and the next number
            block += 1
            running = numbers[0] if block == 0 else int(prev[4])
            assert (int(x), op, int(y), c, r) == (running, ops[block], numbers[block + 1], "0", "0" * len(r)), line
        else:
            assert (x, y, c, r) == ("0" + prev[0][:-1], "0" + prev[2][:-1], fact[0], fact[1] + prev[4][:-1]), line
            if set(x + y) == {"0"}:
                fact = None  # the block is done
            else:
                fact = "pending"
        prev = (x, op, y, c, r)
    assert block == len(ops) - 1 and fact is None
    return int(prev[4])


def test_every_evaluation_step_is_right_and_reaches_the_candidates_value():
    for problem, text in chains(1000):
        for candidate, lines, _, _ in attempts(text):
            assert check_evaluation(candidate, lines) == value(candidate), text


def test_every_comparison_subtracts_the_target_and_its_verdict_follows():
    for problem, text in chains(1000):
        _, target = parse_key(problem.key)
        for candidate, _, comparison, verdict in attempts(text):
            v = value(candidate)
            assert comparison[:2] == [f"want {target}", f"{v}-{target},0,00"]
            difference = check_evaluation(f"{v}-{target}", comparison[1:])
            assert difference == (v - target) % 100
            assert verdict == ("right" if difference == 0 else "wrong, wait")


def test_every_rejected_candidate_is_wrong_and_every_chain_ends_right():
    for problem, text in chains():
        _, target = parse_key(problem.key)
        blocks = attempts(text)
        for candidate, _, _, verdict in blocks[:-1]:
            assert verdict == "wrong, wait" and value(candidate) != target
        candidate, _, _, verdict = blocks[-1]
        assert verdict == "right" and value(candidate) == target
        assert text.endswith(f"<answer>{candidate}</answer>")
        assert len({b[0] for b in blocks}) == len(blocks)  # no candidate twice


def test_candidates_are_guesses_not_the_gold():
    first_gold = retry_gold = retries = 0
    expected_retry_gold = 0.0
    texts = list(chains(4000))
    for problem, text in texts:
        blocks = attempts(text)
        first_gold += blocks[0][0] == problem.answer
        for i, (candidate, _, _, _) in enumerate(blocks[1:], start=1):
            retries += 1
            retry_gold += candidate == problem.answer
            expected_retry_gold += 1 / (4 - i)  # a uniform draw among the candidates not yet rejected
    assert first_gold / len(texts) == pytest.approx(0.25, abs=0.03)
    # the gold comes up among retries only as often as elimination makes it, never more
    assert retry_gold / retries == pytest.approx(expected_retry_gold / retries, abs=0.03)
    for problem, text in texts:  # a retry is the next sign pattern in a fixed cyclic order, whatever the gold
        numbers, _ = parse_key(problem.key)
        order = [expression(numbers, signs) for signs in sign_patterns(len(numbers))]
        tried = [b[0] for b in attempts(text)]
        assert all(order[(order.index(a) + 1) % len(order)] == b for a, b in zip(tried, tried[1:]))
    for style in ("bare", "worked"):  # a lone candidate is the gold a quarter of the time
        answers = [t.rsplit("<answer>", 1)[1].removesuffix("</answer>") == p.answer for p, t in chains(2000, style)]
        assert sum(answers) / len(answers) == pytest.approx(0.25, abs=0.03)


def test_style_shares_follow_the_config():
    cfg = SignsCorpusConfig(n_docs=4000)
    docs = build_signs_documents(PROBLEMS, cfg, seed=0)
    templated = [c for p, c in docs if p.startswith("A conversation")]
    assert len(templated) / len(docs) == pytest.approx(cfg.template_share, abs=0.03)
    checked = sum("check " in c for c in templated) / len(templated)
    worked = sum("try " in c and "check " not in c for c in templated) / len(templated)
    assert checked == pytest.approx(cfg.template_checked, abs=0.01)
    assert worked == pytest.approx(cfg.template_worked, abs=0.02)
    plain = [c for p, c in docs if p.startswith("User:")]
    assert sum("check " in c for c in plain) / len(plain) == pytest.approx(1 - cfg.plain_worked, abs=0.03)
