"""Compiled CPU kernels for the sampler and the update's fused ops (fused.py), built on first use
by the system C compiler and cached.

    kernel = decode_attention(head_dim, groups)   # None when it cannot be built: use torch ops
    layer = kernel.bind(cos, sin, scale, start, prompt_keys, prompt_values, keys, values)  # once per buffers
    out = layer(qkv, pos, group, slot, n)          # each decode step
    ops = fused_ops(head_dim, groups)             # the same library's RMSNorm and SwiGLU activation

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
        print("r1lab.engine.kernels: no C compiler (cc); decoding with torch ops instead", file=sys.stderr)
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
            print(f"r1lab.engine.kernels: compiling {SOURCE.name} failed ({first}); decoding with torch ops instead",
                  file=sys.stderr)
            return None
        os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    lib.rms_norm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p] + [ctypes.c_int64] * 2
    lib.silu_mul.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 2 + [ctypes.c_int]
    lib.silu_mul_backward.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_int]
    lib.rms_norm_train.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_float] + [ctypes.c_void_p] * 2 + \
        [ctypes.c_int64] * 2 + [ctypes.c_int]
    lib.rms_norm_backward.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3
    lib.sample_rows.argtypes = [ctypes.c_void_p, ctypes.c_float] + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + \
        [ctypes.c_int]
    lib.decode_attention.restype = None
    lib.decode_attention.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 3 + [ctypes.c_float] + \
        [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 5 + [ctypes.c_int]
    return lib


def _check(tensors: dict, dtype: torch.dtype) -> None:
    for name, t in tensors.items():
        if not (t.is_contiguous() and t.device.type == "cpu" and t.dtype == dtype):
            raise ValueError(f"decode_attention: {name} must be a contiguous CPU {dtype} tensor")


class DecodeAttention:
    """The fused decode attention for one (head size, query heads per KV head) shape."""

    def __init__(self, lib: ctypes.CDLL, head_dim: int, groups: int):
        self.lib, self.head_dim, self.groups = lib, head_dim, groups

    def bind(self, cos, sin, scale: float, start, prompt_keys, prompt_values, keys, values) -> BoundAttention:
        """One layer's buffers (shapes in decode_attention.c), checked once: bind again when they
        are replaced (the caches grow). W and cap must be multiples of 8."""
        _check({"cos": cos, "sin": sin, "prompt_keys": prompt_keys, "prompt_values": prompt_values,
                "keys": keys, "values": values}, torch.float32)
        _check({"start": start}, torch.int64)
        Hkv, W, cap, D = values.shape[1], prompt_values.shape[-2], values.shape[-2], self.head_dim
        if W % 8 or cap % 8 or prompt_keys.shape[1:] != (Hkv, W // 8, D, 8) or keys.shape[1:] != (Hkv, cap // 8, D, 8) \
                or cos.shape[-1] != D // 2 or len(start) != len(prompt_values):
            raise ValueError("decode_attention: buffer shapes do not match (see decode_attention.c)")
        return BoundAttention(self, (cos, sin, scale, start, prompt_keys, prompt_values, keys, values), Hkv, W, cap)


class BoundAttention:
    """`DecodeAttention` over one layer's buffers: called once per decode step."""

    def __init__(self, kernel: DecodeAttention, buffers: tuple, Hkv: int, W: int, cap: int):
        self.kernel, self.buffers, self.Hkv, self.W, self.cap = kernel, buffers, Hkv, W, cap  # buffers: kept alive
        cos, sin, self.scale, start, Kp, Vp, K, V = buffers
        self.tables = (cos.data_ptr(), sin.data_ptr())
        self.caches = (Kp.data_ptr(), Vp.data_ptr(), start.data_ptr())
        self.own = (K.data_ptr(), V.data_ptr())
        self.width = (kernel.groups + 2) * Hkv * kernel.head_dim  # of a row of qkv

    def __call__(self, qkv: torch.Tensor, pos: torch.Tensor, group: torch.Tensor, slot: torch.Tensor,
                 n: int) -> torch.Tensor:
        """qkv (B, >= (G + 2) H_kv D) -> attention output (B, H_kv G D); writes each row's new key
        (RoPE'd) and value to column n - 1 of its slot. pos, group, slot (B,) int64."""
        B, stride = qkv.shape
        if qkv.stride(1) != 1 or qkv.dtype != torch.float32 or stride < self.width or not 0 < n <= self.cap:
            raise ValueError("decode_attention: qkv must be float32 rows of [q ; k ; v], and 0 < n <= cap")
        if not all(len(t) == B and t.dtype == torch.int64 and t.is_contiguous() for t in (pos, group, slot)):
            raise ValueError("decode_attention: pos, group and slot must be int64 of length B")
        D, G = self.kernel.head_dim, self.kernel.groups
        out = qkv.new_empty(B, self.Hkv * G * D)
        self.kernel.lib.decode_attention(qkv.data_ptr(), qkv.stride(0), *self.tables, pos.data_ptr(), self.scale,
                                         *self.caches, group.data_ptr(), slot.data_ptr(), *self.own, out.data_ptr(),
                                         B, self.Hkv, self.W, self.cap, n, torch.get_num_threads())
        return out


