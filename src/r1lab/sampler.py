"""Generation: the one interface through which RL rollouts and evaluation sample completions.

`Sampler.generate(prompts, n, params)` returns `n` completions per prompt, grouped (prompt i's
samples are rows i*n .. i*n+n-1). `HFSampler` implements it for any Hugging Face causal LM:
- each distinct prompt is prefilled once and its KV cache repeated `n` times (a GRPO group
  shares its prompt, so this divides prefill work by G);
- decoding runs token by token over the KV cache, and rows that have finished (a stop token:
  the tokenizer's EOS, the model's generation-config EOS ids such as a chat model's end-of-turn
  token, or `params.stop_token_ids`) are dropped from the cache and the batch, so late steps only
  pay for live sequences;
- sampling is temperature + nucleus (top-p) from a seeded `torch.Generator`, so a run is
  reproducible; temperature 0 is greedy.
A faster backend (a static-cache compiled decoder, vLLM) implements the same method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import DynamicCache


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()  # besides the tokenizer's EOS
    seed: int = 0


@dataclass
class Generation:
    prompt_ids: list[list[int]]  # per distinct prompt, unpadded (P lists)
    completion_ids: list[list[int]]  # per sample, unpadded, stop token included (P*n lists)
    texts: list[str]  # decoded completions, special tokens skipped (P*n)
    truncated: list[bool]  # hit max_new_tokens without a stop token (P*n)
    n: int  # samples per prompt
    seconds: float = 0.0

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)


class Sampler(Protocol):
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> Generation: ...


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Next tokens from logits (B, V) -> (B,): greedy at temperature 0, else nucleus sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # tokens after the nucleus is full
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        pick = torch.multinomial(sorted_p, 1, generator=generator)  # multinomial renormalises
        return order.gather(-1, pick).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def model_stop_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS and the model's generation-config EOS id(s) (one int or a list)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, (list, tuple)) else [eos])}
    return {i for i in ids if i is not None}


class HFSampler:
    def __init__(self, model, tokenizer, max_rows: int = 512, add_special_tokens: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.max_rows = max_rows  # sequences decoded together (distinct prompts × n)
        # False for prompts rendered by a chat template, which already hold the BOS token.
        self.add_special_tokens = add_special_tokens
        self.stop_ids = model_stop_ids(model, tokenizer)

    @torch.inference_mode()
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> Generation:
        t0 = time.time()
        was_training = self.model.training
        self.model.eval()
        gen = torch.Generator().manual_seed(params.seed)
        prompt_ids = self.tokenizer(prompts, add_special_tokens=self.add_special_tokens)["input_ids"]
        completions: list[list[int]] = []
        truncated: list[bool] = []
        per_batch = max(1, self.max_rows // n)
        for i in range(0, len(prompt_ids), per_batch):
            c, t = self._generate_batch(prompt_ids[i : i + per_batch], n, params, gen)
            completions += c
            truncated += t
        self.model.train(was_training)
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return Generation(prompt_ids, completions, texts, truncated, n, time.time() - t0)

    def _generate_batch(self, prompt_ids: list[list[int]], n: int, params: SamplingParams, gen):
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        stops = torch.tensor(sorted({*self.stop_ids, *params.stop_token_ids}))
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])  # (P, L) left-padded
        mask = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompt_ids])[:, None]).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        # Expand the prefilled prompts to their n samples each.
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)  # (B, V)
        mask = mask.repeat_interleave(n, dim=0)  # (B, L)
        next_pos = positions[:, -1:].repeat_interleave(n, dim=0) + 1  # (B, 1)
        rows = torch.arange(len(prompt_ids) * n)  # sample index of each live row
        tokens: list[list[int]] = [[] for _ in range(len(rows))]
        done = [False] * len(rows)
        for step in range(params.max_new_tokens):
            nxt = sample_tokens(logits, params.temperature, params.top_p, gen)  # (B,)
            finished = torch.isin(nxt, stops)
            for r, tok in zip(rows.tolist(), nxt.tolist()):
                tokens[r].append(tok)
            if finished.any():
                for r in rows[finished].tolist():
                    done[r] = True
                keep = (~finished).nonzero().squeeze(-1)
                if len(keep) == 0:
                    break
                cache.batch_select_indices(keep)
                rows, nxt, mask, next_pos = rows[keep], nxt[keep], mask[keep], next_pos[keep]
            if step == params.max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos,
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1]
            next_pos = next_pos + 1
        return tokens, [not d for d in done]
