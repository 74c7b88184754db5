"""The non-finite guard (guard.py) in every trainer: a NaN step leaves the weights bit-identical,
is counted once and logged, and the next normal step still updates."""

from __future__ import annotations

import json
import math

import torch

import r1lab.model.base
from r1lab.engine.params import SamplingConfig
from r1lab.engine.sampler import Generation
from r1lab.model.architecture import build_model
from r1lab.rl.step import GRPOConfig, grpo_step
from r1lab.runtime.guard import guarded_step, is_finite
from r1lab.tasks.base import Problem
from tests.tiny_models import TINY_DEEPSEEK

VOCAB, PAD = 64, 0


def snapshot(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (the routers' bias too), copied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_guarded_step_unit():
    assert is_finite(1.0, torch.tensor(2.0)) and not is_finite(math.nan, 1.0) and not is_finite(1.0, math.inf)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    lines = []
    (w * torch.tensor([1.0, math.nan, 1.0])).sum().backward()
    norm, skipped = guarded_step(opt, [w], 1.0, 0.5, lines.append, "step 1")
    assert skipped and math.isnan(norm) and torch.equal(w.detach(), torch.ones(3)) and w.grad is None
    assert opt.state == {} or not opt.state[w]  # Adam's moments and step count did not move
    assert len(lines) == 1 and lines[0].startswith("step 1: non-finite")
    w.sum().backward()
    _, skipped = guarded_step(opt, [w], 1.0, math.nan, lines.append)  # finite gradient, NaN loss: skipped too
    assert skipped and torch.equal(w.detach(), torch.ones(3))
    w.sum().backward()
    _, skipped = guarded_step(opt, [w], 1.0, 3.0, lines.append)
    assert not skipped and not torch.equal(w.detach(), torch.ones(3)) and len(lines) == 2


# --- GRPO: a NaN reward ------------------------------------------------------------------------


class FixedSampler:
    """Returns the same ragged rollout of 2 prompts x 3 samples whatever it is asked."""

    def generate(self, prompts, n, params):
        g = torch.Generator().manual_seed(1)
        prompt_ids = [torch.randint(3, VOCAB, (k,), generator=g).tolist() for k in (5, 3)]
        completions = [torch.randint(3, VOCAB, (k,), generator=g).tolist() for k in (4, 2, 6, 3, 5, 1)]
        return Generation(prompt_ids, completions, ["x"] * 6, [False] * 6, n=n)


def test_grpo_nan_reward_skips_the_update():
    """drop_zero_spread=False, so the NaN reaches the loss (with the filter, a group holding a NaN
    has no spread and is dropped before the update)."""
    torch.manual_seed(0)
    model = build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
    g = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-2, drop_zero_spread=False,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    problems = [Problem("1+1", "1+1", "2", "arithmetic"), Problem("2+2", "2+2", "4", "arithmetic")]
    poison = {"on": True}

    def reward(texts, probs):  # one NaN reward in the first group, on the poisoned step
        return [math.nan if poison["on"] and i == 0 else float(i % 2) for i in range(len(texts))]

    lines = []

    def step(k):
        return grpo_step(model, None, opt, FixedSampler(), problems, ["a", "b"], {"r": reward}, {"r": 1.0}, g,
                         PAD, (), seed=k, step=k, log=lines.append)[0]

    before = snapshot(model)
    record = step(0)
    assert same(before, snapshot(model))
    assert record["skipped_steps"] == 1 and record["groups_nonfinite_reward"] == 1
    assert len(lines) == 2 and "1 of 2 groups have a non-finite reward" in lines[0] and "(dropped)" not in lines[0]
    assert "grpo step 1: non-finite" in lines[1]
    poison["on"] = False
    record = step(1)
    assert record["skipped_steps"] == 0 and math.isfinite(record["grad_norm"])
    assert not same(before, snapshot(model))


def test_grpo_nan_reward_group_is_dropped_counted_and_logged():
    """With drop_zero_spread (the default) the group holding a NaN is dropped from the update, but
    not silently: the step counts it and logs it, and the other group still trains."""
    torch.manual_seed(0)
    model = build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
    g = GRPOConfig(prompts_per_step=2, group_size=3, lr=1e-2,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8))
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    problems = [Problem("1+1", "1+1", "2", "arithmetic"), Problem("2+2", "2+2", "4", "arithmetic")]

    def reward(texts, probs):  # group 1: a NaN among spread rewards; group 2: spread, finite
        return [math.nan if i == 1 else float(i % 2) for i in range(len(texts))]

    lines = []
    before = snapshot(model)
    record = grpo_step(model, None, opt, FixedSampler(), problems, ["a", "b"], {"r": reward}, {"r": 1.0}, g,
                       PAD, (), seed=0, step=0, log=lines.append)[0]
    assert record["groups_nonfinite_reward"] == 1 and record["zero_spread_frac"] == 0.5
    assert lines == ["grpo step 1: 1 of 2 groups have a non-finite reward (dropped)"]
    assert record["skipped_steps"] == 0 and math.isfinite(record["grad_norm"]) and not same(before, snapshot(model))
    clean = grpo_step(model, None, opt, FixedSampler(), problems, ["a", "b"], {"r": lambda t, p: [float(i % 2) for i in range(len(t))]},
                      {"r": 1.0}, g, PAD, (), seed=1, step=1, log=lines.append)[0]
    assert clean["groups_nonfinite_reward"] == 0 and len(lines) == 1


# --- SFT, the reward model, pretraining: a hook makes the first step's loss NaN -----------------


def poison_first_forward(model) -> list[dict]:
    """Make the first forward's logits NaN; return the list that gets a weight snapshot at the start
    of every forward (so snapshots[1] is the weights after the first, poisoned, step)."""
    snapshots: list[dict] = []

    def pre(module, args, kwargs):
        snapshots.append(snapshot(module))

    def post(module, args, kwargs, output):
        if len(snapshots) == 1:
            output.logits = output.logits * math.nan
        return output

    model.register_forward_pre_hook(pre, with_kwargs=True)
    model.register_forward_hook(post, with_kwargs=True)
    return snapshots


def test_sft_nan_loss_skips_the_step():
    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.stages.sft import Example, SFTConfig, lr_at, train_sft

    tok = train_tokenizer(["User: 12+34? Assistant: <think> 2+4=6 </think> <answer>46</answer>"] * 20, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    examples = [Example([5 + i, 6, 7], [8, 9 + i, tok.eos_token_id], f"x:{i}") for i in range(4)]
    cfg = SFTConfig(epochs=2, lr=1e-2, warmup_steps=0, rows_per_step=8, micro_rows=8, seq_len=64)
    snapshots = poison_first_forward(model)
    lines = []
    history = train_sft(model, tok, examples, cfg, log=lines.append)
    assert [r["skipped_steps"] for r in history] == [1, 0] and len(snapshots) == 2
    assert same(snapshots[0], snapshots[1])  # the poisoned step changed nothing, router bias included
    assert not same(snapshots[1], snapshot(model))  # the normal step after it did
    assert sum("non-finite" in line for line in lines) == 1 and "sft step 1" in lines[0]
    assert history[1]["lr"] == lr_at(1, 2, cfg) < cfg.lr  # the cosine schedule counted the skipped step


def test_rm_nan_loss_skips_the_step(tmp_path):
    from r1lab.data.preferences import PreferencePair
    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.runtime.loading import load
    from r1lab.stages.rm import RMConfig, train_rm

    tok = train_tokenizer(["hello there, the capital is Paris; no thanks"] * 20, vocab_size=300)
    torch.manual_seed(0)
    build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok = load(tmp_path, head="score")
    pairs = [PreferencePair("hello", "hello there", "no thanks", "en", "x"),
             PreferencePair("capital?", "the capital is Paris", "hello", "en", "x")]
    snapshots = poison_first_forward(model)
    lines = []
    history = train_rm(model, tok, pairs, RMConfig(epochs=2, lr=1e-2, batch_pairs=8), log=lines.append)
    assert [h["skipped_steps"] for h in history] == [1, 0] and len(snapshots) == 2
    assert same(snapshots[0], snapshots[1])
    assert not same(snapshots[1], snapshot(model))
    assert sum("non-finite" in line for line in lines) == 1


def test_pretrain_nan_loss_skips_the_step(tmp_path, monkeypatch):
    from r1lab.model.base import PretrainConfig, pretrain
    from r1lab.runtime.config import load_config

    built = []

    def build_and_poison(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built.append((model, poison_first_forward(model)))
        return model

    monkeypatch.setattr(r1lab.model.base, "build_model", build_and_poison)
    cfg = load_config(PretrainConfig, None, [
        f"cache_dir={tmp_path}", "steps=2", "corpus.n_docs=200", "corpus.signs.n_docs=50", "batch_size=2", "seq_len=128", "vocab_size=300",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.dense_intermediate=64",
        "model.expert_intermediate=32", "model.kv_lora_rank=16", "warmup_steps=0"])
    lines = []
    out = pretrain(cfg, log=lines.append)
    (model, snapshots), = built
    assert json.loads((out / "pretrain.json").read_text())["skipped_steps"] == 1 and len(snapshots) == 2
    assert same(snapshots[0], snapshots[1])
    assert not same(snapshots[1], snapshot(model))
    assert sum("non-finite" in line for line in lines) == 1 and "pretrain step 0" in next(
        line for line in lines if "non-finite" in line)
