"""`StaticCacheDecoder`: the sampler's fast decode step over caches r1lab owns (see sampler.py).

Supported: r1lab's DeepSeek-V3 (MLA in DeepSeek-V2's absorbed form, DeepSeekMoE) and Llama / Qwen2
without sliding windows; dense float32 models on CPU attend through the C kernel (kernels.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from r1lab.engine import kernels
from r1lab.engine.hf import layer_tensors, prefill_prompts


class StaticCacheDecoder:
    """Decoding over caches owned here, with the model's own weights.

    A GRPO group's samples share their prompt, so the prompt's cache is kept once per distinct
    prompt, (P, ..., W, ·), and attention over it runs once per prompt for all of its live rows
    (`PromptGrid`); only the generated columns are cached per row, (B, ..., capacity, ·), written in
    place at column `length`. Capacity doubles when full (up to max_new_tokens), and the per-row
    buffers are copied only when rows finish (`keep`) or capacity grows. Dense models cache K and
    V per KV head, as transformers does; MLA models cache [c_KV ; k_rope] per layer.

    The step is written against the weights (F.linear, bmm), not the modules: at small batch a
    decode step costs its number of operator calls (~5-20 us each here), and the modules spend
    several calls where one does. MLA's absorbed weights and the RoPE table are built once per
    batch (weights change between RL steps, never within a call).
    """

    DENSE = ("LlamaForCausalLM", "Qwen2ForCausalLM")
    LATENT = ("DeepseekV3ForCausalLM",)
    FIRST_ROOM = 256  # generated columns allocated up front; then capacity doubles

    @classmethod
    def supports(cls, model) -> bool:
        """Is `model` one of the architectures whose layers `step` reproduces?"""
        name, config, inner = type(model).__name__, model.config, getattr(model, "model", None)
        if name not in cls.DENSE + cls.LATENT or config.hidden_act != "silu":
            return False
        if getattr(inner.rotary_emb, "rope_type", "default") in ("dynamic", "longrope"):
            return False  # frequencies that change with the sequence length
        if name in cls.LATENT:
            return all(layer.self_attn.kv_b_proj.bias is None for layer in inner.layers)
        return 2 * inner.rotary_emb.inv_freq.numel() == inner.layers[0].self_attn.head_dim and all(
            getattr(layer.self_attn, "sliding_window", None) is None for layer in inner.layers)

    def __init__(self, model, prompt_caches, prompt_bias: torch.Tensor, group: torch.Tensor, next_pos: torch.Tensor,
                 max_new_tokens: int, fused: bool = True):
        self.model, inner = model, model.model
        self.all_prompt_caches = prompt_caches  # per layer: (K, V) (P, H_kv, W, d) or (C,) (P, W, r + d_R)
        self.all_prompt_bias = prompt_bias  # (P, W) 0, or -inf at a prompt's left padding
        B, room = len(next_pos), min(max_new_tokens, self.FIRST_ROOM)
        self.group = group  # (B,) the prompt of each live row, non-decreasing
        self.next_pos = next_pos  # (B,) position id of the next token
        self.length, self.capacity, self.limit = 0, room, max_new_tokens  # columns written; allocated; ever needed
        # rows that joined a running batch (`join`): the first generated column of each row, and
        # (B, capacity) -inf over the columns before it; None while every row started at column 0
        self.born: torch.Tensor | None = None
        self.own_bias: torch.Tensor | None = None
        latent = type(model).__name__ in self.LATENT
        self.kernel = None if latent or not fused else dense_kernel(model, prompt_caches[0][0])
        self.ops = None if self.kernel is None else kernels.FusedOps(self.kernel.lib)  # C norms, SwiGLU, sampling
        self.layers = [LatentLayer(layer, model.config) if latent else DenseLayer(layer, model.config, self.ops)
                       for layer in inner.layers]
        self.eps = model.config.rms_norm_eps
        # transformers' RoPE cos/sin for every position this batch can reach; both RoPE layouts
        # use only the first half (the second repeats it)
        positions = torch.arange(prompt_bias.shape[1] + max_new_tokens, device=prompt_bias.device)
        cos, sin = inner.rotary_emb(prompt_bias, positions[None])
        self.cos, self.sin = (t[0, :, : t.shape[-1] // 2].contiguous() for t in (cos, sin))  # (positions, d_R / 2)
        if self.kernel is None:  # caches (B, ..., capacity, ·); live rows compacted when rows finish
            self.caches = [tuple(t.new_empty(B, *t.shape[1:-2], room, t.shape[-1]) for t in c) for c in prompt_caches]
            self.regroup()
        else:  # the fused kernel: keys in blocks of 8 positions, K (B, H_kv, capacity/8, d, 8), values
            # V (B, H_kv, capacity, d); finished rows stay where they are and live row i reads cache
            # slot `slot[i]`. Widths are multiples of 8: capacity rounded up, prompts padded left.
            self.capacity = round8(room)
            self.caches = [(K.new_zeros(B, K.shape[1], self.capacity // 8, K.shape[-1], 8),
                            V.new_zeros(B, V.shape[1], self.capacity, V.shape[-1])) for K, V in prompt_caches]
            pad = round8(prompt_bias.shape[1]) - prompt_bias.shape[1]
            self.prompt_caches = [(key_blocks(F.pad(K, (0, 0, pad, 0))), F.pad(V, (0, 0, pad, 0)))
                                  for K, V in prompt_caches]
            self.start = (prompt_bias == float("-inf")).sum(-1) + pad  # (P,) left padding columns per prompt
            self.slot = torch.arange(B, device=next_pos.device)
            self.bind()

    def bind(self) -> None:
        """Each layer's attention kernel over its current buffers (r1lab.engine.kernels; again after `grow`)."""
        self.attention = [self.kernel.bind(self.cos, self.sin, layer.scaling, self.start, *prompt, *cache)
                          for layer, prompt, cache in zip(self.layers, self.prompt_caches, self.caches)]

    @classmethod
    def prefill(cls, model, prompt_ids, n: int | list[int], pad: int, max_new_tokens: int, fused: bool = True):
        """Decoder and first logits (B, V) for `n` samples of each prompt (a list: per prompt).
        fused=False: the torch path even where the C kernel applies (a batch that rows `join`)."""
        cache, logits, mask, positions = prefill_prompts(model, prompt_ids, pad)
        counts = torch.tensor(n if isinstance(n, list) else [n] * len(prompt_ids), device=logits.device)
        if type(model).__name__ in cls.LATENT:  # keys: c_KV (P, 1, W, r), values: k_rope (P, 1, W, d_R)
            prompt_caches = [(torch.cat([keys[:, 0], values[:, 0]], dim=-1),) for keys, values in layer_tensors(cache)]
        else:  # keys, values: (P, H_kv, W, d)
            prompt_caches = layer_tensors(cache)
        bias = torch.zeros(mask.shape, dtype=logits.dtype, device=mask.device).masked_fill_(mask == 0, float("-inf"))
        next_pos = positions[:, -1].repeat_interleave(counts) + 1
        group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        decoder = cls(model, prompt_caches, bias, group, next_pos, max_new_tokens, fused)
        return decoder, logits.repeat_interleave(counts, dim=0)

    def regroup(self) -> None:
        """The grid of live rows, and the caches of the prompts that still have live rows."""
        self.grid = PromptGrid(self.group)
        prompts = self.grid.prompts
        self.prompt_caches = [tuple(t[prompts] for t in c) for c in self.all_prompt_caches]
        self.prompt_bias = self.all_prompt_bias[prompts]  # (P', W)

    def keep(self, rows: torch.Tensor) -> None:
        self.group, self.next_pos = self.group[rows], self.next_pos[rows]
        if self.kernel is not None:  # nothing moves: the kernel reads each row's slot
            self.slot = self.slot[rows]
            return
        self.caches = [tuple(select_rows(b, rows, self.length) for b in c) for c in self.caches]
        if self.born is not None:
            self.born, self.own_bias = self.born[rows], self.own_bias[rows]
        self.regroup()

    def join(self, other: StaticCacheDecoder) -> None:
        """Continuous batching: `other`'s rows, just prefilled (`prefill(..., fused=False)`), decode
        from the next step on after this decoder's rows. Their generated tokens go to the columns
        from `length` on, the columns before masked out of their attention (`born`, `own_bias`);
        prompts no live row reads are dropped first, so a long-running batch holds only live ones."""
        assert self.kernel is None and other.kernel is None and other.length == 0, "join: torch path, fresh rows"
        self.drop_finished_prompts()
        width = max(self.all_prompt_bias.shape[1], other.all_prompt_bias.shape[1])
        self.all_prompt_caches = [tuple(torch.cat([pad_left(a, -2, width), pad_left(b, -2, width)]) for a, b in zip(mine, new))
                                  for mine, new in zip(self.all_prompt_caches, other.all_prompt_caches)]
        self.all_prompt_bias = torch.cat([pad_left(b, -1, width, float("-inf"))
                                          for b in (self.all_prompt_bias, other.all_prompt_bias)])
        B, added = len(self.group), len(other.group)
        self.group = torch.cat([self.group, other.group + int(self.group.max()) + 1])
        self.next_pos = torch.cat([self.next_pos, other.next_pos])
        self.caches = [tuple(torch.cat([b, b.new_zeros(added, *b.shape[1:])]) for b in c) for c in self.caches]
        old = self.born if self.born is not None else self.group.new_zeros(B)
        self.born = torch.cat([old, old.new_full((added,), self.length)])
        self.limit = max(self.limit, self.length + other.limit)
        if len(other.cos) > len(self.cos):  # RoPE for the positions the new rows reach
            self.cos, self.sin = other.cos, other.sin
        self.mask_unborn()
        self.regroup()

    def drop_finished_prompts(self) -> None:
        """Keep only the prompts that live rows read, and cut left padding that none of them needs."""
        alive = torch.unique(self.group)
        if len(alive) < len(self.all_prompt_bias):
            self.group = torch.searchsorted(alive, self.group)
            self.all_prompt_caches = [tuple(t[alive] for t in c) for c in self.all_prompt_caches]
            self.all_prompt_bias = self.all_prompt_bias[alive]
        cut = int((self.all_prompt_bias == float("-inf")).all(0).long().cumprod(0).sum())  # padding columns all share
        if cut:
            self.all_prompt_caches = [tuple(t[..., cut:, :] for t in c) for c in self.all_prompt_caches]
            self.all_prompt_bias = self.all_prompt_bias[:, cut:]

    def mask_unborn(self) -> None:
        columns = torch.arange(self.capacity, device=self.born.device)
        self.own_bias = torch.zeros(len(self.born), self.capacity, dtype=self.caches[0][0].dtype, device=self.born.device)
        self.own_bias.masked_fill_(columns < self.born[:, None], float("-inf"))

    def grow(self) -> None:
        if self.born is not None and int(self.born.min()) > 0:  # first drop the columns no live row reads
            cut = int(self.born.min())
            self.caches = [tuple(widen(b[..., cut:self.length, :], -2, self.capacity - self.length + cut) for b in c)
                           for c in self.caches]
            self.length, self.born = self.length - cut, self.born - cut
            self.mask_unborn()
            if 4 * cut >= self.capacity:  # enough room made
                return
        extra = max(1, min(self.limit, 2 * self.capacity) - self.capacity)
        if self.kernel is None:
            self.caches = [tuple(widen(b, -2, extra) for b in c) for c in self.caches]
        else:  # K grows by blocks of 8 columns
            extra = round8(extra)
            self.caches = [(widen(K, -3, extra // 8), widen(V, -2, extra)) for K, V in self.caches]
        self.capacity += extra
        if self.born is not None:
            self.mask_unborn()
        if self.kernel is not None:
            self.bind()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after appending `tokens` (B,)."""
        if self.length == self.capacity:
            self.grow()
        inner = self.model.model
        x = F.embedding(tokens, inner.embed_tokens.weight)  # (B, D)
        if self.kernel is None:  # the kernel reads the tables at next_pos itself
            self.rope = self.cos[self.next_pos, None], self.sin[self.next_pos, None]  # (B, 1, d_R / 2) each
        caches = self.caches if self.kernel is None else self.attention
        for layer, prompt, cache in zip(self.layers, self.prompt_caches, caches):
            x = layer(x, self, prompt, cache)
        self.length += 1
        self.next_pos = self.next_pos + 1
        h = F.rms_norm(x, x.shape[-1:], inner.norm.weight, self.eps) if self.ops is None else \
            self.ops.rms_norm(x, inner.norm.weight, self.eps)
        return F.linear(h, self.model.lm_head.weight)


class PromptGrid:
    """Where each live row sits in a (prompts, m) grid, so that attention over a prompt's cache
    runs as one matmul for all of that prompt's rows: the prompt's keys and values are read once
    per step, not once per sample.

    Rows are kept in sample order, so a prompt's live rows are contiguous; m is the most live rows
    any prompt has, and a prompt with fewer leaves grid slots empty (zero queries, never read)."""

    def __init__(self, group: torch.Tensor):  # (B,) prompt of each row, non-decreasing
        self.prompts, counts = torch.unique_consecutive(group, return_counts=True)  # (P',) each
        self.m = int(counts.max())
        grid_row = torch.repeat_interleave(torch.arange(len(counts), device=group.device), counts)  # (B,)
        first = counts.cumsum(0) - counts  # (P',) first row of each prompt
        self.slot = grid_row * self.m + torch.arange(len(group), device=group.device) - first[grid_row]  # (B,)
        self.full = bool((counts == self.m).all())  # then the grid is the batch itself

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (P'·m, ...)"""
        if self.full:
            return x
        return x.new_zeros(len(self.prompts) * self.m, *x.shape[1:]).index_copy_(0, self.slot, x)

    def gather(self, y: torch.Tensor) -> torch.Tensor:
        """(P'·m, ...) -> (B, ...)"""
        return y if self.full else y.index_select(0, self.slot)


def round8(n: int) -> int:
    return -(-n // 8) * 8


def key_blocks(keys: torch.Tensor) -> torch.Tensor:
    """(P, H_kv, W, d) -> (P, H_kv, W/8, d, 8): blocks of 8 positions, each transposed (the kernel's layout)."""
    P, H, W, d = keys.shape
    return keys.view(P, H, W // 8, 8, d).transpose(-1, -2).contiguous()


def widen(buffer: torch.Tensor, dim: int, extra: int) -> torch.Tensor:
    """`buffer` with `extra` more (unwritten) columns along `dim`."""
    shape = list(buffer.shape)
    shape[dim] = extra
    return torch.cat([buffer, buffer.new_zeros(shape)], dim=dim)


def pad_left(buffer: torch.Tensor, dim: int, width: int, value: float = 0.0) -> torch.Tensor:
    """`buffer` padded on the left along `dim` to `width` columns with `value`."""
    extra = width - buffer.shape[dim]
    if extra == 0:
        return buffer
    shape = list(buffer.shape)
    shape[dim] = extra
    return torch.cat([buffer.new_full(shape, value), buffer], dim=dim)


def dense_kernel(model, keys: torch.Tensor):
    """The fused attention kernel for this dense model's heads (r1lab.engine.kernels), or None: float32
    CPU caches only; elsewhere the torch path below."""
    if keys.dtype != torch.float32 or keys.device.type != "cpu":
        return None
    config = model.config
    return kernels.decode_attention(keys.shape[-1], config.num_attention_heads // config.num_key_value_heads)


def select_rows(buffer: torch.Tensor, rows: torch.Tensor, length: int) -> torch.Tensor:
    """`buffer[rows]` with only the first `length` columns (dim -2) copied; the rest is room."""
    out = buffer.new_empty(len(rows), *buffer.shape[1:])
    torch.index_select(buffer.narrow(-2, 0, length), 0, rows, out=out.narrow(-2, 0, length))
    return out


def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], interleaved: bool) -> torch.Tensor:
    """RoPE of x (B, heads, d) with cos, sin (B, 1, d/2): transformers' `rotate_half` form pairs dim
    i with i + d/2; DeepSeek's `rope_interleave` form pairs 2i with 2i + 1 and writes the results
    to i and d/2 + i. The same operators as transformers, so the same bits."""
    cos, sin = rope
    x1, x2 = (x[..., 0::2], x[..., 1::2]) if interleaved else x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class DenseLayer:
    """One Llama / Qwen2 decoder layer for one new token per row, over its (K, V) buffers."""

    def __init__(self, layer, config, ops=None):
        attn, mlp = layer.self_attn, layer.mlp
        self.ln1, self.ln2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.eps = config.rms_norm_eps
        self.o, self.scaling, self.d = attn.o_proj, attn.scaling, attn.head_dim
        # q, k and v as one matmul: rows [queries ; keys ; values] (the kernel's qkv layout)
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.w_qkv = torch.cat([p.weight for p in projections])
        self.b_qkv = None if attn.q_proj.bias is None else torch.cat([p.bias for p in projections])
        self.mlp, self.ops = mlp, ops  # ops: r1lab.engine.kernels.FusedOps, or None for torch's
        if ops is not None:  # gate and up as one matmul, [gate ; up] per row for ops.silu_mul
            self.w_gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
            biases = (mlp.gate_proj.bias, mlp.up_proj.bias)
            self.b_gate_up = None if biases[0] is None else torch.cat(biases)

    def norm(self, x, weight):
        return F.rms_norm(x, x.shape[-1:], weight, self.eps) if self.ops is None else self.ops.rms_norm(x, weight, self.eps)

    def __call__(self, x, dec: StaticCacheDecoder, prompt, cache):
        attend = self.attend if dec.kernel is None else self.attend_fused
        x = add_linear(x, attend(self.norm(x, self.ln1), dec, prompt, cache), self.o)
        h = self.norm(x, self.ln2)
        if self.ops is None:
            return x + swiglu(self.mlp, h)
        return add_linear(x, self.ops.silu_mul(F.linear(h, self.w_gate_up, self.b_gate_up)), self.mlp.down_proj)

    def attend_fused(self, h, dec: StaticCacheDecoder, prompt, attention):
        """Attention by r1lab.engine.kernels: `attention` is this layer's kernel bound to its prompt and
        generated-token caches (StaticCacheDecoder.bind); live row i's tokens are in slot dec.slot[i].
        The kernel applies RoPE and writes the new keys and values to column `length` of each slot."""
        qkv = F.linear(h, self.w_qkv, self.b_qkv)  # (B, (H + 2 H_kv) d)
        return attention(qkv, dec.next_pos, dec.group, dec.slot, dec.length + 1)

    def attend(self, h, dec: StaticCacheDecoder, prompt, cache):
        """Attention in torch ops. prompt: K, V (P', H_kv, W, d) of the prompts with live rows;
        cache: K, V (B, H_kv, cap, d), compacted to the live rows."""
        (Kp, Vp), (K, V), t, grid = prompt, cache, dec.length, dec.grid
        B, (P, Hkv, W, d), m = len(h), Kp.shape, grid.m
        G = self.w_qkv.shape[0] // (Hkv * d) - 2
        q, k, v = F.linear(h, self.w_qkv, self.b_qkv).split([Hkv * G * d, Hkv * d, Hkv * d], dim=-1)
        q, k, V[:, :, t] = q.view(B, Hkv, G, d), k.view(B, Hkv, d), v.view(B, Hkv, d)
        qk = rotate(torch.cat([q.view(B, Hkv * G, d), k], dim=1), dec.rope, interleaved=False)  # (B, H + H_kv, d)
        q, K[:, :, t] = qk[:, :-Hkv].view(B, Hkv, G, d) * self.scaling, qk[:, -Hkv:]
        # scores over the prompt, per prompt for all its rows (query rows m·G per KV head) ...
        q_grid = grid.scatter(q).view(P, m, Hkv, G, d).transpose(1, 2).reshape(P, Hkv, m * G, d)
        prompt_scores = torch.matmul(q_grid, Kp.transpose(-1, -2)) + dec.prompt_bias[:, None, None]
        prompt_scores = grid.gather(prompt_scores.view(P, Hkv, m, G, W).transpose(1, 2).reshape(P * m, Hkv, G, W))
        # ... and over the row's own generated tokens, one softmax over both
        own_scores = torch.matmul(q, K[:, :, : t + 1].transpose(-1, -2))  # (B, H_kv, G, t + 1)
        if dec.own_bias is not None:  # rows that joined later than column 0 (StaticCacheDecoder.join)
            own_scores = own_scores + dec.own_bias[:, None, None, : t + 1]
        weights = torch.softmax(torch.cat([prompt_scores, own_scores], dim=-1), dim=-1)
        out = torch.matmul(weights[..., W:], V[:, :, : t + 1])  # (B, H_kv, G, d)
        w_grid = grid.scatter(weights[..., :W]).reshape(P, m, Hkv, G, W).transpose(1, 2).reshape(P, Hkv, m * G, W)
        from_prompt = torch.matmul(w_grid, Vp).view(P, Hkv, m, G, d).transpose(1, 2).reshape(P * m, Hkv, G, d)
        return (out + grid.gather(from_prompt)).view(B, -1)  # (B, H·d)


def add_linear(x: torch.Tensor, a: torch.Tensor, linear) -> torch.Tensor:
    """x + linear(a) as one matmul that accumulates into a copy of x (the residual connection)."""
    if linear.bias is not None:
        x = x + linear.bias
    return torch.addmm(x, a, linear.weight.t())


class LatentLayer:
    """One DeepSeek-V3 decoder layer for one new token per row: absorbed MLA over C, then MoE or MLP.

    MLA in latent space (DeepSeek-V2 §2.1.3): q·k = (W^UK^T q_nope)·c_KV + q_rope·k_rope and the
    output is W^O W^UV (softmax · c_KV), so W^UK is folded into the query projection and W^UV
    into the output projection, once per batch, and no cached latent is ever expanded."""

    def __init__(self, layer, config):
        attn = layer.self_attn
        self.ln1, self.ln2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.eps = config.rms_norm_eps
        H, r, nope, v = attn.num_heads, attn.kv_lora_rank, attn.qk_nope_head_dim, attn.v_head_dim
        self.H, self.r, self.d_rope, self.scaling = H, r, attn.qk_rope_head_dim, attn.scaling
        self.attn, self.interleaved = attn, config.rope_interleave
        w_kv = attn.kv_b_proj.weight.view(H, nope + v, r)  # per head: [W^UK ; W^UV]
        q_proj = attn.q_proj if attn.q_lora_rank is None else attn.q_b_proj
        w_q = q_proj.weight.view(H, nope + self.d_rope, -1)
        q_latent = torch.matmul(w_kv[:, :nope].transpose(1, 2), w_q[:, :nope])  # (H, r, D_q)
        self.w_q = torch.cat([q_latent.reshape(H * r, -1), w_q[:, nope:].reshape(H * self.d_rope, -1)])
        w_o = attn.o_proj.weight.view(-1, H, v)  # (D, H, v)
        self.w_o = torch.einsum("dhv,hvr->dhr", w_o, w_kv[:, nope:]).reshape(len(w_o), H * r)  # (D, H·r)
        self.mlp = MoE(layer.mlp) if hasattr(layer.mlp, "experts") else layer.mlp

    def __call__(self, x, dec: StaticCacheDecoder, prompt, cache):
        (Cp,), (C,), t, grid = prompt, cache, dec.length, dec.grid  # (P', W, r + d_R), (B, cap, r + d_R)
        attn, B, H, r, (P, W, _), m = self.attn, len(x), self.H, self.r, Cp.shape, dec.grid.m
        h = F.rms_norm(x, x.shape[-1:], self.ln1, self.eps)
        if attn.q_lora_rank is not None:
            h_q = F.linear(h, attn.q_a_proj.weight, attn.q_a_proj.bias)
            h_q = F.rms_norm(h_q, h_q.shape[-1:], attn.q_a_layernorm.weight, attn.q_a_layernorm.variance_epsilon)
        q = F.linear(h if attn.q_lora_rank is None else h_q, self.w_q)  # (B, H·r + H·d_R): [q_latent ; q_rope]
        kv = F.linear(h, attn.kv_a_proj_with_mqa.weight, attn.kv_a_proj_with_mqa.bias)  # (B, r + d_R)
        rope_parts = torch.cat([q[:, H * r :].view(B, H, -1), kv[:, None, r:]], dim=1)  # (B, H + 1, d_R)
        roped = rotate(rope_parts, dec.rope, self.interleaved)
        C[:, t, :r] = F.rms_norm(kv[:, :r], (r,), attn.kv_a_layernorm.weight, attn.kv_a_layernorm.variance_epsilon)
        C[:, t, r:] = roped[:, H]
        query = torch.cat([q[:, : H * r].view(B, H, r), roped[:, :H]], dim=-1) * self.scaling  # (B, H, r + d_R)
        # scores over the prompt, per prompt for all its rows (m·H query rows) ...
        q_grid = grid.scatter(query).view(P, m * H, -1)
        prompt_scores = torch.baddbmm(dec.prompt_bias[:, None], q_grid, Cp.transpose(1, 2))  # (P', m·H, W)
        prompt_scores = grid.gather(prompt_scores.view(P * m, H, W))  # (B, H, W)
        # ... and over the row's own generated tokens, one softmax over both
        own = C[:, : t + 1]  # (B, t + 1, r + d_R)
        own_scores = torch.bmm(query, own.transpose(1, 2)) if dec.own_bias is None else \
            torch.baddbmm(dec.own_bias[:, None, : t + 1], query, own.transpose(1, 2))  # (B, H, t + 1)
        weights = torch.softmax(torch.cat([prompt_scores, own_scores], dim=-1), dim=-1)
        latent = torch.bmm(weights[..., W:], own[..., :r])  # (B, H, r)
        from_prompt = torch.bmm(grid.scatter(weights[..., :W]).reshape(P, m * H, W), Cp[..., :r]).view(P * m, H, r)
        latent = latent + grid.gather(from_prompt)
        x = x + F.linear(latent.view(B, H * r), self.w_o, attn.o_proj.bias)
        h = F.rms_norm(x, x.shape[-1:], self.ln2, self.eps)
        return x + (self.mlp(h) if isinstance(self.mlp, MoE) else swiglu(self.mlp, h))


class MoE:
    """DeepSeekMoE for a batch of single tokens: top-k routed experts + the shared experts."""

    DENSE_BELOW = 32  # rows; below, every expert runs on every row (one matmul beats sorting rows)

    def __init__(self, mlp):
        self.router, self.shared = mlp.gate, mlp.shared_experts
        self.w1, self.w2 = mlp.experts.gate_up_proj, mlp.experts.down_proj  # (E, 2I, D), (E, D, I)

    def __call__(self, h):
        weights, experts = route(self.router, h)  # (B, k) each
        (E, _, D), B, k = self.w1.shape, len(h), experts.shape[1]
        if B < self.DENSE_BELOW:
            gate, up = F.linear(h, self.w1.view(-1, D)).view(B, E, -1).chunk(2, dim=-1)  # (B, E, I) each
            out = torch.bmm((F.silu(gate) * up).transpose(0, 1), self.w2.transpose(1, 2))  # (E, B, D)
            dense_weights = h.new_zeros(B, E).scatter_(1, experts, weights)  # (B, E), 0 where not routed
            routed = (dense_weights.t()[:, :, None] * out).sum(0)
        else:  # token-expert pairs sorted by expert, one grouped matmul per projection
            order = experts.flatten().argsort()  # (B·k,)
            ends = torch.bincount(experts.flatten(), minlength=E).cumsum(0).to(torch.int32)  # (E,)
            row = order // k
            gate, up = F.grouped_mm(h[row], self.w1.transpose(1, 2), offs=ends).chunk(2, dim=-1)
            out = F.grouped_mm(F.silu(gate) * up, self.w2.transpose(1, 2), offs=ends)  # (B·k, D)
            routed = torch.zeros_like(h).index_add_(0, row, out * weights.flatten()[order, None])
        return routed + swiglu(self.shared, h)


def route(router, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3's routing (sigmoid scores, selection bias, normalised top-k): (weights, expert ids), (B, k).

    The operators of transformers' `DeepseekV3TopkRouter`, minus its group-limited masking when
    every group is kept (n_group = topk_group, as in r1lab's model), where that mask is a no-op."""
    if router.topk_group != router.num_group:
        _, weights, experts = router(h)
    else:
        scores = F.linear(h.float(), router.weight.float()).sigmoid()  # (B, E)
        experts = torch.topk(scores + router.e_score_correction_bias, k=router.top_k, dim=-1, sorted=False)[1]
        weights = scores.gather(1, experts)
        if router.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        weights = weights * router.routed_scaling_factor
    return weights.to(h.dtype), experts


def swiglu(mlp, h):
    """The SiLU-gated MLP of Llama, Qwen2 and DeepSeek (its dense layers and shared experts)."""
    gate = F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias)
    return F.linear(F.silu(gate) * F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias), mlp.down_proj.weight,
                    mlp.down_proj.bias)
