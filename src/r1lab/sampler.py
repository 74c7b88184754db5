"""Generation: the one interface through which RL rollouts and evaluation sample completions.

`Sampler.generate(prompts, n, params)` returns `n` completions per prompt, grouped (prompt i's
samples are rows i*n .. i*n+n-1). `HFSampler` implements it for any Hugging Face causal LM:
- each distinct prompt is prefilled once, by the model's own forward (a GRPO group shares its
  prompt, so this divides prefill work by G);
- decoding runs token by token, and rows that have finished (a stop token: the tokenizer's EOS,
  the model's generation-config EOS ids such as a chat model's end-of-turn token, or
  `params.stop_token_ids`) are dropped from the cache and the batch, so late steps only pay for
  live sequences;
- sampling is temperature + nucleus (top-p) from a seeded `torch.Generator`, so a run is
  reproducible; temperature 0 is greedy; `min_new_tokens` forbids stop tokens until then.

The decode step has two implementations (docs/perf.md has the measurements behind them):
- `StaticCacheDecoder`, for r1lab's DeepSeek-V3 and for Llama / Qwen2 without sliding windows:
  the model's weights, r1lab's caches and attention. The prompt's cache is kept once per
  distinct prompt and attended once per prompt for all its samples; each row caches only its
  generated tokens, in buffers written in place (transformers' DynamicCache concatenates the
  whole cache every token). Dense float32 models on CPU attend through r1lab.kernels' fused C
  kernel (RoPE, cache write, scores, softmax and values in one pass per row and KV head; rows
  that finish stay in their cache slot instead of being compacted), else through torch ops.
  For MLA it is the absorbed form of DeepSeek-V2 §2.1.3: the cache
  holds the compressed latent c_KV and the shared RoPE key, and attention runs in latent space
  (W^UK folded into the query projection, W^UV into the output projection); transformers
  instead re-expands every cached latent through `kv_b_proj` at every step, O(length) matmul
  work per token, ~3/4 of its decode time at batch 128 here;
- `DynamicCacheDecoder`, the model's own forward over a transformers `DynamicCache`: the
  fallback for every other causal LM (and `HFSampler(..., static_cache=False)`).
Greedy decoding through either gives the tokens of `model.generate`, and the static path's
logits match a full forward (tests/test_sampler.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from r1lab import kernels
from r1lab.device import model_device


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()  # besides the tokenizer's EOS
    seed: int | tuple[int, ...] = 0  # a tuple: one seed per prompt (`PromptDraws`)
    min_new_tokens: int = 0  # stop tokens cannot be sampled before this many new tokens (as in HF)


@dataclass
class Generation:
    prompt_ids: list[list[int]]  # per distinct prompt, unpadded (P lists)
    completion_ids: list[list[int]]  # per sample, unpadded, stop token included (P*n lists)
    texts: list[str]  # decoded completions, special tokens skipped (P*n)
    truncated: list[bool]  # hit max_new_tokens without a stop token (P*n)
    n: int  # samples per prompt
    seconds: float = 0.0
    # the sampling engine's own log-prob of each sampled token (P*n lists), when it is not the
    # trainer's model (rollout_vllm.VLLMSampler): GRPO corrects for the mismatch (grpo.truncated_is_weights)
    sampler_logprobs: list[list[float]] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)


class Sampler(Protocol):
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> Generation: ...

    def load_weights(self, model) -> None:
        """Make the next `generate` sample from `model`'s current weights (after an update)."""


