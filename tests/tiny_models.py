"""Tiny random-weight Hugging Face models for tests: real loading code, small data."""

from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def save_tiny_qwen2(out: Path, tok, max_position_embeddings: int = 1024, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 32, GQA 4/2) over `tok`'s vocabulary, saved with `tok` to `out`."""
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=max_position_embeddings,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out
