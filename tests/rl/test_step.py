"""One GRPO step's record: every key it writes is listed (with its meaning) in RECORD_KEYS, and the
values are those of the rollout it describes."""

import pytest
import torch

from r1lab.engine.params import SamplingConfig
from r1lab.engine.sampler import Generation
from r1lab.model.architecture import build_model
from r1lab.rl.step import RECORD_KEYS, GRPOConfig, grpo_step
from r1lab.tasks.base import Problem
from tests.tiny_models import TINY_DEEPSEEK

VOCAB, PAD = 64, 0
TEXTS = ["<think>\nlet me add the digits one by one\n</think>\n<answer>2</answer>", "wait, 5", "<answer>3</answer>",
         "<think>\n</think>\n<answer>4</answer>", "4", "<think>\nsome reasoning, then wait\n</think>"]


class FixedSampler:
    """Two prompts x three samples, always the same tokens and `texts` (six of them)."""

    def __init__(self, texts=TEXTS):
        self.texts = texts

    def generate(self, prompts, n, params):
        g = torch.Generator().manual_seed(1)
        prompt_ids = [torch.randint(3, VOCAB, (k,), generator=g).tolist() for k in (5, 3)]
        completions = [torch.randint(3, VOCAB, (k,), generator=g).tolist() for k in (4, 2, 6, 3, 5, 1)]
        return Generation(prompt_ids, completions, self.texts, [False, False, False, False, True, False], n=n)


def test_the_record_has_exactly_the_listed_keys_and_describes_the_rollout():
    torch.manual_seed(0)
    model = build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
    g = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-3, sampling=SamplingConfig(1.0, 1.0, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    problems = [Problem("1+1", "1+1", "2", "arithmetic"), Problem("2+2", "2+2", "4", "arithmetic", lang="zh")]
    rewards = {"accuracy": lambda texts, ps: [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], "format": lambda texts, ps: [1.0] * 6}
    record, gen = grpo_step(model, None, opt, FixedSampler(), problems, ["a", "b"], rewards,
                            {"accuracy": 1.0, "format": 0.1}, g, PAD, (), seed=0, step=4)
    listed = {k for k in RECORD_KEYS if "<name>" not in k and k != "is_weight_mean"}  # no vLLM here
    assert set(record) == listed | {"reward/accuracy", "reward/format"}
    assert record["step"] == 5
    assert record["accuracy"] == 0.5 and record["format_rate"] == 1.0
    assert record["reward"] == pytest.approx((3 * 1.0 + 6 * 0.1) / 6, rel=1e-6)  # rewards are float32 tensors
    assert record["len_mean"] == (4 + 2 + 6 + 3 + 5 + 1) / 6 and record["len_max"] == 6
    assert record["truncation_rate"] == 1 / 6
    assert record["reasoning_rate"] == 2 / 6  # think blocks of >= 20 characters
    assert record["reflection_rate"] == 2 / 6  # "wait" twice
    assert record["zero_spread_frac"] == 0.0 and record["groups_nonfinite_reward"] == 0


def test_overlong_reward_and_filter():
    """DAPO's length control: the soft punishment enters the reward as `overlong`; overlong filtering
    leaves the truncated sample (the fifth, 5 tokens) out of the loss, which then differs."""
    problems = [Problem("1+1", "1+1", "2", "arithmetic"), Problem("2+2", "2+2", "4", "arithmetic")]
    rewards = {"accuracy": lambda texts, ps: [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]}
    out = {}
    for flt in (False, True):
        torch.manual_seed(0)
        model = build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
        g = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-3, sampling=SamplingConfig(1.0, 1.0, 6),
                       overlong_buffer=4, overlong_weight=0.5, overlong_filter=flt)
        g.validate()
        opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
        out[flt], _ = grpo_step(model, None, opt, FixedSampler(), problems, ["a", "b"], rewards,
                                {"accuracy": 1.0}, g, PAD, (), seed=0, step=0)
    penalty = [-0.5, 0.0, -1.0, -0.25, -0.75, 0.0]  # lengths 4 2 6 3 5 1: free up to 2 tokens, then -1/4 per token
    assert out[False]["reward/overlong"] == pytest.approx(sum(penalty) / 6)
    assert out[False]["reward"] == pytest.approx((3 + 0.5 * sum(penalty)) / 6, rel=1e-6)
    assert (out[False]["overlong_filtered"], out[True]["overlong_filtered"]) == (0, 1)
    assert out[True]["loss"] != pytest.approx(out[False]["loss"])


def test_dynamic_sampling_refills_the_batch_within_its_bound_and_reproduces():
    """Most prompts give every sample the same reward (no spread); with grpo.resample_rounds their
    groups are replaced by fresh prompts' groups until the batch is full, never past the bound, and
    a second run with the same seeds is the same step."""
    from r1lab.engine.sampler import HFSampler
    from r1lab.model.tokenizer import train_tokenizer

    tok = train_tokenizer(["abcab cab ba xyz, 12+34=46"] * 20, vocab_size=VOCAB + 40)
    pool = [Problem(f"q{i}", q, "0", "arithmetic") for i, q in enumerate(["abc", "ba", "xyz", "12+34", "cab", "a b"] * 4)]
    live = {"q3", "q9", "q15", "q21", "q10"}  # the only prompts whose samples get different rewards

    def reward(texts, problems):
        return [len(t) / 10 if p.key in live else 0.5 for t, p in zip(texts, problems)]

    def run(rounds):
        torch.manual_seed(0)
        model = build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
        g = GRPOConfig(prompts_per_step=4, group_size=3, lr=1e-3, sampling=SamplingConfig(1.0, 1.0, 12),
                       resample_rounds=rounds)
        opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
        asked = []

        def refill(r):
            asked.append(r)
            fresh = pool[4 * r: 4 * r + 4]
            return fresh, [p.prompt for p in fresh], tuple(100 * r + i for i in range(4))

        first = pool[:4]  # q0..q3: one with spread
        record, gen = grpo_step(model, None, opt, HFSampler(model, tok), first, [p.prompt for p in first],
                                {"length": reward}, {"length": 1.0}, g, tok.pad_token_id, (), seed=(0, 1, 2, 3), step=0,
                                refill=refill)
        return record, gen, asked

    plain, _, asked = run(0)
    assert asked == [] and plain["groups_kept"] == 1 and plain["generations"] == 12
    full, gen, asked = run(5)
    # spread in q3 (round 0), q9, q10 (round 2), q15 (round 3): four groups after three extra rounds
    assert asked == [1, 2, 3] and full["resample_rounds"] == 3 and full["groups_kept"] == 4
    assert full["generations"] == 4 * 12 and full["zero_spread_frac"] == 12 / 16
    assert len(gen.prompt_ids) == 4 and len(gen.texts) == 12
    bounded, _, asked = run(1)  # one extra round only: q3 and nothing in q4..q7
    assert asked == [1] and bounded["groups_kept"] == 1 and bounded["resample_rounds"] == 1
    again, gen2, _ = run(5)
    assert gen2.texts == gen.texts and again["loss"] == full["loss"]
