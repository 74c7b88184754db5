"""One behavioural contract for every rollout backend (`Sampler`), on a tiny random-weight Qwen2.

Each backend must: return n samples per prompt, grouped in prompt order; honour and count stop
tokens (the model's EOS and `stop_token_ids`, the stop token kept in the completion); honour
`max_new_tokens` and `min_new_tokens` and flag truncation; decode greedily at temperature 0 to
exactly transformers' `generate`; reproduce a sampled rollout from its seed; and, after
`load_weights(model)`, sample from the model's new weights. The vLLM case needs vllm and a CUDA
GPU and is skipped without them (it has never run on this project's machines)."""

import importlib.util

import pytest
import torch

from r1lab.engine.params import SamplingParams
from r1lab.engine.vllm import RolloutConfig, make_sampler
from r1lab.model.tokenizer import train_tokenizer
from tests.tiny_models import (
    greedy_reference,  # transformers' greedy decode, cut at a stop
    save_tiny_qwen2,
)

PROMPTS = ["abc", "x y z cab ba abc", "b"]  # different lengths: left padding
HAS_VLLM = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
BACKENDS = ["hf", pytest.param("vllm", marks=pytest.mark.skipif(not HAS_VLLM, reason="needs vllm and a CUDA GPU"))]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen2")
    tok = train_tokenizer(["abcab cab ba xyz, x y z: 12+34=46"] * 20, vocab_size=300)
    return save_tiny_qwen2(out, tok, max_position_embeddings=256)


@pytest.fixture(params=BACKENDS)
def backend(request, model_dir):
    """(sampler, trainer model, tokenizer) for one backend, freshly loaded."""
    from r1lab.runtime.loading import load

    model, tok = load(model_dir)
    return make_sampler(RolloutConfig(backend=request.param, dtype="float32"), model, tok, model_dir, log=lambda *_: None), model, tok


def test_greedy_equals_a_reference_decode_with_stops_grouping_and_truncation(backend):
    sampler, model, tok = backend
    free = [greedy_reference(model, tok, p, 10, [tok.eos_token_id]) for p in PROMPTS]
    stop = free[1][3]  # a token some rows produce early: they stop mid-batch, others run on
    expected = [greedy_reference(model, tok, p, 10, [tok.eos_token_id, stop]) for p in PROMPTS]
    assert 1 < len({len(e) for e in expected}), "the test needs rows that stop at different steps"
    gen = sampler.generate(PROMPTS, 2, SamplingParams(temperature=0.0, max_new_tokens=10, stop_token_ids=(stop,)))
    assert gen.n == 2 and len(gen.prompt_ids) == len(PROMPTS)
    assert gen.completion_ids == [e for e in expected for _ in range(2)]  # prompt i's samples at rows 2i, 2i+1
    assert gen.truncated == [len(e) == 10 and e[-1] not in (stop, tok.eos_token_id) for e in expected for _ in range(2)]
    assert gen.num_tokens == 2 * sum(map(len, expected))  # the stop token is kept and counted
    assert gen.texts == tok.batch_decode(gen.completion_ids, skip_special_tokens=True)


def test_sampling_respects_lengths_and_is_reproducible_from_its_seed(backend):
    sampler, model, tok = backend
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=6, min_new_tokens=3, seed=5,
                            stop_token_ids=tuple(range(3, len(tok), 2)))  # half the vocabulary stops
    gen = sampler.generate(PROMPTS, 4, params)
    assert len(gen.completion_ids) == 4 * len(PROMPTS)
    stops = {tok.eos_token_id, *params.stop_token_ids}
    for ids, cut in zip(gen.completion_ids, gen.truncated):
        assert 3 <= len(ids) <= 6
        assert not stops & set(ids[:-1])  # nothing after a stop token, no stop before min_new_tokens
        assert cut == (len(ids) == 6 and ids[-1] not in stops)
    assert any(ids[-1] in stops for ids in gen.completion_ids) and len({tuple(c) for c in gen.completion_ids}) > 1
    assert sampler.generate(PROMPTS, 4, params).completion_ids == gen.completion_ids  # same seed, same rollout
    other = sampler.generate(PROMPTS, 4, SamplingParams(**{**params.__dict__, "seed": 6}))
    assert other.completion_ids != gen.completion_ids


def test_load_weights_makes_the_next_generation_use_the_new_weights(backend):
    sampler, model, tok = backend
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    before = sampler.generate(PROMPTS, 1, params).completion_ids
    torch.manual_seed(1)
    with torch.no_grad():  # an "update" large enough to change the greedy tokens
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    sampler.load_weights(model)
    after = sampler.generate(PROMPTS, 1, params).completion_ids
    assert after != before
    assert after == [greedy_reference(model, tok, p, 8, [tok.eos_token_id]) for p in PROMPTS]
