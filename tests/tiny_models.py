"""Tiny models, tokenizers and configs for tests: real loading and training code, small data."""

from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.model.architecture import ModelConfig, build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.runtime.config import load_config

# r1lab's DeepSeek-V3 architecture at its smallest: MLA, 4 routed experts (top-2) + 1 shared
TINY_DEEPSEEK = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, dense_intermediate=64, routed_experts=4,
                            experts_per_token=2, expert_intermediate=32, kv_lora_rank=16, qk_rope_dim=8,
                            qk_nope_dim=8, v_head_dim=8, max_positions=256)

# the same as `r1lab pretrain` overrides, and the smallest R1-Zero run on top of it
TINY_PRETRAIN = ["pretrain.steps=3", "pretrain.corpus.n_docs=200", "pretrain.corpus.signs.n_docs=50", "pretrain.batch_size=4", "pretrain.seq_len=256",
                 "pretrain.vocab_size=300", "pretrain.model.hidden_size=32", "pretrain.model.num_layers=2",
                 "pretrain.model.num_heads=2", "pretrain.model.dense_intermediate=64",
                 "pretrain.model.expert_intermediate=32", "pretrain.model.kv_lora_rank=16"]
TINY_RL = ["data.n_train=50", "data.n_test=4", "eval.k=2", "eval.sampling.max_new_tokens=16",
           "grpo.sampling.max_new_tokens=16", "grpo.prompts_per_step=4", "grpo.group_size=2", "grpo.steps=1",
           "save_every=1"]


def tiny_policy(seed=0):
    """A random-weight TINY_DEEPSEEK and a tokenizer of 300 tokens."""
    tok = train_tokenizer(["abcab cab ba xyz"] * 20, vocab_size=300)
    model = build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=seed)
    return model, tok


def tiny_zero_overrides(tmp_path, **over) -> list[str]:
    """The key=value overrides of `tiny_zero_config` (e.g. for the command line)."""
    return [
        f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", *TINY_PRETRAIN,
        "data.n_train=50", "data.n_test=4", "eval.k=2", "eval.sampling.max_new_tokens=24",
        "grpo.sampling.max_new_tokens=24", "grpo.prompts_per_step=2", "grpo.group_size=3", "grpo.steps=2",
        "save_every=1", "gate=false", "grpo.beta=0.01",
    ] + [f"{k}={v}" for k, v in over.items()]


def tiny_zero_config(tmp_path, **over):
    """An R1-Zero run of 2 steps on a base pretrained for 3 steps, in `tmp_path`."""
    from r1lab.stages.zero import ZeroConfig

    return load_config(ZeroConfig, None, tiny_zero_overrides(tmp_path, **over))


def save_tiny_base(out: Path, texts: list[str]) -> Path:
    """A random-weight TINY_DEEPSEEK (routers, expert biases) with a tokenizer trained on `texts`, saved to `out`."""
    tok = train_tokenizer(texts, vocab_size=400)
    build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=0).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_tiny_qwen2(out: Path, tok, max_position_embeddings: int = 1024, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 32, GQA 4/2) over `tok`'s vocabulary, saved with `tok` to `out`."""
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=max_position_embeddings,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def greedy_reference(model, tok, prompt: str, max_new_tokens: int, stops: list[int]) -> list[int]:
    """transformers' greedy decoding of one unpadded prompt, cut after the first stop token."""
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                         eos_token_id=stops, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
    cut = next((i + 1 for i, t in enumerate(out) if t in stops), len(out))
    return out[:cut]


def length_reward(completions, problems):
    """A reward with spread in every group of a random policy (the tiny bases never solve a problem,
    so accuracy and format are all 0 and every group would be dropped): each GRPO step updates."""
    return [len(c) / 100 for c in completions]
