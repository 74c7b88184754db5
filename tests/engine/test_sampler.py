"""The sampler's fast decoding path against transformers, on tiny random-weight models.

Greedy tokens must equal `model.generate(do_sample=False)` run on each prompt alone (no padding),
and the fast path's per-step logits must equal a full forward over the finished sequences: this
pins the static cache, left padding, positions, RoPE, absorbed MLA, both MoE paths, cache growth
and the compaction of finished rows. A model the fast path does not know falls back to the
model's own forward."""

import pytest
import torch
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from r1lab.engine import kernels, sampler, static_cache
from r1lab.engine.hf import left_padded
from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import HFSampler
from r1lab.engine.static_cache import StaticCacheDecoder
from r1lab.model.architecture import ModelConfig, build_model
from r1lab.model.tokenizer import train_tokenizer
from tests.tiny_models import greedy_reference

PROMPTS = ["abc", "x y z cab ba abc", "b", "cab cab xyz"]  # different lengths: left padding


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["abcab cab ba xyz, x y z: 12+34=46"] * 20, vocab_size=300)


def special_ids(tok):
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def qwen(tok):
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256, **special_ids(tok))
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


def llama(tok):  # attention and MLP biases, no GQA, llama3 RoPE scaling
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                         attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64}, **special_ids(tok))
    torch.manual_seed(1)
    return LlamaForCausalLM(config).eval()


def deepseek(tok):  # r1lab's own model, scaled down
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, dense_intermediate=64, routed_experts=4,
                      experts_per_token=2, expert_intermediate=32, kv_lora_rank=16, qk_rope_dim=8, qk_nope_dim=8,
                      v_head_dim=8, max_positions=256)
    return build_model(cfg, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=2).eval()


def deepseek_variant(tok):  # q low-rank compression, group-limited routing, no RoPE interleave, 2 MoE layers
    config = DeepseekV3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                              num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                              n_shared_experts=2, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                              num_attention_heads=4, num_key_value_heads=4, q_lora_rank=12, kv_lora_rank=16,
                              qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=12, head_dim=8,
                              rope_interleave=False, max_position_embeddings=256, **special_ids(tok))
    torch.manual_seed(3)
    model = DeepseekV3ForCausalLM(config).eval()
    for layer in model.model.layers[1:]:  # a non-zero selection bias, as after load balancing
        layer.mlp.gate.e_score_correction_bias.normal_(0, 0.05)
    return model


MODELS = {"qwen": qwen, "llama": llama, "deepseek": deepseek, "deepseek_variant": deepseek_variant}


DENSE = ("qwen", "llama")


def use_kernels(on: bool, monkeypatch) -> None:
    """Dense models decode with r1lab.engine.kernels' fused attention (on) or with torch ops (off)."""
    monkeypatch.setenv("R1LAB_KERNELS", "1" if on else "0")
    assert kernels.enabled() == on, "the test machine needs a C compiler for the fused kernel"


@pytest.mark.parametrize("name, experts, fused", [(name, "dense", False) for name in MODELS] + [
    (name, "dense", True) for name in DENSE] + [("deepseek", "sparse", False), ("deepseek_variant", "sparse", False)])
def test_greedy_tokens_equal_transformers_generate(name, experts, fused, tok, monkeypatch):
    """experts: MoE layers run every expert on every row ("dense") or sorted grouped matmuls;
    fused: dense attention by r1lab.engine.kernels instead of torch ops."""
    use_kernels(fused, monkeypatch)
    monkeypatch.setattr(static_cache.MoE, "DENSE_BELOW", 10**6 if experts == "dense" else 0)
    monkeypatch.setattr(StaticCacheDecoder, "FIRST_ROOM", 3)  # the cache grows several times
    model = MODELS[name](tok)
    fast = HFSampler(model, tok)
    assert fast.static_cache
    # a stop token that some but not all rows produce early, so finished rows leave mid-batch
    free = [greedy_reference(model, tok, p, 10, [tok.eos_token_id]) for p in PROMPTS]
    stop = free[1][3]
    expected = [greedy_reference(model, tok, p, 10, [tok.eos_token_id, stop]) for p in PROMPTS]
    assert 1 < len({len(e) for e in expected}), "the test needs rows that stop at different steps"
    params = SamplingParams(temperature=0.0, max_new_tokens=10, stop_token_ids=(stop,))
    gen = fast.generate(PROMPTS, 2, params)
    assert gen.completion_ids == [e for e in expected for _ in range(2)]
    assert gen.truncated == [len(e) == 10 and e[-1] not in (stop, tok.eos_token_id) for e in expected for _ in range(2)]
    slow = HFSampler(model, tok, static_cache=False).generate(PROMPTS, 2, params)
    assert slow.completion_ids == gen.completion_ids and slow.truncated == gen.truncated


