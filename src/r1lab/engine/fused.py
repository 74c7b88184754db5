"""Fused operators for the training passes on the CPU: SwiGLU MLPs (one gate+up matmul, the
activation and its backward in C) and RMSNorm (forward and backward in one C pass each).

    with fused_modules(model):   # qualifying MLP and RMSNorm modules swapped for these Functions
        loss = ...; loss.backward()

A Llama / Qwen2 / DeepSeek-V3 dense MLP is down(silu(gate(x)) * up(x)). Through autograd that is
two (T, D) x (D, I) matmuls, `silu`, `mul` and the down matmul, and a backward of two `mul`s, a
`silu_backward` and the matmuls' transposes: five elementwise passes over (T, I) activations that
at T ~ 2,000 tokens per micro-batch stream from memory, each with its own fresh output. `SwiGLU`
computes the same function with gate and up as one (T, D) x (D, 2I) matmul, the activation in one
C pass (`kernels.FusedOps.silu_mul`) and its backward in one more (`silu_mul_backward`, which also
recomputes the activation for the down projection's weight gradient instead of keeping it), and
keeps only x and [gate ; up] for the backward (HF's MLP keeps x, gate, silu(gate), up and their
product). HF's RMSNorm is six operators forward (pow, mean, add, rsqrt, two muls) and about as
many backward, per norm, 2 per layer; `RMSNorm` is one C pass each way (`rms_norm_train`,
`rms_norm_backward`; the weight's gradient summed in a fixed split of the rows, so runs repeat bit
for bit at a given thread count). Same numbers up to float rounding: tests/engine/test_fused.py compares
outputs and every gradient with the modules' own, and tests/rl/test_update.py's fast-vs-plain update runs
through both.

Which modules: MLPs with bias-free `nn.Linear` gate_proj / up_proj / down_proj (exactly that class:
PEFT's LoRA layers are left alone) and a SiLU activation; the RMSNorm classes in `RMS_NORMS` (whose
forward is weight * x / sqrt(mean(x^2) + eps); Gemma's 1 + weight is not among them); float32 CPU
weights only, and the C library must build (`r1lab.engine.kernels`; `R1LAB_KERNELS=0` turns this off).
DeepSeek-V3's dense layers, shared experts and every norm qualify; its routed experts are another
module and are not touched. The swap is an instance attribute set inside the `with` block and
removed after it, so the model, its checkpoints and its `state_dict` never see it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers.activations import SiLUActivation

from r1lab.engine import kernels


class SwiGLU(torch.autograd.Function):
    """down(silu(x Wg^T) * (x Wu^T)) with its hand-written backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down, ops):
        x2 = x.reshape(-1, x.shape[-1])
        w_gate_up = torch.cat([w_gate, w_up])  # (2I, D): rows [gate ; up], the layout ops.silu_mul reads
        gate_up = x2 @ w_gate_up.t()  # (T, 2I)
        out = ops.silu_mul(gate_up) @ w_down.t()  # (T, D)
        ctx.save_for_backward(x2, gate_up, w_gate_up, w_down)
        ctx.ops, ctx.x_shape = ops, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, d_out):
        x2, gate_up, w_gate_up, w_down = ctx.saved_tensors
        d_out = d_out.reshape(-1, d_out.shape[-1])  # (T, D)
        d_gate_up, h = ctx.ops.silu_mul_backward(gate_up, (d_out @ w_down).contiguous())
        need_x, need_gate, need_up, need_down, _ = ctx.needs_input_grad
        dx = (d_gate_up @ w_gate_up).view(ctx.x_shape) if need_x else None
        dw_gate_up = d_gate_up.t() @ x2 if need_gate or need_up else None  # (2I, D)
        inter = w_down.shape[1]
        return (dx, dw_gate_up[:inter] if need_gate else None, dw_gate_up[inter:] if need_up else None,
                d_out.t() @ h if need_down else None, None)


class RMSNorm(torch.autograd.Function):
    """weight * x / sqrt(mean(x^2, -1) + eps) with its hand-written backward, both in C."""

    @staticmethod
    def forward(ctx, x, weight, eps, ops):
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out, rstd = ops.rms_norm_train(x2, weight, eps)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.ops = ops
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, d_out):
        x2, weight, rstd = ctx.saved_tensors
        dx, dw = ctx.ops.rms_norm_backward(x2, weight, rstd, d_out.reshape(x2.shape).contiguous())
        return dx.view(d_out.shape), dw if ctx.needs_input_grad[1] else None, None, None


RMS_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm", "DeepseekV3RMSNorm")


def on_cpu_float32(*weights) -> bool:
    return all(w.dtype == torch.float32 and w.device.type == "cpu" for w in weights)


def is_swiglu(module: nn.Module) -> bool:
    projections = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    return all(type(p) is nn.Linear and p.bias is None for p in projections) \
        and on_cpu_float32(*(p.weight for p in projections)) \
        and isinstance(getattr(module, "act_fn", None), (SiLUActivation, nn.SiLU))


def is_rms_norm(module: nn.Module) -> bool:
    return type(module).__name__ in RMS_NORMS and isinstance(getattr(module, "variance_epsilon", None), float) \
        and on_cpu_float32(module.weight)


def fused_forward(module: nn.Module, ops):
    """The module's forward through its Function, or None when it does not qualify."""
    if is_swiglu(module):
        return lambda x: SwiGLU.apply(x, module.gate_proj.weight, module.up_proj.weight, module.down_proj.weight, ops)
    if is_rms_norm(module):
        return lambda x: RMSNorm.apply(x, module.weight, module.variance_epsilon, ops)
    return None


@contextlib.contextmanager
def fused_modules(model):
    """Within the block, every qualifying MLP and RMSNorm of `model` runs through `SwiGLU` /
    `RMSNorm`; a no-op when the C library is unavailable. `lora.DisabledAdapters` (the LoRA
    reference: the policy's own modules with the adapters off) is not a module: its `.model` is
    swapped, so policy and reference compute their norms the same way."""
    module = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    ops = kernels.fused_ops(8, 1) if isinstance(module, nn.Module) else None  # (any head shape's build has them)
    swapped = []
    try:
        for m in module.modules() if ops is not None else ():
            forward = fused_forward(m, ops)
            if forward is not None:
                m.forward = forward
                swapped.append(m)
        yield
    finally:
        for m in swapped:
            del m.forward  # the class's forward again
