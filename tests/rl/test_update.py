"""The fast GRPO update against a plain, textbook one: same loss, same gradients, same weights.

`update_policy` (rl/update.py) takes shortcuts: length-sorted micro-batches, each padded only to
its own longest completion; each distinct prompt computed once per update and its KV cache shared
by its completions (gradients flow back through the sharing); log-probs as gather − logsumexp; no
π_old forward when μ = 1; no reference forward when β = 0; rows with a zero advantage skipped
when β = 0; token weights precomputed over the whole rollout. `plain_update` (rl/plain.py) takes
none of them: one batch padded to the global maximum, full logits, full log-softmax, an explicit
π_old forward, and each aggregation written out as in its paper. Both run from the same weights with
plain SGD (so weight differences are gradient differences, not Adam's sign-like first step);
everything must agree within float tolerance.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.engine.params import SamplingConfig
from r1lab.engine.sampler import Generation
from r1lab.model.architecture import build_model
from r1lab.rl.plain import plain_update
from r1lab.rl.step import GRPOConfig
from r1lab.rl.update import length_batches, update_policy
from tests.tiny_models import TINY_DEEPSEEK

VOCAB, PAD = 64, 0


def tiny_model(kind: str):
    torch.manual_seed(0)
    if kind == "deepseek":
        return build_model(TINY_DEEPSEEK, VOCAB, PAD, 1, 2)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    return Qwen2ForCausalLM(config).float()


def rollout() -> Generation:
    """3 prompts of different lengths × 3 samples of lengths 1..13 (ragged, as a real rollout)."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (5, 9, 3)]
    lengths = [7, 1, 13, 4, 12, 2, 9, 3, 6]
    completions = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]
    return Generation(prompts, completions, [""] * 9, [False] * 9, n=3)


@pytest.mark.parametrize("kind", ["deepseek", "qwen2"])
@pytest.mark.parametrize(
    "aggregation, beta, mu, micro_tokens",  # micro_tokens 20: 4 micro-batches instead of 2
    [("sequence_mean", 0.0, 1, 0), ("sequence_mean", 0.0, 1, 20), ("token_mean", 0.1, 1, 20),
     ("constant", 0.0, 2, 0), ("sequence_mean", 0.05, 2, 20)],
)
@pytest.mark.parametrize("loss", ["ppo_clip", "gspo", "cispo"])
def test_fast_update_matches_the_plain_one(kind, aggregation, beta, mu, micro_tokens, loss):
    gen = rollout()
    adv = torch.tensor([1.0, -0.5, 0.0, -1.0, 0.7, 0.1, 0.0, 0.9, -1.3])  # two zero advantages
    rows = [0, 1, 2, 6, 7, 8]  # group 1 dropped, as a zero-spread group would be
    g = GRPOConfig(lr=0.5, aggregation=aggregation, beta=beta, mu=mu, micro_batch=4, micro_tokens=micro_tokens, grad_clip=1e9, loss=loss,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16))
    fast = tiny_model(kind).train()
    plain = copy.deepcopy(fast)
    ref = copy.deepcopy(fast).eval().requires_grad_(False) if beta > 0 else None
    if ref is not None:  # a reference that differs from the policy, so the KL term is not zero
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.01 * torch.randn_like(p))
    before = copy.deepcopy(fast.state_dict())

    stats = update_policy(fast, ref, torch.optim.SGD(fast.parameters(), lr=g.lr), gen, adv, rows, g, PAD, step=0)
    loss = plain_update(plain, ref, torch.optim.SGD(plain.parameters(), lr=g.lr), gen, adv, rows, g, PAD)

    assert stats["loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    moved = 0.0
    for name, p in fast.state_dict().items():
        torch.testing.assert_close(p, plain.state_dict()[name], rtol=1e-4, atol=1e-6, msg=name)
        moved = max(moved, float((p - before[name]).abs().max()))
    assert moved > 1e-3  # the update did something, so agreeing is not trivial


def test_length_batches_keep_every_row_and_sort_by_length():
    gen = rollout()
    batches = length_batches(gen, [0, 1, 2, 6, 7, 8], 4)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 6, 7, 8] and [len(b) for b in batches] == [4, 2]
    flat = [len(gen.completion_ids[i]) for b in batches for i in b]
    assert flat == sorted(flat)


