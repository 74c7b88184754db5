"""GRPO pieces against values computed by hand from the formulas in ../shared/R1.md."""

import math

import pytest
import torch

from r1lab.rl.grpo import (
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
    token_logprobs,
    token_weights,
)


def test_group_advantages_standardised_per_group():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 0.0, 0.0, 0.0]])
    a = group_advantages(r, eps=0.0 + 1e-12)
    # group 1: mean 0.5, population std 0.5 -> ±1
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-6)
    # group 2: no spread -> all zero (not NaN)
    assert torch.equal(a[1], torch.zeros(4))
    # group 3: mean 0.75, std sqrt(3*0.75^2 + 2.25^2)/2 = 1.299038
    std = math.sqrt((2.25**2 + 3 * 0.75**2) / 4)
    assert torch.allclose(a[2], torch.tensor([2.25, -0.75, -0.75, -0.75]) / std, atol=1e-6)


def test_group_advantages_unscaled_is_dr_grpo():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert torch.allclose(group_advantages(r, scale=False), torch.tensor([[0.5, -0.5, -0.5, 0.5]]))


def test_token_logprobs_matches_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    targets = torch.randint(0, 7, (2, 3))
    ref = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, targets), ref, atol=1e-6)


def test_k3_kl_values():
    logp = torch.log(torch.tensor([0.5, 0.25, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.5, 0.3]))
    # r = ref/p: 0.5 -> 0.5 - ln 0.5 - 1 = 0.193147; 2 -> 2 - ln 2 - 1 = 0.306853; 1 -> 0
    expected = torch.tensor([0.5 - math.log(0.5) - 1, 2 - math.log(2) - 1, 0.0])
    assert torch.allclose(k3_kl(logp, ref), expected, atol=1e-6)
    assert (k3_kl(torch.randn(50), torch.randn(50)) >= 0).all()


@pytest.mark.parametrize(
    "ratio, adv, eps_low, eps_high, loss, clipped",
    [
        (1.5, 1.0, 0.2, 0.2, -1.2, True),  # ratio above 1+ε, positive advantage: capped
        (1.5, -1.0, 0.2, 0.2, 1.5, False),  # negative advantage: the unclipped term is smaller
        (0.5, 1.0, 0.2, 0.2, -0.5, False),
        (0.5, -1.0, 0.2, 0.2, 0.8, True),  # ratio below 1-ε, negative advantage: capped
        (1.5, 1.0, 0.2, 0.28, -1.28, True),  # DAPO clip-higher
        (1.1, 2.0, 0.2, 0.2, -2.2, False),  # inside the trust region
    ],
)
def test_clipped_surrogate(ratio, adv, eps_low, eps_high, loss, clipped):
    old = torch.zeros(1, 1)
    logp = torch.full((1, 1), math.log(ratio))
    out, was_clipped = clipped_surrogate(logp, old, torch.tensor([adv]), eps_low, eps_high)
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert was_clipped.item() is clipped


MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize(
    "aggregation, expected",
    [
        ("sequence_mean", [[1 / 4, 1 / 4, 0], [1 / 2, 0, 0]]),  # 1/G Σ_i 1/|o_i| Σ_t
        ("token_mean", [[1 / 3, 1 / 3, 0], [1 / 3, 0, 0]]),  # Σ tokens / #tokens
        ("constant", [[1 / 8, 1 / 8, 0], [1 / 8, 0, 0]]),  # Σ tokens / (G · L_max), L_max = 4
    ],
)
def test_token_weights(aggregation, expected):
    assert torch.allclose(token_weights(MASK, aggregation, max_len=4), torch.tensor(expected))


def test_grpo_loss_hand_computed():
    # Two samples; sample 0 has 2 tokens, sample 1 has 1 (plus padding).
    logp = torch.log(torch.tensor([[0.6, 0.5, 0.9], [0.2, 0.9, 0.9]]))
    old = torch.log(torch.tensor([[0.5, 0.5, 0.9], [0.4, 0.9, 0.9]]))
    ref = torch.log(torch.tensor([[0.3, 0.5, 0.9], [0.2, 0.9, 0.9]]))
    adv = torch.tensor([1.0, -1.0])
    w = token_weights(MASK, "sequence_mean", 4)
    loss, stats = grpo_loss(logp, old, ref, adv, w, beta=0.1, eps_low=0.2, eps_high=0.2)
    # sample 0, token 0: ratio 1.2 (at the clip edge) -> -1.2; kl(0.6 vs ref 0.3) = 0.5 - ln0.5 - 1
    # sample 0, token 1: ratio 1 -> -1; kl 0
    # sample 1, token 0: ratio 0.5, A=-1 -> min(-0.5, -0.8) = -0.8 -> +0.8; kl 0
    kl00 = 0.5 - math.log(0.5) - 1
    expected = 0.25 * (-1.2 + 0.1 * kl00) + 0.25 * (-1.0) + 0.5 * 0.8
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert stats["clip_frac"] == pytest.approx(1 / 3)  # only sample 1's token is clipped
    assert stats["kl"] == pytest.approx(kl00 / 3, abs=1e-5)


def test_grpo_loss_gradient_sign():
    """With μ = 1 (old = current, detached) the gradient raises log π of positive-advantage tokens."""
    logits = torch.zeros(2, 1, 3, requires_grad=True)
    targets = torch.tensor([[0], [1]])
    lp = token_logprobs(logits, targets)
    loss, _ = grpo_loss(lp, lp.detach(), None, torch.tensor([1.0, -1.0]),
                        token_weights(torch.ones(2, 1), "token_mean", 1), 0.0, 0.2, 0.2)
    loss.backward()
    assert logits.grad[0, 0, 0] < 0  # descending the loss raises the rewarded token's logit
    assert logits.grad[1, 0, 1] > 0  # and lowers the penalised one