@pytest.mark.parametrize("name, fused", [(name, False) for name in MODELS] + [(name, True) for name in DENSE])
def test_step_logits_equal_a_full_forward(name, fused, tok, monkeypatch):
    """Sample 8 tokens for 2 samples per prompt through the static cache, dropping samples 1 and 4
    after step 3 (prompts then have 1 or 2 live rows), and compare every step's logits with one
    forward over each finished sequence."""
    use_kernels(fused, monkeypatch)
    monkeypatch.setattr(StaticCacheDecoder, "FIRST_ROOM", 5)
    model = MODELS[name](tok)
    prompt_ids = tok(PROMPTS)["input_ids"]
    B = 2 * len(PROMPTS)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        decoder, logits = StaticCacheDecoder.prefill(model, prompt_ids, 2, tok.pad_token_id, 8)
        assert (decoder.kernel is not None) == fused
        rows, tokens, step_logits = list(range(B)), [[] for _ in range(B)], [[] for _ in range(B)]
        for step in range(8):
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]  # the two samples differ
            for i, r in enumerate(rows):
                tokens[r].append(int(nxt[i]))
                step_logits[r].append(logits[i])
            if step == 3:
                keep = torch.tensor([i for i, r in enumerate(rows) if r not in (1, 4)])
                decoder.keep(keep)
                rows, nxt = [rows[i] for i in keep], nxt[keep]
            logits = decoder.step(nxt)
        for i, r in enumerate(rows):
            step_logits[r].append(logits[i])
        for r in range(B):
            full = [prompt_ids[r // 2] + tokens[r][: len(step_logits[r]) - 1]]
            ids, mask, positions = left_padded(full, tok.pad_token_id)
            ref = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[0]
            ours = torch.stack(step_logits[r])
            torch.testing.assert_close(ours, ref[-len(ours):], atol=2e-5, rtol=1e-4)


def test_sampling_is_seeded_and_respects_top_p_and_min_new_tokens(tok):
    model = deepseek(tok)
    s = HFSampler(model, tok)
    a = s.generate(PROMPTS, 3, SamplingParams(temperature=1.0, max_new_tokens=12, seed=5))
    b = s.generate(PROMPTS, 3, SamplingParams(temperature=1.0, max_new_tokens=12, seed=5))
    c = s.generate(PROMPTS, 3, SamplingParams(temperature=1.0, max_new_tokens=12, seed=6))
    assert a.completion_ids == b.completion_ids != c.completion_ids
    # a nucleus of one token is greedy decoding
    greedy = s.generate(PROMPTS, 1, SamplingParams(temperature=0.0, max_new_tokens=12))
    narrow = s.generate(PROMPTS, 1, SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=12, seed=1))
    assert narrow.completion_ids == greedy.completion_ids
    # every token but two stops a row at once, unless min_new_tokens forbids it
    almost_all = tuple(t for t in range(len(tok)) if t not in (10, 11))
    one = s.generate(PROMPTS, 2, SamplingParams(max_new_tokens=6, stop_token_ids=almost_all))
    assert all(c[-1] in almost_all and set(c[:-1]) <= {10, 11} for c in one.completion_ids)
    assert sum(len(c) == 1 for c in one.completion_ids) >= 6 and not any(one.truncated)
    four = s.generate(PROMPTS, 2, SamplingParams(max_new_tokens=6, stop_token_ids=almost_all, min_new_tokens=4))
    assert all(len(c) >= 5 and set(c[:4]) <= {10, 11} for c in four.completion_ids)


@pytest.mark.parametrize("name", ["deepseek", "qwen"])
@pytest.mark.parametrize("temperature, top_p", [(0.6, 0.95), (1.0, 1.0)])  # the nucleus in torch; no nucleus: in C
def test_stream_yields_the_tokens_of_generate(name, temperature, top_p, tok):
    model = MODELS[name](tok)
    s, s_slow = HFSampler(model, tok), HFSampler(model, tok, static_cache=False)
    for prompt, seed in zip(PROMPTS, range(4)):
        params = SamplingParams(temperature, top_p, max_new_tokens=9, seed=seed, stop_token_ids=(5, 6, 7))
        expected = s.generate([prompt], 1, params).completion_ids[0]
        assert list(s.stream(prompt, params)) == expected == list(s_slow.stream(prompt, params))
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    stream = s.stream(PROMPTS[1], greedy)
    first = [next(stream) for _ in range(3)]
    stream.close()  # a Ctrl-C: decoding stops there, and the sampler is as it was
    assert first == s.generate([PROMPTS[1]], 1, greedy).completion_ids[0][:3] and not model.training


def test_max_rows_splits_batches_without_changing_greedy_output(tok):
    model = qwen(tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    whole = HFSampler(model, tok).generate(PROMPTS, 3, params)
    split = HFSampler(model, tok, max_rows=4).generate(PROMPTS, 3, params)  # one prompt (3 rows) per batch
    assert split.completion_ids == whole.completion_ids and len(split.texts) == 12


def test_unknown_architectures_fall_back_to_the_models_own_forward(tok):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                      **special_ids(tok))).eval()
    sliding = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=64, use_sliding_window=True, sliding_window=4,
                          max_window_layers=0, **special_ids(tok))
    for model in (gpt2, Qwen2ForCausalLM(sliding).eval()):
        s = HFSampler(model, tok)
        assert not s.static_cache
        gen = s.generate(PROMPTS, 1, SamplingParams(temperature=0.0, max_new_tokens=8))
        assert gen.completion_ids == [greedy_reference(model, tok, p, 8, [tok.eos_token_id]) for p in PROMPTS]


