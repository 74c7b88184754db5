"""Compiled CPU kernels for the sampler, built on first use by the system C compiler and cached.

    fn = decode_attention(head_dim, groups)   # None when it cannot be built: use torch ops
    out = fn(q, k, v, cos, sin, scale, prompt_keys, prompt_values, start, group, slot, keys, values, n)
    ops = fused_ops(head_dim, groups)         # the same library's RMSNorm and SwiGLU activation

`decode_attention` is the dense decoder's attention for one new token per row
(`decode_attention.c` says what each argument holds): RoPE on the new queries and keys, the new
keys and values written into the rows' caches, then scores, softmax and the weighted sum in one
pass that reads each row's K/V once for all its query heads. In torch the same step is four small
batched matmuls, a concatenation and a softmax, each a pass over memory, at ~10 % of this CPU's
FMA throughput (docs/perf.md, entry 15). Numbers: float32 throughout, the same formula as torch's
path, summed in a different order, so results agree to ~1e-6, not bit for bit.

How it is built: `cc -O3 -march=native -ffast-math -fopenmp` with HEAD_DIM and GROUPS fixed per
model shape (a 0.5 s compile), into `$R1LAB_KERNEL_DIR` (default ~/.cache/r1lab/kernels), named by
a hash of the source, the flags, the compiler and the CPU's flags, written to a temporary name
and renamed, so concurrent builds and interrupted ones are harmless. OpenMP resolves to the
libgomp torch has already loaded (same soname), so both share one thread pool. Linux only; any
failure (no compiler, a compile error) prints one warning and returns None, and the sampler falls
back to torch ops. `R1LAB_KERNELS=0` turns the kernels off (for comparisons).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode_attention.c")
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-shared")


def enabled() -> bool:
    return os.environ.get("R1LAB_KERNELS", "1") != "0" and sys.platform.startswith("linux")


def kernel_dir() -> Path:
    return Path(os.environ.get("R1LAB_KERNEL_DIR", Path.home() / ".cache" / "r1lab" / "kernels"))


def _cpu_flags() -> str:
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return ""


@functools.cache
def _build(head_dim: int, groups: int) -> ctypes.CDLL | None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        print("r1lab.kernels: no C compiler (cc); decoding with torch ops instead", file=sys.stderr)
        return None
    flags = (*FLAGS, f"-DHEAD_DIM={head_dim}", f"-DGROUPS={groups}")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, version, _cpu_flags()]).encode()).hexdigest()[:16]
    out = kernel_dir() / f"decode_attention-d{head_dim}-g{groups}-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        done = subprocess.run([compiler, *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            os.unlink(tmp)
            first = (done.stderr.strip().splitlines() or ["?"])[0]
            print(f"r1lab.kernels: compiling {SOURCE.name} failed ({first}); decoding with torch ops instead",
                  file=sys.stderr)
            return None
        os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    lib.rms_norm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p] + [ctypes.c_int64] * 2
    lib.silu_mul.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 2 + [ctypes.c_int]
    lib.decode_attention.restype = None
    lib.decode_attention.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_float] + [ctypes.c_void_p] * 8 + \
        [ctypes.c_int64] * 5 + [ctypes.c_int]
    return lib


def decode_attention(head_dim: int, groups: int):
    """The fused decode attention for this head size and GQA group, or None (use torch ops)."""
    if not enabled() or head_dim % 8 or not 1 <= groups <= 16:
        return None
    lib = _build(head_dim, groups)
    if lib is None:
        return None

    def attend(q, k, v, cos, sin, scale: float, prompt_keys, prompt_values, start, group, slot, keys, values,
               n: int) -> torch.Tensor:
        """q (B, H_kv, G, D) -> (B, H_kv, G, D); shapes as in decode_attention.c, all contiguous,
        W and cap multiples of 8. Writes k (RoPE'd), v (B, H_kv, D) to column n - 1 of keys, values."""
        B, Hkv = q.shape[:2]
        W, cap = prompt_values.shape[-2], values.shape[-2]
        out = torch.empty_like(q)
        tensors = (q, k, v, cos, sin, prompt_keys, prompt_values, start, group, slot, keys, values, out)
        assert all(t.is_contiguous() and t.device.type == "cpu" for t in tensors)
        assert all(t.dtype == torch.float32 for t in (q, k, v, cos, sin, prompt_keys, prompt_values, keys, values))
        assert start.dtype == group.dtype == slot.dtype == torch.int64 and W % 8 == 0 and cap % 8 == 0
        pointers = [t.data_ptr() for t in tensors]
        lib.decode_attention(*pointers[:5], scale, *pointers[5:], B, Hkv, W, cap, n, torch.get_num_threads())
        return out

    return attend


class FusedOps:
    """The decode step's small operators in C (decode_attention.c), for float32 CPU tensors: at
    batch ~128 `F.rms_norm` costs ~35 us and `silu(gate) * up` ~60 us in torch here, 7-10 us and
    ~30 us in C (docs/perf.md, entry 17)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """x (rows, dim) contiguous -> x / sqrt(mean(x^2) + eps) * weight."""
        out = torch.empty_like(x)
        self.lib.rms_norm(x.data_ptr(), weight.data_ptr(), eps, out.data_ptr(), *x.shape)
        return out

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """gate_up (rows, 2I), each row [gate ; up] -> silu(gate) * up, (rows, I)."""
        rows, width = gate_up.shape
        out = gate_up.new_empty(rows, width // 2)
        self.lib.silu_mul(gate_up.data_ptr(), out.data_ptr(), rows, width // 2, torch.get_num_threads())
        return out


def fused_ops(head_dim: int, groups: int) -> FusedOps | None:
    """The fused small operators (built with the attention kernel for this shape), or None."""
    if decode_attention(head_dim, groups) is None:
        return None
    return FusedOps(_build(head_dim, groups))
