"""Where the model and every tensor the trainers make live: the `device` and `dtype` config fields.

    device: auto | cpu | cuda | cuda:N     # auto: CUDA when torch sees it (cuda:LOCAL_RANK under
                                           # torchrun / accelerate), else the CPU
    dtype:  float32 | bfloat16             # the model's weights (and so its activations)

The fields live on every config that loads a model: zero, sft, rm, sample, `r1lab eval`
(`--device`, `--dtype`); `pipeline` and `distill` have one `device` for all their stages, while
each stage keeps its own `dtype` (and `report.dtype` for the measurements).

`resolve_device` turns the field into a `torch.device` (a one-line UserError for a malformed
name or a CUDA device this machine does not have); `loading.load` puts
the model there in that dtype; every tensor the trainers and the sampler create is then made
on the model's own device (`model_device`), never on torch's global default device. Collectives
under nccl run on the current CUDA device (distributed.comm_device); checkpoints hold CPU tensors
(and the CUDA RNG states when CUDA is in use), so they load anywhere.

Departures and limits:
- bfloat16 means the weights themselves are bfloat16 and AdamW updates them in bfloat16 (no
  float32 master copy, no autocast, as a plain `model.to(torch.bfloat16)`): an update smaller
  than half a weight's bfloat16 spacing (|w| / 512 to |w| / 256) rounds away, so training at the GPU
  recipes' learning rates (1e-5, 3e-6) would barely move the weights. It suits sampling and
  evaluation (half the memory); float32 stays the default. Log-probabilities, the losses and
  the sampler's CDF are still computed in float32 / float64.
- pretraining r1lab's own tiny base (model/base.py) stays on the CPU: it is a CPU-sized model,
  cached, and every stage then loads it onto `device`.
- The sampler's C kernels (engine/kernels.py) are CPU float32 only: any other device or dtype decodes
  with torch ops (sampler.dense_kernel).
- Random draws for sampling come from seeded CPU generators and are moved to the model's device,
  so a seed gives the same draws on every device (and bit-identical results on the CPU).
- Device placement is verified on CPU only (tests/runtime/test_device.py runs the trainers with torch's
  default device set to "meta", so a tensor made without `device=` fails or shows up); no CUDA
  run has been done here.
"""

from __future__ import annotations

import os
import re

import torch

from r1lab.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(name: str | torch.device = "auto", field: str = "device") -> torch.device:
    """The torch.device the `device` config field names (a torch.device is returned as it is);
    UserError (one line) when it is malformed or names a CUDA device this machine does not have.
    "auto" and "cuda" mean this process's GPU: cuda:LOCAL_RANK under a launcher (distributed.init
    sets it as the current device too)."""
    if isinstance(name, torch.device):
        return name
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise UserError(f"{field}: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"{field}: '{name}' asked for, but torch sees no CUDA device on this machine "
                        "(torch.cuda.is_available() is False); use device=auto or device=cpu")
    index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise UserError(f"{field}: cuda:{index} asked for, but this machine has {torch.cuda.device_count()} "
                        "CUDA device(s)")
    return torch.device("cuda", index)


def resolve_dtype(name: str = "float32", field: str = "dtype") -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"{field}: expected one of {', '.join(map(repr, DTYPES))}, got {name!r}")
    return DTYPES[name]


def check(cfg, prefix: str = "") -> None:
    """A config's `device` field and its `dtype` field (if it has one), checked in its validate()."""
    resolve_device(cfg.device, f"{prefix}device")
    if hasattr(cfg, "dtype"):
        resolve_dtype(cfg.dtype, f"{prefix}dtype")


def model_device(model) -> torch.device:
    """The device of `model`'s (first) parameter: where the tensors that meet it are made. A
    wrapper without parameters of its own (lora.DisabledAdapters) is asked for its `.model`'s."""
    while not hasattr(model, "parameters"):
        model = model.model
    return next(model.parameters()).device


def to_cpu(obj):
    """`obj` with every tensor in it (nested dicts, lists, tuples) moved to the CPU: trainer state
    that `torch.load` reads on a machine without the GPU it was saved from."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
