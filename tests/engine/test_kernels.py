"""r1lab.engine.kernels' fused decode attention against the same attention in plain torch."""

import pytest
import torch

from r1lab.engine import kernels
from r1lab.engine.sampler import sample_tokens
from r1lab.engine.static_cache import key_blocks, rotate


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
                                             (16, 3, 24, 32, 32), (8, 2, 32, 48, 41)])
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
    # one matmul's rows [q ; k ; v], inside a wider buffer (a row stride larger than the row)
    qkv = torch.cat([q.view(5, -1), k.view(5, -1), v.view(5, -1), torch.full((5, 3), 7.0)], dim=1)[:, :-3]
    table = torch.rand(40, D // 2) * 6  # RoPE angles by position; row b is at position pos[b]
    pos = torch.tensor([3, 39, 0, 17, 3])
    angle = table[pos][:, None]  # (5, 1, D/2)
    K_blocks = key_blocks(K)
    layer = attend.bind(table.cos(), table.sin(), 0.3, start, key_blocks(Kp), Vp, K_blocks, V)
    out = layer(qkv, pos, group, slot, n).view(q.shape)
    q = rotate(q.view(5, -1, D), (angle.cos(), angle.sin()), interleaved=False).view(q.shape) * 0.3
    K[slot, :, n - 1], V_expected = rotate(k, (angle.cos(), angle.sin()), interleaved=False), V.clone()
    V_expected[slot, :, n - 1] = v
    torch.testing.assert_close(out, reference(q, Kp, Vp, start, group, slot, K, V_expected, n), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(K_blocks, key_blocks(K), atol=1e-6, rtol=1e-6)  # the caches hold the new tokens
    assert torch.equal(V, V_expected)


def test_bind_and_call_refuse_mismatched_buffers(monkeypatch):
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    attend = kernels.decode_attention(8, 2)
    table, start = torch.zeros(16, 4), torch.zeros(1, dtype=torch.int64)
    Kp, Vp = torch.zeros(1, 1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="shapes"):  # capacity 12 is not a multiple of 8
        attend.bind(table, table, 1.0, start, Kp, Vp, torch.zeros(1, 1, 1, 8, 8), torch.zeros(1, 1, 12, 8))
    layer = attend.bind(table, table, 1.0, start, Kp, Vp, torch.zeros(1, 1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    rows = torch.zeros(1, dtype=torch.int64)
    with pytest.raises(ValueError, match="qkv"):  # a row narrower than [q ; k ; v]
        layer(torch.zeros(1, 24), rows, rows, rows, 1)
    with pytest.raises(ValueError, match="cap"):  # column 9 of a capacity-8 cache
        layer(torch.zeros(1, 32), rows, rows, rows, 9)
    with pytest.raises(ValueError, match="int64"):
        layer(torch.zeros(1, 32), rows.int(), rows, rows, 1)


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


def test_fused_sampling_draws_what_the_torch_path_draws(monkeypatch):
    """FusedOps.sample inverts the same CDF at the same uniforms as sampler.sample_tokens: the same
    tokens (up to float rounding at a CDF step), the right frequencies, never a masked token."""
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    ops = kernels.fused_ops(8, 1)
    torch.manual_seed(0)
    logits = torch.randn(4000, 50) * 3
    logits[:, 7] = float("-inf")  # masked, as stop tokens are before min_new_tokens
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fused = ops.sample(logits, 0.7, torch.rand(4000, generator=g1, dtype=torch.float64))
    plain = sample_tokens(logits, 0.7, 1.0, g2)
    assert (fused == plain).sum() >= 3990
    assert not (fused == 7).any()
    probs = torch.softmax(torch.tensor([[0.0, 1.0, 2.0, -1.0]]) / 0.5, -1)
    draws = ops.sample(torch.log(probs).repeat(20000, 1) * 0.5, 0.5, torch.rand(20000, dtype=torch.float64))
    torch.testing.assert_close(torch.bincount(draws, minlength=4)[None] / 20000, probs, atol=0.015, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        ops.sample(logits, 0.0, torch.rand(4000, dtype=torch.float64))
