"""Tables for r1lab.rl.rewards: accuracy (delegated to the task), format, registry, combination."""

from __future__ import annotations

import time

import pytest

from r1lab.errors import UserError
from r1lab.grading.verify import answers_equal
from r1lab.rl import rewards
from r1lab.rl.rewards import REWARDS, accuracy, combine_rewards, format_reward, get_reward, register
from r1lab.tasks.base import Problem


class FakeTask:
    """Grades by r1lab.grading.verify and records what it was asked, so tests see the delegation."""

    def __init__(self, name: str):
        self.name = name
        self.calls: list[tuple[str | None, Problem]] = []

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        self.calls.append((extracted, problem))
        return extracted is not None and answers_equal(extracted, problem.answer)


class NeverRightTask(FakeTask):
    def grade(self, extracted, problem):
        self.calls.append((extracted, problem))
        return False


@pytest.fixture
def fake_tasks(monkeypatch):
    """Two tasks behind `r1lab.tasks.get_task`, which the tasks package may not define yet."""
    registry = {"math": FakeTask("math"), "never": NeverRightTask("never")}
    monkeypatch.setattr(rewards.tasks, "get_task", lambda name: registry[name], raising=False)
    return registry


def problem(answer: str, task: str = "math") -> Problem:
    return Problem(key=f"q{answer}", prompt="What is it?", answer=answer, task=task)


# --------------------------------------------------------------------------------------------
# accuracy

ACCURACY = [
    ("<think>2+2</think> <answer>4</answer>", "4", 1.0),
    ("<think>2+2</think> <answer>5</answer>", "4", 0.0),
    ("<answer>\\frac12</answer>", "0.5", 1.0),
    ("The answer is \\boxed{4}.", "4", 1.0),  # format is the format reward's business
    ("The answer is 4.", "4", 1.0),  # the phrase is an answer format too (r1lab.grading.verify)
    ("So it is 4", "4", 0.0),  # nothing extracted
    ("<answer>3</answer> no, <answer>4</answer>", "4", 1.0),
    ("<answer>4</answer> no, <answer>3</answer>", "4", 0.0),
]


@pytest.mark.parametrize("completion, gold, expected", ACCURACY)
def test_accuracy(completion, gold, expected, fake_tasks):
    assert accuracy([completion], [problem(gold)]) == [expected]


def test_accuracy_reads_prose_only_when_asked(fake_tasks):
    """Default: the answer must stand in an answer format (extract.py's strict tier); `prose=True`
    (ZeroConfig.accuracy_prose) also reads the last sentence, as `r1lab eval` does."""
    completions = ["So it is 4", "Hence she has 4 apples.", "<answer>4</answer><|im_end|>user: 5"]
    problems = [problem("4")] * 3
    assert accuracy(completions, problems) == [0.0, 0.0, 1.0]
    assert accuracy(completions, problems, prose=True) == [1.0, 1.0, 1.0]


def test_zero_config_keeps_the_strict_reward_by_default():
    from r1lab.stages.zero import ZeroConfig

    assert ZeroConfig().accuracy_prose is False


def test_accuracy_delegates_to_each_problems_task(fake_tasks):
    problems = [problem("4", task="math"), problem("4", task="never"), problem("7", task="math")]
    completions = ["<answer>4</answer>", "<answer>4</answer>", "nothing"]
    assert accuracy(completions, problems) == [1.0, 0.0, 0.0]
    # The task sees the extracted answer (None when there is none) and the very Problem object.
    assert fake_tasks["math"].calls == [("4", problems[0]), (None, problems[2])]
    assert fake_tasks["never"].calls[0][1] is problems[1]


def test_accuracy_batch_of_zero(fake_tasks):
    assert accuracy([], []) == []


@pytest.mark.parametrize("fn", [accuracy, format_reward])
def test_reward_rejects_mismatched_batch(fn, fake_tasks):
    with pytest.raises(ValueError):
        fn(["<answer>4</answer>", "<answer>4</answer>"], [problem("4")])


# --------------------------------------------------------------------------------------------
# format