def test_categorical_draws_follow_the_probabilities():
    """Inverse-CDF sampling: frequencies match the probabilities (also unnormalised ones, as the
    nucleus passes them), and a zero-probability token is never drawn."""
    probs = torch.tensor([[0.5, 0.0, 0.2, 0.3], [0.0, 2.0, 0.0, 2.0]])  # row 2: unnormalised
    g = torch.Generator().manual_seed(0)
    draws = sampler.categorical(probs.repeat_interleave(20000, 0), g).view(2, 20000)
    freq = torch.stack([torch.bincount(row, minlength=4) / 20000 for row in draws])
    torch.testing.assert_close(freq, probs / probs.sum(-1, keepdim=True), atol=0.015, rtol=0)
    assert freq[0, 1] == 0 and freq[1, 0] == 0 and freq[1, 2] == 0


def test_nucleus_sampling_keeps_to_the_nucleus():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.1, 0.35]])).repeat(5000, 1)
    g = torch.Generator().manual_seed(0)
    drawn = sampler.sample_tokens(logits, 1.0, 0.8, g)  # nucleus {1, 3}: 0.5 + 0.35 >= 0.8
    assert set(drawn.tolist()) == {1, 3}
    assert abs(float((drawn == 1).float().mean()) - 0.5 / 0.85) < 0.03


def test_a_sampler_over_a_copy_samples_the_trainers_weights_after_load_weights(tok):
    """Under FSDP2 the sampler decodes with a full copy of the sharded policy: `load_weights`
    copies the trainer's weights (router biases, a buffer, included) into it, so the next rollout
    is the trainer's own, and never the copy's stale weights."""
    import copy

    trainer = deepseek_variant(tok)
    own, copied = HFSampler(trainer, tok), HFSampler(copy.deepcopy(trainer), tok)
    params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=5)
    assert copied.generate(PROMPTS, 2, params).completion_ids == own.generate(PROMPTS, 2, params).completion_ids
    with torch.no_grad():  # an update: new weights and a new selection bias
        for p in trainer.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        for layer in trainer.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.5)
    after = own.generate(PROMPTS, 2, params).completion_ids
    assert copied.generate(PROMPTS, 2, params).completion_ids != after  # stale until the weights are pushed
    copied.load_weights(trainer)
    assert copied.generate(PROMPTS, 2, params).completion_ids == after
    assert all(torch.equal(a, b) for a, b in zip(trainer.state_dict().values(), copied.model.state_dict().values()))
