"""The non-finite guard every trainer's optimizer step goes through.

    grad_norm, skipped = guarded_step(opt, model.parameters(), max_norm, loss, log, "sft step 12")

Clips the gradients (the total norm is what `clip_grad_norm_` returns anyway), then steps the
optimizer only if both the loss and that norm are finite. A step that is not is skipped: the
gradients are dropped, the optimizer's state (Adam's moments and step count) is left as it was,
and one line is logged. The weights are then bit-identical to before the step
(tests/runtime/test_guard.py checks it for GRPO, SFT, the reward model and pretraining).

The learning-rate schedules of r1lab's trainers are functions of the step index, not of how many
updates were applied, so a skipped step still uses up its place in the schedule: the run keeps
its planned length and the steps after the skipped one get exactly the learning rate they would
have had. Trainers count skipped steps as `skipped_steps` in their records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def is_finite(loss: float | torch.Tensor, grad_norm: float | torch.Tensor) -> bool:
    """Both the loss and the total gradient norm are finite numbers."""
    return math.isfinite(float(loss)) and math.isfinite(float(grad_norm))


def guarded_step(opt: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], max_norm: float,
                 loss: float | torch.Tensor, log: Callable[[str], object] = print, where: str = "step") -> tuple[float, bool]:
    """Clip to `max_norm`, step `opt` if `loss` and the gradient norm are finite, always zero the
    gradients. Returns (the gradient norm before clipping, whether the step was skipped)."""
    grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))
    skipped = not is_finite(loss, grad_norm)
    if skipped:
        log(f"{where}: non-finite loss ({float(loss):.4g}) or gradient norm ({grad_norm:.4g}); "
            "step skipped, weights unchanged")
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return grad_norm, skipped