FORMAT = [
    ("<think>2+2=4</think><answer>4</answer>", 1.0),
    ("<think>\n2+2=4\n</think>\n<answer>\n4\n</answer>", 1.0),
    ("  \n<think>a</think> <answer>4</answer>\n\n", 1.0),  # surrounding whitespace is fine
    ("<think></think><answer>4</answer>", 1.0),  # empty think is allowed
    ("<think>a < b and c > d</think><answer>4</answer>", 1.0),  # angle brackets are not tags
    ("<answer>4</answer>", 0.0),  # missing think
    ("<think>a</think>", 0.0),  # missing answer
    ("<think>a</think> 4", 0.0),
    ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),  # two answers
    ("<think>a</think><think>b</think><answer>4</answer>", 0.0),  # two thinks
    ("<think>a</think><answer>4</answer> done.", 0.0),  # text after </answer>
    ("Sure! <think>a</think><answer>4</answer>", 0.0),  # text before <think>
    ("Assistant: <think>a</think><answer>4</answer>", 0.0),  # the template is not ours to emit
    ("<think>a</think> so <answer>4</answer>", 0.0),  # text between the blocks
    ("<think>a</think><answer></answer>", 0.0),  # empty answer
    ("<think>a</think><answer> \n </answer>", 0.0),  # blank answer
    ("<think><think>a</think></think><answer>4</answer>", 0.0),  # nested think
    ("<think>a<answer>4</answer></think>", 0.0),  # answer nested in think
    ("<think>a</think><answer><think>b</think>4</answer>", 0.0),  # think nested in answer
    ("<answer>4</answer><think>a</think>", 0.0),  # wrong order
    ("<think>a<answer>4</answer>", 0.0),  # unclosed think
    ("<think>a</think><answer>4", 0.0),  # unclosed answer
    ("<Think>a</Think><Answer>4</Answer>", 0.0),  # tags are case-sensitive
    ("", 0.0),
]


@pytest.mark.parametrize("completion, expected", FORMAT)
def test_format(completion, expected):
    assert format_reward([completion], [problem("4")]) == [expected]


@pytest.mark.parametrize(
    "completion",
    [
        "<think>" + "x" * 1_000_000 + "</think><answer>4</answer>",
        "<think>" * 100_000,
        "<think>a</think>" + " " * 1_000_000 + "<answer>4",
        "<think>a</think><answer>" + "</think>" * 100_000,
    ],
    ids=["1MB think", "many openers", "1MB gap, unclosed", "many closers"],
)
def test_format_on_huge_completions_is_prompt(completion):
    start = time.perf_counter()
    format_reward([completion], [problem("4")])
    assert time.perf_counter() - start < 10.0  # catches a hang, not a slow machine


# --------------------------------------------------------------------------------------------
# registry


def test_registry_holds_the_paper_rewards():
    assert REWARDS["accuracy"] is accuracy
    assert REWARDS["format"] is format_reward
    assert get_reward("accuracy") is accuracy
    assert get_reward("format") is format_reward


