"""SwiGLU MLPs fused for the training passes on the CPU: one gate+up matmul, the activation and its
backward in C.

    with fused_mlps(model):   # every qualifying MLP's forward swapped for `SwiGLU.apply`
        loss = ...; loss.backward()

A Llama / Qwen2 / DeepSeek-V3 dense MLP is down(silu(gate(x)) * up(x)). Through autograd that is
two (T, D) x (D, I) matmuls, `silu`, `mul` and the down matmul, and a backward of two `mul`s, a
`silu_backward` and the matmuls' transposes: five elementwise passes over (T, I) activations that
at T ~ 2,000 tokens per micro-batch stream from memory, each with its own fresh output. `SwiGLU`
computes the same function with gate and up as one (T, D) x (D, 2I) matmul, the activation in one
C pass (`kernels.FusedOps.silu_mul`) and its backward in one more (`silu_mul_backward`, which also
recomputes the activation for the down projection's weight gradient instead of keeping it), and
keeps only x and [gate ; up] for the backward (HF's MLP keeps x, gate, silu(gate), up and their
product). Same numbers up to float rounding: tests/test_fused_mlp.py compares outputs and every
gradient with the module's own forward, and tests/test_rl.py's fast-vs-plain update runs through it.

Which modules: those with bias-free `nn.Linear` gate_proj / up_proj / down_proj (exactly that
class: PEFT's LoRA layers are left alone), a SiLU activation, float32 CPU weights; the C library
must build (`r1lab.kernels`; `R1LAB_KERNELS=0` turns this off). DeepSeek-V3's dense layers and
shared experts qualify; its routed experts are another module and are not touched. The swap is an
instance attribute set inside the `with` block and removed after it, so the model, its
checkpoints and its `state_dict` never see it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers.activations import SiLUActivation

from r1lab import kernels


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


def qualifies(module: nn.Module) -> bool:
    projections = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    return all(type(p) is nn.Linear and p.bias is None and p.weight.dtype == torch.float32
               and p.weight.device.type == "cpu" for p in projections) \
        and isinstance(getattr(module, "act_fn", None), (SiLUActivation, nn.SiLU))


def fused_forward(module: nn.Module, ops):
    def forward(x):
        return SwiGLU.apply(x, module.gate_proj.weight, module.up_proj.weight, module.down_proj.weight, ops)
    return forward


@contextlib.contextmanager
def fused_mlps(model):
    """Within the block, every qualifying MLP of `model` runs through `SwiGLU`; a no-op when the
    C library is unavailable or nothing qualifies (e.g. `lora.DisabledAdapters`, not a module, whose
    LoRA-wrapped layers would not qualify anyway)."""
    modules = [m for m in model.modules() if qualifies(m)] if isinstance(model, nn.Module) else []
    ops = kernels.fused_ops(8, 1) if modules else None  # the library's MLP ops do not depend on the head shape
    if ops is None:
        yield
        return
    for m in modules:
        m.forward = fused_forward(m, ops)
    try:
        yield
    finally:
        for m in modules:
            del m.forward  # the class's forward again
