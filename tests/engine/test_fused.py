"""r1lab.engine.fused: the fused SwiGLU and RMSNorm forward and backward against the Hugging Face modules' own."""

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP, Qwen2RMSNorm

from r1lab.engine import kernels
from r1lab.engine.fused import SwiGLU, fused_modules, is_rms_norm, is_swiglu


def mlp(hidden=32, inter=48, act="silu"):
    torch.manual_seed(0)
    return Qwen2MLP(Qwen2Config(hidden_size=hidden, intermediate_size=inter, hidden_act=act))


def forward_backward(module, x, d_out):
    x = x.clone().requires_grad_(True)
    out = module(x)
    out.backward(d_out)
    return out.detach(), [x.grad] + [p.grad.clone() for p in (module.gate_proj.weight, module.up_proj.weight,
                                                               module.down_proj.weight)]


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    assert kernels.fused_ops(8, 1) is not None, "the test machine needs a C compiler"


@pytest.mark.parametrize("shape", [(5, 32), (3, 7, 32), (2, 1, 32)])
def test_fused_forward_and_every_gradient_equal_the_module(shape):
    module = mlp()
    torch.manual_seed(1)
    x, d_out = torch.randn(shape) * 3, torch.randn(shape)  # * 3: silu's curved part and both tails
    out, grads = forward_backward(module, x, d_out)
    module.zero_grad(set_to_none=True)
    with fused_modules(module):
        assert "forward" in vars(module)  # the swap is active
        fused_out, fused_grads = forward_backward(module, x, d_out)
    torch.testing.assert_close(fused_out, out, rtol=1e-5, atol=1e-6)
    for name, a, b in zip(("x", "gate", "up", "down"), fused_grads, grads):  # sums in another order:
        assert float((a - b).abs().max()) <= 1e-6 * float(b.abs().max()), name  # rounding relative to the scale
        assert float(b.abs().max()) > 0.1, name


def test_silu_mul_backward_is_the_derivative():
    ops = kernels.fused_ops(8, 1)
    torch.manual_seed(2)
    gate, up, dh = torch.randn(6, 40) * 4, torch.randn(6, 40), torch.randn(6, 40)
    g, u = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
    h = torch.nn.functional.silu(g) * u
    h.backward(dh)
    d_gate_up, h_c = ops.silu_mul_backward(torch.cat([gate, up], 1), dh)
    torch.testing.assert_close(h_c, h.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_gate_up, torch.cat([g.grad, u.grad], 1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="silu_mul_backward"):
        ops.silu_mul_backward(torch.cat([gate, up], 1), dh[:, :7])


def test_only_plain_float32_silu_mlps_qualify():
    assert is_swiglu(mlp())
    assert not is_swiglu(mlp(act="gelu"))
    assert not is_swiglu(mlp().double())
    biased = mlp()
    biased.up_proj = torch.nn.Linear(32, 48)
    assert not is_swiglu(biased)
    config = Qwen2Config(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=48)
    model = Qwen2ForCausalLM(config)
    assert sum(map(is_swiglu, model.modules())) == 1
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert sum(map(is_swiglu, lora.modules())) == 0  # LoRA's layers are not nn.Linear: left alone


def test_the_swap_is_undone_even_on_error_and_off_without_kernels(monkeypatch):
    module = mlp()
    with pytest.raises(RuntimeError, match="inside"):
        with fused_modules(module):
            raise RuntimeError("inside")
    assert "forward" not in vars(module)
    monkeypatch.setenv("R1LAB_KERNELS", "0")
    with fused_modules(module):
        assert "forward" not in vars(module)


def test_frozen_weights_get_no_gradient():
    module = mlp().requires_grad_(False)
    x = torch.randn(4, 32, requires_grad=True)
    with fused_modules(module):
        module(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in module.parameters())
    assert SwiGLU.apply(x, *(p.weight for p in (module.gate_proj, module.up_proj, module.down_proj)),
                        kernels.fused_ops(8, 1)).shape == (4, 32)


@pytest.mark.parametrize("shape", [(5, 32), (3, 7, 32), (1, 1, 32)])
def test_fused_rms_norm_and_its_gradients_equal_the_module(shape):
    torch.manual_seed(3)
    norm = Qwen2RMSNorm(32, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x, d_out = torch.randn(shape) * 2, torch.randn(shape)
    results = []
    for fused in (False, True):
        norm.weight.grad = None
        xi = x.clone().requires_grad_(True)
        with fused_modules(norm) if fused else contextlib.nullcontext():
            assert ("forward" in vars(norm)) == fused
            out = norm(xi)
        out.backward(d_out)
        results.append((out.detach(), xi.grad, norm.weight.grad.clone()))
    for name, a, b in zip(("out", "x", "weight"), *results):
        assert float((a - b).abs().max()) <= 2e-6 * float(b.abs().max()), name
    assert is_rms_norm(norm) and not is_rms_norm(Qwen2RMSNorm(32).double())


def test_fused_rms_norm_repeats_bit_for_bit():
    norm, x = Qwen2RMSNorm(32), torch.randn(301, 32, requires_grad=True)
    grads = []
    for _ in range(2):
        norm.weight.grad = None
        with fused_modules(norm):
            norm(x).pow(2).sum().backward()
        grads.append(norm.weight.grad.clone())
    assert torch.equal(*grads)