def test_length_batches_respect_the_token_budget():
    gen = rollout()  # lengths 7, 1, 13, 4, 12, 2, 9, 3, 6
    batches = length_batches(gen, list(range(9)), size=4, tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(9))
    padded = [len(b) * max(len(gen.completion_ids[i]) for i in b) for b in batches]
    assert [len(b) for b in batches] == [4, 2, 1, 1, 1] and padded == [16, 14, 9, 12, 13]
    # a single row longer than the budget still gets its own micro-batch
    assert length_batches(gen, [2], size=4, tokens=5) == [[2]]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_all_zero_advantages_step_like_a_zero_gradient(optimizer):
    # Nothing is computed, but the optimizer still steps on a zero gradient, as the plain update
    # does: for AdamW with momentum from an earlier step, that still moves the weights.
    gen = rollout()
    g = GRPOConfig(lr=0.01, micro_batch=4, sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16))
    fast = tiny_model("qwen2").train()
    plain = copy.deepcopy(fast)
    make = (lambda m: torch.optim.SGD(m.parameters(), lr=g.lr)) if optimizer == "sgd" else \
        (lambda m: torch.optim.AdamW(m.parameters(), lr=g.lr))
    opt_fast, opt_plain = make(fast), make(plain)
    warm = torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0, 0.0, -0.5, 0.2, 0.3])
    for model, opt in ((fast, opt_fast), (plain, opt_plain)):  # the same first step, so same state
        update_policy(model, None, opt, gen, warm, list(range(9)), g, PAD, step=0)
    before = copy.deepcopy(fast.state_dict())
    zero = torch.zeros(9)
    stats = update_policy(fast, None, opt_fast, gen, zero, list(range(9)), g, PAD, step=1)
    plain_update(plain, None, opt_plain, gen, zero, list(range(9)), g, PAD)
    assert stats["loss"] == 0.0
    moved = 0.0
    for name, p in fast.state_dict().items():
        torch.testing.assert_close(p, plain.state_dict()[name], rtol=1e-5, atol=1e-7, msg=name)
        moved = max(moved, float((p - before[name]).abs().max()))
    assert (moved > 1e-4) == (optimizer == "adamw")  # SGD stands still on a zero gradient; Adam does not


@pytest.mark.parametrize("kind, path", [("deepseek", "static"), ("deepseek", "dynamic"), ("qwen2", "static"),
                                        ("qwen2", "kernels"), ("qwen2", "dynamic")])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_vs_trainer_drift_is_at_rounding_level(kind, path, temperature, monkeypatch, capsys):
    """The decoders' own log-probs of the tokens they drew against the trainer's, in a real GRPO
    step: r1lab's static cache in torch ops and with the C kernels, and the model's own forward over
    a transformers cache (the fallback); float32 on the CPU: rounding, at most 1e-4 on average."""
    from r1lab.engine.sampler import HFSampler
    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.rl.step import grpo_step
    from r1lab.tasks.base import Problem
    from tests.tiny_models import length_reward

    monkeypatch.setenv("R1LAB_KERNELS", "1" if path == "kernels" else "0")
    tok = train_tokenizer(["abcab cab ba xyz, 12+34=46"] * 20, vocab_size=VOCAB + 40)
    torch.manual_seed(0)
    if kind == "deepseek":
        model = build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    else:
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                             max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    sampler = HFSampler(model, tok, static_cache=path != "dynamic")
    assert sampler.static_cache == (path != "dynamic")
    g = GRPOConfig(prompts_per_step=3, group_size=4, lr=1e-3, sampling=SamplingConfig(temperature, 1.0, 24))
    problems = [Problem(f"p{i}", q, "0", "arithmetic") for i, q in enumerate(["abc", "12+34", "x y z cab"])]
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr)
    record, gen = grpo_step(model.train(), None, opt, sampler, problems, [p.prompt for p in problems],
                            {"length": length_reward}, {"length": 1.0}, g, tok.pad_token_id, (), seed=0, step=0)
    assert gen.draw_logprobs is not None and [len(x) for x in gen.draw_logprobs] == [len(c) for c in gen.completion_ids]
    with capsys.disabled():
        print(f"\ndrift {kind}/{path} T={temperature}: mean {record['drift_logp_mean']:.2e}, "
              f"max {record['drift_logp_max']:.2e}, k3 {record['drift_kl']:.2e}")
    assert 0 <= record["drift_logp_mean"] <= 1e-4 and record["drift_logp_max"] < 1e-3
    assert 0 <= record["drift_kl"] < 1e-10  # k3 >= 0, and ~d^2 / 2 for a difference d of ~1e-7
