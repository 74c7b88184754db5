"""Reward functions across the TRL border: TRL's and open-r1-style rewards inside an r1lab GRPO
step, and r1lab's rewards inside TRL's GRPOTrainer."""

from __future__ import annotations

import pytest
import torch

from r1lab.engine.params import SamplingConfig
from r1lab.errors import UserError
from r1lab.model.architecture import build_model
from r1lab.rl import rewards
from r1lab.rl.rewards import TRLReward, combine_rewards, for_trl, get_reward, score
from r1lab.rl.step import GRPOConfig, grpo_step
from r1lab.tasks.base import Problem
from tests.rl.test_step import PAD, VOCAB, FixedSampler
from tests.tiny_models import TINY_DEEPSEEK, save_tiny_qwen2, tiny_policy

pytest.importorskip("trl")

PROBLEMS = [Problem("1+1", "What is 1+1?", "2", "arithmetic"), Problem("2+3", "What is 2+3?", "5", "arithmetic")]
TEXTS = ["<think>\n1+1=2\n</think>\nSo \\boxed{2}", "<think>\nhmm\n</think>\n\\boxed{3}", "no think, \\boxed{2}",
         "<think>\n2+3=5\n</think>\n\\boxed{5}", "<think>\nhalf", "\\boxed{5} <think>x</think>"]


def test_trl_rewards_run_unchanged_inside_an_r1lab_grpo_step():
    from trl.rewards import accuracy_reward, think_format_reward

    fns = {name: get_reward(f"trl.rewards.{name}") for name in ("accuracy_reward", "think_format_reward")}
    assert all(isinstance(fn, TRLReward) and fn.messages for fn in fns.values())  # annotated list[list[dict]]
    torch.manual_seed(0)
    model = build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
    g = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-3, sampling=SamplingConfig(1.0, 1.0, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    record, _ = grpo_step(model, None, opt, FixedSampler(TEXTS), PROBLEMS, ["p1", "p2"], fns,
                          {"accuracy_reward": 1.0, "think_format_reward": 0.5}, g, PAD, (), seed=0, step=0)
    # what TRL itself computes on the same completions, as chat messages, with the gold as `solution`
    messages = [[{"role": "assistant", "content": t}] for t in TEXTS]
    acc = accuracy_reward(messages, ["2"] * 3 + ["5"] * 3)
    fmt = think_format_reward(messages)
    assert acc == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0] and fmt == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # the table itself
    assert record["reward/accuracy_reward"] == pytest.approx(sum(acc) / 6)
    assert record["reward/think_format_reward"] == pytest.approx(sum(fmt) / 6)
    assert record["reward"] == pytest.approx(sum(a + 0.5 * f for a, f in zip(acc, fmt)) / 6, rel=1e-6)


def _write(tmp_path, monkeypatch, source: str, module: str = "my_trl_rewards") -> None:
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_function_is_called_the_way_it_was_written(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, """
seen = {}
def r1lab_style(completions, problems):            # no **kwargs: r1lab's convention
    return [1.0 for _ in completions]
def reads_strings(completions, **kwargs):          # TRL docs' reward_len: strings
    seen["strings"] = kwargs
    return [float(len(c)) for c in completions]
def reads_messages(completions, **kwargs):         # open-r1's format_reward: unannotated messages
    return [float(len(c[0]["content"])) for c in completions]
def not_applicable(completions, solution, **kwargs):
    return [None if s == "5" else 1.0 for s in solution]
""")
    import my_trl_rewards as m

    assert get_reward("my_trl_rewards.r1lab_style") is m.r1lab_style
    strings, messages = get_reward("my_trl_rewards.reads_strings"), get_reward("my_trl_rewards.reads_messages")
    assert (strings.messages, messages.messages) == (False, True)  # decided by a trial call on a sample
    problems = [Problem("k1", "q1", "2", "arithmetic", meta={"tests": ["t"]}), PROBLEMS[1]]
    out = score({"s": strings, "m": messages}, ["abc", "de"], problems, prompts=["P1", "P2"],
                completion_ids=[[7, 8], [9]], step=3, steps=10)
    assert out == {"s": [3.0, 2.0], "m": [3.0, 2.0]}
    kw = m.seen["strings"]
    assert kw["prompts"] == ["P1", "P2"] and kw["completion_ids"] == [[7, 8], [9]]
    assert kw["solution"] == kw["answer"] == ["2", "5"] and kw["task"] == ["arithmetic"] * 2
    assert kw["tests"] == [["t"], None] and kw["trainer_state"].global_step == 3
    # None is "not applicable": out of the sum (TRL's nansum) and out of the mean
    na = get_reward("my_trl_rewards.not_applicable")
    values = na(["a", "b"], problems)
    assert values == [1.0, None]
    assert combine_rewards({"na": values, "x": [1.0, 1.0]}, {"na": 2.0, "x": 1.0}) == [3.0, 1.0]


def test_a_trl_reward_that_fails_says_how_it_was_called(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, """
def needs_column(completions, verification_info, **kwargs):
    return [1.0 for _ in completions]
def wrong_length(completions, **kwargs):
    return [1.0]
""", module="bad_trl_rewards")
    with pytest.raises(UserError, match=r"reward 'bad_trl_rewards.needs_column' failed \(TypeError.*verification_info"
                                        r".*columns solution, answer, task, lang, key"):
        get_reward("bad_trl_rewards.needs_column")(["a"], PROBLEMS[:1])
    with pytest.raises(UserError, match="expected one number .* per completion, 2 of them"):
        get_reward("bad_trl_rewards.wrong_length")(["a", "b"], PROBLEMS)


def test_r1lab_rewards_run_inside_trls_grpo_trainer(tmp_path, monkeypatch):
    from datasets import Dataset
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    hf_logging.set_verbosity_error()
    calls = []

    def spy(completions, problems):  # an r1lab reward that records what TRL handed it
        calls.append((list(completions), list(problems)))
        return [len(c) / 10 for c in completions]

    monkeypatch.setattr(rewards, "REWARDS", {**rewards.REWARDS, "spy": spy})
    _, tok = tiny_policy()
    model_dir = save_tiny_qwen2(tmp_path / "qwen", tok)
    data = Dataset.from_dict({"prompt": ["What is 1+1?", "What is 2+3?"], "solution": ["2", "5"],
                              "lang": ["en", "zh"]})
    args = TRLGRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no",
                         logging_strategy="steps", logging_steps=1, disable_tqdm=True, max_steps=1, per_device_train_batch_size=4,
                         num_generations=2, max_completion_length=6, seed=0)
    funcs = [for_trl("spy", task="arithmetic"), for_trl("format"), for_trl("accuracy", task="arithmetic")]
    assert [f.__name__ for f in funcs] == ["spy", "format", "accuracy"]
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=data,
                          processing_class=tok)
    trainer.train()
    texts, problems = calls[0]
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    by_prompt = {p.prompt: (p.answer, p.lang, p.task) for p in problems}
    assert by_prompt == {"What is 1+1?": ("2", "en", "arithmetic"), "What is 2+3?": ("5", "zh", "arithmetic")}
    logged = next(entry for entry in trainer.state.log_history if "rewards/spy/mean" in entry)
    assert logged["rewards/spy/mean"] == pytest.approx(sum(len(t) / 10 for t in texts) / 4, rel=1e-5)
    assert "rewards/format/mean" in logged and "rewards/accuracy/mean" in logged


def test_for_trl_needs_a_gold_column():
    with pytest.raises(UserError, match="'solution' or 'answer' column"):
        for_trl("accuracy")(["x"], prompts=["q"])