def test_micro_batches_sum_to_full_batch_loss():
    torch.manual_seed(0)
    logp, old, ref = torch.randn(4, 5) * 0.1 - 1, torch.randn(4, 5) * 0.1 - 1, torch.randn(4, 5) * 0.1 - 1
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    adv = torch.tensor([0.5, -1.0, 2.0, 0.1])
    for agg in ("sequence_mean", "token_mean", "constant"):
        w = token_weights(mask, agg, 5)
        full, _ = grpo_loss(logp, old, ref, adv, w, 0.04, 0.2, 0.28)
        parts = sum(grpo_loss(logp[s], old[s], ref[s], adv[s], w[s], 0.04, 0.2, 0.28)[0]
                    for s in (slice(0, 1), slice(1, 3), slice(3, 4)))
        assert full.item() == pytest.approx(parts.item(), abs=1e-6)


def test_advantage_estimators_by_hand():
    from r1lab.rl.grpo import ADVANTAGES

    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    centred = torch.tensor([[0.5, -0.5, -0.5, 0.5], [2.25, -0.75, -0.75, -0.75]])
    assert torch.allclose(ADVANTAGES["grpo"](r), group_advantages(r))
    assert torch.allclose(ADVANTAGES["dr_grpo"](r), centred)
    # RLOO: r_i minus the mean of the other three: 1 - (0 + 0 + 1)/3 = 2/3; 3 - 0 = 3; 0 - (3 + 0 + 0)/3 = -1
    assert torch.allclose(ADVANTAGES["rloo"](r), torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [3.0, -1.0, -1.0, -1.0]]))
    # REINFORCE++-baseline: centred per group (batch mean 0), then / the batch's population std
    std = math.sqrt((4 * 0.25 + 2.25**2 + 3 * 0.75**2) / 8)  # sqrt(7.75 / 8)
    assert torch.allclose(ADVANTAGES["reinforce_pp"](r), centred / (std + 1e-4), atol=1e-6)
    # ... with the batch's moments from elsewhere (other ranks' shares): used as given
    assert torch.allclose(ADVANTAGES["reinforce_pp"](r, lambda x: (0.5, 2.0)), (centred - 0.5) / (2.0 + 1e-4))


def test_gspo_clips_one_length_normalised_ratio_per_sequence():
    from r1lab.rl.grpo import gspo_surrogate

    # sequence 0: s = exp((ln 2 + 0 + 0) / 3) = 1.26 > 1 + 0.2 with A = 1: clipped, as a whole;
    # sequence 1 (2 tokens of 3 in its mask): s = exp((ln(0.5 / 0.45) + 0) / 2) = 1.054, inside the region
    logp = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.5, 0.5, 0.1]])).requires_grad_()
    old = torch.log(torch.tensor([[0.25, 0.4, 0.9], [0.45, 0.5, 0.7]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, clipped = gspo_surrogate(logp, old, torch.tensor([1.0, 1.0]), 0.2, 0.2, mask)
    s1 = math.exp(math.log(0.5 / 0.45) / 2)
    assert torch.allclose(loss[0], torch.full((3,), -1.2)) and clipped[0].all()
    assert torch.allclose(loss[1, :2], torch.tensor([-s1, -s1]), atol=1e-6) and not clipped[1].any()
    # the gradient of the sequence-mean of the token losses is GSPO's: -A s_i / |o_i| on each of its
    # tokens, none off the mask, and none for a clipped sequence
    ((loss * mask).sum(1) / mask.sum(1)).sum().backward()
    assert torch.allclose(logp.grad[1], torch.tensor([-s1 / 2, -s1 / 2, 0.0]), atol=1e-6)
    assert torch.equal(logp.grad[0], torch.zeros(3))


@pytest.mark.parametrize("ratio, eps_high, weight, clipped", [(1.5, 0.2, 1.2, True), (1.1, 0.2, 1.1, False),
                                                              (0.5, 0.2, 0.8, True)])
def test_cispo_weights_the_token_loss_by_the_clipped_detached_ratio(ratio, eps_high, weight, clipped):
    from r1lab.rl.grpo import cispo_surrogate

    logp = torch.log(torch.tensor([[0.3 * ratio]])).requires_grad_()
    old = torch.log(torch.tensor([[0.3]]))
    loss, was_clipped = cispo_surrogate(logp, old, torch.tensor([2.0]), 0.2, eps_high, torch.ones(1, 1))
    assert loss.item() == pytest.approx(-weight * 2.0 * math.log(0.3 * ratio), rel=1e-5)
    assert bool(was_clipped) == clipped
    loss.sum().backward()
    assert logp.grad.item() == pytest.approx(-weight * 2.0, rel=1e-5)  # never zeroed by the clip


def test_estimators_and_losses_are_chosen_by_name_and_checked():
    from r1lab.errors import UserError
    from r1lab.rl.step import GRPOConfig, batch_moments
    from r1lab.runtime.config import load_config
    from r1lab.stages.zero import ZeroConfig

    for key, bad in (("advantage", "ppo"), ("loss", "grpo")):
        with pytest.raises(UserError, match=f"{key}: expected one of"):
            GRPOConfig(**{key: bad}).validate()
    with pytest.raises(UserError, match="grpo.scale_rewards: renamed to grpo.advantage"):
        load_config(ZeroConfig, None, ["grpo.scale_rewards=false"])
    cfg = load_config(ZeroConfig, None, ["grpo.advantage=rloo", "grpo.loss=gspo"])
    assert (cfg.grpo.advantage, cfg.grpo.loss) == ("rloo", "gspo")
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    assert batch_moments(x) == pytest.approx((float(x.mean()), float(x.std(unbiased=False))))  # one process
