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
  whole cache every token). Dense float32 models on CPU attend through r1lab.engine.kernels' fused C
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
logits match a full forward (tests/engine/test_sampler.py).

`HFSampler.stream(prompt, params)` yields one completion token by token through the same decoders
and the same draws (`r1lab chat`): its tokens are those of `generate(prompt, 1, params)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from r1lab.engine.hf import DynamicCacheDecoder
from r1lab.engine.params import SamplingParams
from r1lab.engine.static_cache import StaticCacheDecoder
from r1lab.runtime import distributed
from r1lab.runtime.runlog import progress


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
    # HFSampler with params.logprobs: each drawn token's log-prob under the distribution the decoder
    # drew it from (temperature applied, before top-p; P*n lists): GRPO's drift metric compares it
    # with the trainer's (rl/update.py)
    draw_logprobs: list[list[float]] | None = None

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
    global prompt index), and a rollout split across ranks (runtime/distributed.py) samples exactly what
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
    """`sample_tokens`, in C (r1lab.engine.kernels.FusedOps.sample) when the decoder has the fused ops and
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
        """Nothing to push when this sampler decodes with the trainer's own model (read afresh each
        call); a full copy of an FSDP2-sharded trainer gets its weights, gathered one tensor at a
        time (collective: every rank calls it)."""
        if model is not self.model:
            distributed.copy_weights(model, self.model)

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
        logprobs: list[list[float]] = []
        per_batch = max(1, self.max_rows // n)
        starts = range(0, len(prompt_ids), per_batch)
        for i in progress(starts, desc="generate", unit="batch", leave=False) if len(starts) > 1 else starts:
            draws = PromptDraws(tuple(params.seed[i : i + per_batch]), n) if per_prompt else gen
            c, t, lp = self._generate_batch(prompt_ids[i : i + per_batch], n, params, draws)
            completions += c
            truncated += t
            logprobs += lp
        self.model.train(was_training)
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return Generation(prompt_ids, completions, texts, truncated, n, time.time() - t0,
                          draw_logprobs=logprobs if params.logprobs else None)

    @torch.inference_mode()
    def stream(self, prompt: str, params: SamplingParams) -> Iterator[int]:
        """One completion of `prompt`, yielded token by token (its stop token last, if one came).
        Closing the iterator early (a user's Ctrl-C) stops the decoding there."""
        was_training = self.model.training
        self.model.eval()
        try:
            ids = self.tokenizer(prompt, add_special_tokens=self.add_special_tokens)["input_ids"]
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            decoder_class = StaticCacheDecoder if self.static_cache else DynamicCacheDecoder
            decoder, logits = decoder_class.prefill(self.model, [ids], 1, pad, params.max_new_tokens)
            stops = {*self.stop_ids, *params.stop_token_ids}
            gen = torch.Generator().manual_seed(params.seed)
            for step in range(params.max_new_tokens):
                if step < params.min_new_tokens:
                    logits[:, sorted(stops)] = float("-inf")
                token = int(draw(logits, params, gen, getattr(decoder, "ops", None))[0])
                yield token
                if token in stops or step == params.max_new_tokens - 1:
                    return
                logits = decoder.step(torch.tensor([token], device=logits.device))
        finally:
            self.model.train(was_training)

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
        lps = torch.zeros(B, steps, device=device) if params.logprobs else None  # (B, steps) draws' log-probs
        for step in range(steps):
            if step < params.min_new_tokens:
                logits[:, stops] = float("-inf")
            if isinstance(gen, PromptDraws):
                gen.live = rows
            nxt = draw(logits, params, gen, getattr(decoder, "ops", None))  # (live,)
            out[rows, step] = nxt
            if lps is not None:  # under the distribution drawn from: temperature applied, before top-p
                t = params.temperature or 1.0  # greedy: the model's own distribution
                lps[rows, step] = torch.log_softmax(logits.float() / t, -1).gather(-1, nxt[:, None])[:, 0]
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
        logprobs = [] if lps is None else [row[:k] for row, k in zip(lps.tolist(), length.tolist())]
        return tokens, (~stopped).tolist(), logprobs
