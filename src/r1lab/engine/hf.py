"""The one place r1lab runs a Hugging Face model over a transformers KV cache.

    cache = new_cache(model)
    logits = forward(model, ids, mask, positions, cache, logits_to_keep=1)   # the cache fills up
    per_layer = layer_tensors(cache)                                         # [(K, V), ...]
    cache = cache_of(model, [(K[rows], V[rows]) for K, V in per_layer])      # a cache to continue from

Prompts are prefilled by the model's own forward (`prefill_prompts`) for every decoder: the
static-cache decoder (static_cache.py) takes the prompt keys and values out of that cache, and
`DynamicCacheDecoder`, the fallback for any causal LM, keeps decoding through the model's forward.
The GRPO update (rl/update.py) runs its prompt pass and its completion passes through the same
functions. Only transformers' public cache API is used: the model's `cache` argument (transformers
5.24 renamed `past_key_values` to it; the old name goes in 5.40, so pyproject pins the versions
the tests have run), `DynamicCache(config=...)`, its `update`, `layers[i].keys / .values`,
`batch_repeat_interleave` and `batch_select_indices`.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from r1lab.runtime.device import model_device


def left_padded(prompt_ids: list[list[int]], pad: int, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded batch on `device`: ids, attention mask and position ids, each (P, W)."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=device)
    starts = torch.tensor([width - len(p) for p in prompt_ids], device=device)
    mask = (torch.arange(width, device=device) >= starts[:, None]).long()
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def new_cache(model) -> DynamicCache:
    return DynamicCache(config=model.config)


def forward(model, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache,
            logits_to_keep: int = 0) -> torch.Tensor:
    """The model's logits for `ids` (B, L) after what `cache` holds, which the call extends:
    (B, L, V), or (B, logits_to_keep, V) for the last positions only."""
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                 logits_to_keep=logits_to_keep).logits


def layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) in `cache`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_of(model, per_layer: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A cache holding these keys and values per layer (e.g. one prompt's rows, repeated)."""
    cache = new_cache(model)
    for i, (keys, values) in enumerate(per_layer):
        cache.update(keys, values, i)
    return cache


def prefill_prompts(model, prompt_ids: list[list[int]], pad: int):
    """One forward over the distinct prompts: (DynamicCache, last logits (P, V), mask, positions)."""
    ids, mask, positions = left_padded(prompt_ids, pad, model_device(model))
    cache = new_cache(model)
    logits = forward(model, ids, mask, positions, cache, logits_to_keep=1)
    return cache, logits[:, -1], mask, positions


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
        logits = forward(self.model, tokens[:, None], self.mask, self.next_pos, self.cache, logits_to_keep=1)
        self.next_pos = self.next_pos + 1
        return logits[:, -1]