class PromptDraws:
    """One seeded generator per prompt, so that a prompt's samples depend only on its own seed
    and not on which other prompts share the batch: GRPO gives each group a seed of (seed, step,
    global prompt index), and a rollout split across ranks (distributed.py) samples exactly what
    one process does. `live` holds the sample index (prompt i's are i*n .. i*n+n-1) of each row
    still decoding, in increasing order; each draw takes its rows' numbers from their prompts'
    generators."""

    def __init__(self, seeds: tuple[int, ...], n: int):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.n = n
        self.live = torch.arange(len(seeds) * n, device="cpu")  # the sampler sets its live rows before each draw

    def rand(self, count: int) -> torch.Tensor:
        """(count, 1) float64 uniforms, one per live row."""
        owners, counts = torch.unique_consecutive(self.live // self.n, return_counts=True)
        assert int(counts.sum()) == count, (int(counts.sum()), count)
        return torch.cat([torch.rand(c, 1, generator=self.generators[o], dtype=torch.float64, device="cpu")
                          for o, c in zip(owners.tolist(), counts.tolist())])


def uniforms(generator: torch.Generator | PromptDraws, count: int) -> torch.Tensor:
    """(count, 1) float64 uniforms, drawn on the CPU from seeded CPU generators (moved by the
    caller): the same draws for a seed whatever device the model is on."""
    if isinstance(generator, PromptDraws):
        return generator.rand(count)
    return torch.rand(count, 1, generator=generator, dtype=torch.float64, device="cpu")


def categorical(probs: torch.Tensor, generator: torch.Generator | PromptDraws) -> torch.Tensor:
    """One draw per row of unnormalised probabilities (B, V) -> (B,), by inverting the CDF: one
    uniform number per row, where `torch.multinomial` draws an exponential per vocabulary entry
    (~2 ms vs ~0.1 ms for 128 x 504 here). The CDF is float64 so large vocabularies keep exact
    tails; a zero-probability token is never drawn (its CDF step is empty)."""
    cdf = probs.double().cumsum(-1)  # (B, V)
    u = uniforms(generator, probs.shape[0]).to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=probs.shape[-1] - 1).squeeze(-1)


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | PromptDraws) -> torch.Tensor:
    """Next tokens from logits (B, V) -> (B,): greedy at temperature 0, else nucleus sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # tokens after the nucleus is full
        pick = categorical(sorted_p.masked_fill(outside, 0.0), generator)  # renormalised by the draw
        return order.gather(-1, pick[:, None]).squeeze(-1)
    return categorical(probs, generator)


def draw(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | PromptDraws,
         ops=None) -> torch.Tensor:
    """`sample_tokens`, in C (r1lab.kernels.FusedOps.sample) when the decoder has the fused ops and
    there is no nucleus to sort: the same uniform draws from `generator`, the same inversion."""
    if ops is None or params.temperature == 0 or params.top_p < 1.0:
        return sample_tokens(logits, params.temperature, params.top_p, generator)
    return ops.sample(logits, params.temperature, uniforms(generator, len(logits)).view(-1))


def model_stop_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS and the model's generation-config EOS id(s) (one int or a list)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, (list, tuple)) else [eos])}
    return {i for i in ids if i is not None}


class HFSampler:
    def __init__(self, model, tokenizer, max_rows: int = 512, add_special_tokens: bool = True,
                 static_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.max_rows = max_rows  # sequences decoded together (distinct prompts × n)
        # False for prompts rendered by a chat template, which already hold the BOS token.
        self.add_special_tokens = add_special_tokens
        self.stop_ids = model_stop_ids(model, tokenizer)
        # False: always the model's own forward over a DynamicCache (slower; for comparison).
        self.static_cache = static_cache and StaticCacheDecoder.supports(model)

    def load_weights(self, model) -> None:
        """Nothing to push: this sampler decodes with the trainer's own model, read afresh each call."""

    @torch.inference_mode()
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> Generation:
        t0 = time.time()
        was_training = self.model.training
        self.model.eval()
        per_prompt = isinstance(params.seed, (tuple, list))
        if per_prompt and len(params.seed) != len(prompts):
            raise ValueError(f"{len(params.seed)} seeds for {len(prompts)} prompts")
        gen = None if per_prompt else torch.Generator().manual_seed(params.seed)
        prompt_ids = self.tokenizer(prompts, add_special_tokens=self.add_special_tokens)["input_ids"]
        completions: list[list[int]] = []
        truncated: list[bool] = []
        per_batch = max(1, self.max_rows // n)
        for i in range(0, len(prompt_ids), per_batch):
            draws = PromptDraws(tuple(params.seed[i : i + per_batch]), n) if per_prompt else gen
            c, t = self._generate_batch(prompt_ids[i : i + per_batch], n, params, draws)
            completions += c
            truncated += t
        self.model.train(was_training)
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return Generation(prompt_ids, completions, texts, truncated, n, time.time() - t0)

    def _generate_batch(self, prompt_ids: list[list[int]], n: int, params: SamplingParams, gen):
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        decoder_class = StaticCacheDecoder if self.static_cache else DynamicCacheDecoder
        decoder, logits = decoder_class.prefill(self.model, prompt_ids, n, pad, params.max_new_tokens)
        B, steps, device = len(prompt_ids) * n, params.max_new_tokens, logits.device
        stops = torch.tensor(sorted({*self.stop_ids, *params.stop_token_ids}), device=device)
        out = torch.full((B, steps), pad, device=device)  # (B, steps) sampled tokens, by sample index
        length = torch.full((B,), steps, device=device)  # (B,) tokens kept per sample
        stopped = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
        rows = torch.arange(B, device=device)  # sample index of each live row
        for step in range(steps):
            if step < params.min_new_tokens:
                logits[:, stops] = float("-inf")
            if isinstance(gen, PromptDraws):
                gen.live = rows
            nxt = draw(logits, params, gen, getattr(decoder, "ops", None))  # (live,)
            out[rows, step] = nxt
            finished = torch.isin(nxt, stops)  # (live,)
            if finished.any():
                length[rows[finished]] = step + 1
                stopped[rows[finished]] = True
                keep = (~finished).nonzero().squeeze(-1)
                if len(keep) == 0:
                    break
                decoder.keep(keep)
                rows, nxt = rows[keep], nxt[keep]
            if step == steps - 1:
                break
            logits = decoder.step(nxt)
        tokens = [row[:k] for row, k in zip(out.tolist(), length.tolist())]
        return tokens, (~stopped).tolist()


def left_padded(prompt_ids: list[list[int]], pad: int, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded batch on `device`: ids, attention mask and position ids, each (P, W)."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=device)
    starts = torch.tensor([width - len(p) for p in prompt_ids], device=device)
    mask = (torch.arange(width, device=device) >= starts[:, None]).long()
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def prefill_prompts(model, prompt_ids: list[list[int]], pad: int):
    """One forward over the distinct prompts: (DynamicCache, last logits (P, V), mask, positions)."""
    ids, mask, positions = left_padded(prompt_ids, pad, model_device(model))
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    return cache, out.logits[:, -1], mask, positions


class DynamicCacheDecoder:
    """Any causal LM: the model's own forward, one token at a time, over a `DynamicCache`."""

    def __init__(self, model, cache, mask: torch.Tensor, next_pos: torch.Tensor):
        self.model, self.cache = model, cache
        self.mask = mask  # (B, L) 1 for real tokens, 0 for left padding
        self.next_pos = next_pos  # (B, 1) position id of the next token

    @classmethod
    def prefill(cls, model, prompt_ids, n: int, pad: int, max_new_tokens: int):
        cache, logits, mask, positions = prefill_prompts(model, prompt_ids, pad)
        cache.batch_repeat_interleave(n)  # each prompt's cache, once per sample
        decoder = cls(model, cache, mask.repeat_interleave(n, 0), positions[:, -1:].repeat_interleave(n, 0) + 1)
        return decoder, logits.repeat_interleave(n, dim=0)

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after appending `tokens` (B,)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.next_pos,
                         past_key_values=self.cache, use_cache=True)
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1]


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

    def __init__(self, model, prompt_caches, prompt_bias: torch.Tensor, n: int, next_pos: torch.Tensor,
                 max_new_tokens: int):
        self.model, inner = model, model.model
        self.all_prompt_caches = prompt_caches  # per layer: (K, V) (P, H_kv, W, d) or (C,) (P, W, r + d_R)
        self.all_prompt_bias = prompt_bias  # (P, W) 0, or -inf at a prompt's left padding
        B, room = len(next_pos), min(max_new_tokens, self.FIRST_ROOM)
        self.group = torch.arange(B, device=next_pos.device) // n  # (B,) the prompt of each live row
        self.next_pos = next_pos  # (B,) position id of the next token
        self.length, self.capacity, self.limit = 0, room, max_new_tokens  # columns written; allocated; ever needed
        latent = type(model).__name__ in self.LATENT
        self.kernel = None if latent else dense_kernel(model, prompt_caches[0][0])
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
        """Each layer's attention kernel over its current buffers (r1lab.kernels; again after `grow`)."""
        self.attention = [self.kernel.bind(self.cos, self.sin, layer.scaling, self.start, *prompt, *cache)
                          for layer, prompt, cache in zip(self.layers, self.prompt_caches, self.caches)]

    @classmethod
    def prefill(cls, model, prompt_ids, n: int, pad: int, max_new_tokens: int):
        cache, logits, mask, positions = prefill_prompts(model, prompt_ids, pad)
        if type(model).__name__ in cls.LATENT:  # keys: c_KV (P, 1, W, r), values: k_rope (P, 1, W, d_R)
            prompt_caches = [(torch.cat([layer.keys[:, 0], layer.values[:, 0]], dim=-1),) for layer in cache.layers]
        else:  # keys, values: (P, H_kv, W, d)
            prompt_caches = [(layer.keys, layer.values) for layer in cache.layers]
        bias = torch.zeros(mask.shape, dtype=logits.dtype, device=mask.device).masked_fill_(mask == 0, float("-inf"))
        next_pos = positions[:, -1].repeat_interleave(n, 0) + 1
        decoder = cls(model, prompt_caches, bias, n, next_pos, max_new_tokens)
        return decoder, logits.repeat_interleave(n, dim=0)

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
        self.regroup()

    def grow(self) -> None:
        extra = max(1, min(self.limit, 2 * self.capacity) - self.capacity)
        if self.kernel is None:
            self.caches = [tuple(widen(b, -2, extra) for b in c) for c in self.caches]
        else:  # K grows by blocks of 8 columns
            extra = round8(extra)
            self.caches = [(widen(K, -3, extra // 8), widen(V, -2, extra)) for K, V in self.caches]
        self.capacity += extra
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


def dense_kernel(model, keys: torch.Tensor):
    """The fused attention kernel for this dense model's heads (r1lab.kernels), or None: float32
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
        self.mlp, self.ops = mlp, ops  # ops: r1lab.kernels.FusedOps, or None for torch's
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
        """Attention by r1lab.kernels: `attention` is this layer's kernel bound to its prompt and
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
        weights = torch.softmax(torch.cat([prompt_scores, torch.bmm(query, own.transpose(1, 2))], dim=-1), dim=-1)
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