def test_get_reward_imports_a_dotted_path(tmp_path, monkeypatch):
    source = "def brevity(completions, problems):\n    return [0.5 for _ in completions]\n"
    (tmp_path / "my_rewards.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = get_reward("my_rewards.brevity")
    assert fn(["a", "b"], [problem("1"), problem("2")]) == [0.5, 0.5]


@pytest.mark.parametrize(
    "name",
    ["acuracy", "", "no_such_package_xyz.reward", "r1lab.rl.rewards.no_such_function", "r1lab.rl.rewards.REWARDS"],
)
def test_get_reward_errors_name_the_choices(name):
    with pytest.raises(UserError) as info:
        get_reward(name)
    message = str(info.value)
    assert "accuracy" in message and "format" in message and "\n" not in message


def test_register_adds_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(rewards, "REWARDS", dict(REWARDS))

    @register("length")
    def length(completions, problems):
        return [float(len(c)) for c in completions]

    assert rewards.get_reward("length") is length
    with pytest.raises(ValueError):
        register("length")(length)


# --------------------------------------------------------------------------------------------
# combine_rewards

COMBINE = [
    ({"accuracy": [1.0, 0.0]}, {"accuracy": 1.0}, [1.0, 0.0]),
    ({"accuracy": [1.0, 0.0, 1.0], "format": [1.0, 1.0, 0.0]}, {"accuracy": 1.0, "format": 0.5}, [1.5, 0.5, 1.0]),
    ({"accuracy": [1.0, 0.0], "format": [1.0, 1.0]}, {"accuracy": 2.0, "format": -1.0}, [1.0, -1.0]),
    ({"accuracy": [1.0, 1.0], "format": [1.0, 0.0]}, {"accuracy": 0.0, "format": 1.0}, [1.0, 0.0]),
    ({"accuracy": []}, {"accuracy": 1.0}, []),
]


@pytest.mark.parametrize("per_fn, weights, expected", COMBINE)
def test_combine_rewards(per_fn, weights, expected):
    assert combine_rewards(per_fn, weights) == pytest.approx(expected)


@pytest.mark.parametrize(
    "per_fn, weights",
    [
        ({"accuracy": [1.0], "format": [1.0]}, {"accuracy": 1.0}),  # computed, never weighted
        ({"accuracy": [1.0]}, {"accuracy": 1.0, "format": 1.0}),  # weighted, never computed
    ],
)
def test_combine_rewards_needs_matching_names(per_fn, weights):
    with pytest.raises(UserError):
        combine_rewards(per_fn, weights)


def test_combine_rewards_needs_equal_lengths():
    with pytest.raises(ValueError):
        combine_rewards({"accuracy": [1.0, 0.0], "format": [1.0]}, {"accuracy": 1.0, "format": 1.0})


def test_language_reward_is_registered_and_scores_the_chain_of_thought():
    from r1lab.tasks.base import Problem

    zh = Problem("1+1", "计算：1+1", "2", "arithmetic", lang="zh")
    fn = get_reward("language")
    completions = ["<think>\n位 1+1+0=02\n位 0+0+0=00\n</think>\n<answer>2</answer>",  # all Chinese
                   "<think>\n位 1+1+0=02\ndigit 0+0+0=00\n</think>\n<answer>2 digits</answer>",  # half: the answer is not the CoT
                   "<think>\n</think>\n<answer>2</answer>"]  # no words: nothing to mix
    assert fn(completions, [zh] * 3) == [1.0, 0.5, 1.0]


# --------------------------------------------------------------------------------------------
# code


def test_code_reward_is_the_share_of_tests_passed_run_in_the_sandbox():
    from r1lab.tasks.code import CodeTests

    tests = CodeTests(("assert half(4) == 2", "assert half(5) == 2.5", "assert half(0) == 0", "assert half(-2) == -1"))
    code_problem = Problem("half", "Halve x.", "", "code", meta=tests.as_meta())
    completions = [
        "<think>x / 2</think><answer>```python\ndef half(x):\n    return x / 2\n```</answer>",  # all 4
        "```python\ndef half(x):\n    return x // 2\n```",  # floor division: 3 of 4
        "<answer>half is x over two</answer>",  # not Python: a syntax error, 0
        "I would divide by two.",  # no code at all
        "<answer>def half(x):\n    import os\n    os._exit(0)</answer>",  # exits before any report
        "```python\ndef half(x):\n    return x / 2\n```",  # right, but for a math problem: not this reward's
    ]
    problems = [code_problem] * 5 + [Problem("1+1", "1+1", "2", "arithmetic")]
    assert get_reward("code")(completions, problems) == [1.0, 0.75, 0.0, 0.0, 0.0, 0.0]
    assert REWARDS["code"]([], []) == []
    with pytest.raises(ValueError):
        REWARDS["code"](completions[:2], problems[:1])


def test_overlong_penalty_by_hand():
    from r1lab.rl.rewards import overlong_penalty

    # max 100 tokens, buffer 20: free up to 80, then -1/20 per token, -1 at 100
    assert overlong_penalty([10, 80, 81, 90, 100], 100, 20) == [0.0, 0.0, -0.05, -0.5, -1.0]
