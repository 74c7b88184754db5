"""r1lab.kernels' fused decode attention against the same attention in plain torch."""

import pytest
import torch

from r1lab import kernels
from r1lab.sampler import key_blocks, rotate


def reference(q, Kp, Vp, start, group, slot, K, V, n):
    """q (B, H_kv, G, D); Kp, Vp (P, H_kv, W, D); K, V (S, H_kv, cap, D): softmax over each row's
    prompt tokens (columns start[p]..W-1) and its own n tokens."""
    out = torch.empty_like(q)
    for b in range(len(q)):
        p, s = int(group[b]), int(slot[b])
        keys = torch.cat([Kp[p, :, start[p]:], K[s, :, :n]], dim=1)  # (H_kv, T, D)
        values = torch.cat([Vp[p, :, start[p]:], V[s, :, :n]], dim=1)
        out[b] = torch.softmax(q[b] @ keys.transpose(-1, -2), dim=-1) @ values
    return out


@pytest.mark.parametrize("D, G, W, cap, n", [(32, 2, 16, 24, 17), (8, 1, 8, 8, 1), (64, 4, 40, 64, 9),
                                             (16, 3, 24, 32, 32)])
def test_fused_attention_equals_torch(D, G, W, cap, n, monkeypatch):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    attend = kernels.decode_attention(D, G)
    assert attend is not None, "the test machine needs a C compiler"
    torch.manual_seed(D + G)
    P, S, Hkv = 3, 7, 2
    q = torch.randn(5, Hkv, G, D)
    Kp, Vp = torch.randn(P, Hkv, W, D), torch.randn(P, Hkv, W, D)
    K, V = torch.randn(S, Hkv, cap, D), torch.randn(S, Hkv, cap, D)
    start = torch.tensor([0, W - 1, W // 2])  # no padding; one real token; half padding
    group, slot = torch.tensor([0, 1, 1, 2, 0]), torch.tensor([6, 0, 3, 2, 5])  # slots out of order
    Kp[1, :, : W - 1] = 1e4  # padding must never be read
    k, v = torch.randn(5, Hkv, D), torch.randn(5, Hkv, D)  # the new tokens: column n - 1 of each row's slot
    angle = torch.rand(5, 1, D // 2) * 6  # RoPE at each row's position
    K_blocks = key_blocks(K)
    out = attend(q, k, v, angle.cos(), angle.sin(), 0.3, key_blocks(Kp), Vp, start, group, slot, K_blocks, V, n)
    q = rotate(q.view(5, -1, D), (angle.cos(), angle.sin()), interleaved=False).view(q.shape) * 0.3
    K[slot, :, n - 1], V_expected = rotate(k, (angle.cos(), angle.sin()), interleaved=False), V.clone()
    V_expected[slot, :, n - 1] = v
    torch.testing.assert_close(out, reference(q, Kp, Vp, start, group, slot, K, V_expected, n), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(K_blocks, key_blocks(K), atol=1e-6, rtol=1e-6)  # the caches hold the new tokens
    assert torch.equal(V, V_expected)


def test_unsupported_shapes_and_switch_fall_back_to_torch(monkeypatch):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    assert kernels.decode_attention(12, 2) is None  # head size not a multiple of 8
    monkeypatch.setenv("R1LAB_KERNELS", "0")
    assert kernels.decode_attention(32, 2) is None


def test_a_failed_compile_warns_and_falls_back(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    monkeypatch.setenv("R1LAB_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    kernels._build.cache_clear()
    try:
        assert kernels.decode_attention(40, 5) is None
    finally:
        kernels._build.cache_clear()
    assert "failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind


def test_fused_norm_and_swiglu_activation_equal_torch(monkeypatch):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    ops = kernels.fused_ops(32, 2)
    assert ops is not None, "the test machine needs a C compiler"
    torch.manual_seed(0)
    x, w, gate_up = torch.randn(5, 48), torch.randn(48), torch.randn(5, 2 * 40)
    torch.testing.assert_close(ops.rms_norm(x, w, 1e-6), torch.nn.functional.rms_norm(x, (48,), w, 1e-6),
                               atol=1e-6, rtol=1e-5)
    gate, up = gate_up.chunk(2, dim=-1)
    torch.testing.assert_close(ops.silu_mul(gate_up), torch.nn.functional.silu(gate) * up, atol=1e-6, rtol=1e-5)