def decode_attention(head_dim: int, groups: int) -> DecodeAttention | None:
    """The fused decode attention for this head size and GQA group, or None (use torch ops)."""
    if not enabled() or head_dim % 8 or not 1 <= groups <= 16:
        return None
    lib = _build(head_dim, groups)
    return None if lib is None else DecodeAttention(lib, head_dim, groups)


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

    def silu_mul_backward(self, gate_up: torch.Tensor, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backward of `silu_mul`: gate_up (rows, 2I) and dh (rows, I), both contiguous ->
        (d_gate_up (rows, 2I), h = silu(gate) * up (rows, I), recomputed for the caller)."""
        rows, width = gate_up.shape
        if not (gate_up.is_contiguous() and dh.is_contiguous() and dh.shape == (rows, width // 2)
                and gate_up.dtype == dh.dtype == torch.float32):
            raise ValueError("silu_mul_backward: gate_up (rows, 2I) and dh (rows, I) must be contiguous float32")
        d_gate_up, h = torch.empty_like(gate_up), dh.new_empty(rows, width // 2)
        self.lib.silu_mul_backward(gate_up.data_ptr(), dh.data_ptr(), d_gate_up.data_ptr(), h.data_ptr(), rows,
                                   width // 2, torch.get_num_threads())
        return d_gate_up, h

    def rms_norm_train(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (rows, dim) contiguous -> (x * rstd * weight, rstd (rows,)), rows in parallel."""
        out, rstd = torch.empty_like(x), x.new_empty(len(x))
        self.lib.rms_norm_train(x.data_ptr(), weight.data_ptr(), eps, out.data_ptr(), rstd.data_ptr(), *x.shape,
                                torch.get_num_threads())
        return out, rstd

    def rms_norm_backward(self, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor,
                          d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backward of `rms_norm_train` for contiguous (rows, dim) x and d_out -> (dx, d_weight)."""
        if not (x.is_contiguous() and d_out.is_contiguous() and d_out.shape == x.shape == (len(rstd), len(weight))
                and x.dtype == d_out.dtype == rstd.dtype == weight.dtype == torch.float32):
            raise ValueError("rms_norm_backward: x and d_out (rows, dim), rstd (rows,), weight (dim,), float32")
        chunks = max(1, min(torch.get_num_threads(), len(x)))
        dx, dw = torch.empty_like(x), x.new_empty(chunks, x.shape[1])
        self.lib.rms_norm_backward(x.data_ptr(), weight.data_ptr(), rstd.data_ptr(), d_out.data_ptr(), dx.data_ptr(),
                                   dw.data_ptr(), *x.shape, chunks)
        return dx, dw.sum(0)

    def sample(self, logits: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
        """One token per row of logits (rows, V) from softmax(logits / temperature), by inverting
        the CDF at u (rows,) float64 uniforms, as r1lab.engine.sampler.categorical does: ~25 us at
        128 x 504 against ~340 us for the torch path's softmax, cumsum and search."""
        if not (logits.is_contiguous() and logits.dtype == torch.float32 and u.dtype == torch.float64
                and u.is_contiguous() and len(u) == len(logits) and temperature > 0):
            raise ValueError("sample: logits must be contiguous float32 (rows, V), u float64 (rows,), temperature > 0")
        out = torch.empty(len(logits), dtype=torch.int64, device=logits.device)
        self.lib.sample_rows(logits.data_ptr(), temperature, u.data_ptr(), out.data_ptr(), *logits.shape,
                             torch.get_num_threads())
        return out


def fused_ops(head_dim: int, groups: int) -> FusedOps | None:
    """The fused small operators (built with the attention kernel for this shape), or None."""
    kernel = decode_attention(head_dim, groups)
    return None if kernel is None else FusedOps(kernel.lib)
