"""The vLLM backend's pieces that run without vLLM: the parameter mapping, the truncated importance
weights (by hand and through the GRPO update), and the one-line refusal without vllm or a GPU."""

import importlib.util
import math
import subprocess
import sys

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.cli import main
from r1lab.engine.params import SamplingConfig, SamplingParams
from r1lab.engine.sampler import HFSampler
from r1lab.engine.vllm import vllm_sampling_kwargs
from r1lab.model.tokenizer import train_tokenizer
from r1lab.rl.grpo import truncated_is_weights
from r1lab.rl.step import GRPOConfig
from r1lab.rl.update import completion_logprobs, prompt_pass, update_policy

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_sampling_params_map_onto_vllms_keywords():
    params = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=200, stop_token_ids=(9, 4), seed=3,
                            min_new_tokens=5)
    kw = vllm_sampling_kwargs(params, 16, {2, 4}, prompt=1)
    assert kw == {"n": 16, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "max_tokens": 200, "min_tokens": 5,
                  "stop_token_ids": [2, 4, 9], "ignore_eos": False, "seed": 3 * 1_000_003 + 1, "logprobs": 0,
                  "skip_special_tokens": True}
    # prompts get distinct seeds, fixed by (seed, prompt); greedy stays greedy
    seeds = {vllm_sampling_kwargs(params, 16, set(), prompt=i)["seed"] for i in range(8)}
    assert len(seeds) == 8
    per_prompt = SamplingParams(seed=(11, 12, 13))  # one seed per prompt, as a sharded rollout passes them
    assert [vllm_sampling_kwargs(per_prompt, 2, set(), i)["seed"] for i in range(3)] == [11, 12, 13]
    assert vllm_sampling_kwargs(SamplingParams(temperature=0.0), 1, set(), 0)["temperature"] == 0.0
    if HAS_VLLM:  # the keywords are vLLM's own
        import vllm

        vllm.SamplingParams(**kw)


def test_truncated_is_weights_by_hand():
    old = torch.tensor([[math.log(0.5), math.log(0.2), math.log(0.3)]])  # trainer: π_old of each sampled token
    sampler = torch.tensor([[math.log(0.25), math.log(0.4), math.log(0.3)]])  # the engine's
    w = truncated_is_weights(old.requires_grad_(), sampler, cap=1.5)
    assert torch.allclose(w, torch.tensor([[1.5, 0.5, 1.0]]))  # 0.5/0.25 = 2 capped at 1.5; 0.2/0.4; equal
    assert not w.requires_grad  # a weight, not a path for the gradient


@pytest.fixture(scope="module")
def rollout():
    tok = train_tokenizer(["abcab cab ba xyz, x y z: 12+34=46"] * 20, vocab_size=300)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    gen = HFSampler(model, tok).generate(["abc", "x y z"], 4, SamplingParams(max_new_tokens=6, seed=1))
    with torch.no_grad():
        lp, _, mask = completion_logprobs(model, prompt_pass(model, gen, tok.pad_token_id), gen, list(range(8)),
                                          tok.pad_token_id)
    own = [row[: int(m.sum())].tolist() for row, m in zip(lp, mask)]
    return model, tok, gen, own


@pytest.mark.parametrize("shift, cap, factor", [(None, 2.0, 1.0), (0.0, 2.0, 1.0), (math.log(2), 2.0, 2.0),
                                                (math.log(2), 1.5, 1.5), (math.log(2), 0.0, 1.0)])
def test_update_weights_each_tokens_loss_by_the_capped_ratio(rollout, shift, cap, factor):
    """The engine's log-probs = the trainer's − shift: every token's weight is min(e^shift, cap).
    With advantages all 1 and μ = 1 the sequence-mean loss is −1 × that weight. No sampler
    log-probs (the HF backend) or cap 0: the loss is unchanged."""
    model, tok, gen, own = rollout
    gen.sampler_logprobs = None if shift is None else [[x - shift for x in row] for row in own]
    g = GRPOConfig(group_size=4, lr=1e-9, tis_cap=cap,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=6))
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    stats = update_policy(model, None, opt, gen, torch.ones(8), list(range(8)), g, tok.pad_token_id, 0)
    assert stats["loss"] == pytest.approx(-factor, rel=1e-5)
    if shift is not None and cap > 0:
        assert stats["is_weight_mean"] == pytest.approx(factor, rel=1e-5)
    gen.sampler_logprobs = None


@pytest.mark.skipif(HAS_VLLM and torch.cuda.is_available(), reason="vllm and a GPU are here: the backend runs")
def test_vllm_backend_without_vllm_or_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["zero", f"run_dir={tmp_path / 'run'}", "rollout.backend=vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rollout.backend" in err and "vllm" in err
    assert not (tmp_path / "run").exists()
    assert main(["zero", f"run_dir={tmp_path / 'run'}", "rollout.backend=sglang"]) == 2
    assert "rollout.backend" in capsys.readouterr().err


def test_importing_r1lab_never_imports_vllm():
    code = "import sys, r1lab.stages.zero, r1lab.engine.vllm, r1lab.cli; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


class FakeLLM:
    """Stands in for `vllm.LLM`: records calls, answers each prompt with n samples out of order
    (sample 0 stops after two tokens, the others run to max_tokens), log-prob −0.5 × position."""

    def __init__(self, **kwargs):
        from types import SimpleNamespace as NS

        self.kwargs, self.calls, self.pushed = kwargs, [], []
        model = NS(load_weights=lambda weights: self.pushed.extend(name for name, _ in weights))
        self.llm_engine = NS(model_executor=NS(driver_worker=NS(worker=NS(model_runner=NS(model=model)))))

    def sleep(self, level):
        self.calls.append("sleep")

    def wake_up(self, tags=None):
        self.calls.append("wake")

    def reset_prefix_cache(self):
        self.calls.append("reset")

    def generate(self, prompts, params, use_tqdm=False):
        from types import SimpleNamespace as NS

        self.calls.append("generate")
        self.requests = list(zip(prompts, params))
        outs = []
        for p, sp in zip(prompts, params):
            samples = []
            for j in range(sp.n):
                ids = [p["prompt_token_ids"][0], 3] if j == 0 else [4 + j] * sp.max_tokens
                samples.append(NS(index=j, token_ids=ids, finish_reason="stop" if j == 0 else "length",
                                  logprobs=[{t: NS(logprob=-0.5 * (k + 1))} for k, t in enumerate(ids)]))
            outs.append(NS(outputs=samples[::-1]))
        return outs


def test_vllm_sampler_glue_against_a_fake_engine(monkeypatch, rollout):
    """Without vLLM: the engine's arguments, its outputs turned into a `Generation` (grouped, in
    sample order, truncation, log-probs), sleep/wake around generation and the weight push."""
    import types

    from r1lab.engine.vllm import RolloutConfig, VLLMSampler

    model, tok, _, _ = rollout
    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    s = VLLMSampler("some/model", model, tok, RolloutConfig(backend="vllm", gpu_memory_utilization=0.25),
                    log=lambda *_: None)
    assert s.llm.kwargs["enable_sleep_mode"] and s.llm.kwargs["gpu_memory_utilization"] == 0.25
    assert s.llm.kwargs["logprobs_mode"] == "raw_logprobs" and s.llm.calls == ["sleep"]
    gen = s.generate(["abc", "x y z"], 3, SamplingParams(max_new_tokens=4, seed=2))
    assert s.llm.calls == ["sleep", "wake", "generate", "sleep"]
    ids = tok(["abc", "x y z"])["input_ids"]
    assert gen.prompt_ids == ids and [r[0]["prompt_token_ids"] for r in s.llm.requests] == ids
    assert gen.completion_ids[:3] == [[ids[0][0], 3], [5] * 4, [6] * 4]  # prompt 0's samples, in index order
    assert gen.completion_ids[3:] == [[ids[1][0], 3], [5] * 4, [6] * 4]
    assert gen.truncated == [False, True, True] * 2
    assert gen.sampler_logprobs[0] == [-0.5, -1.0] and gen.sampler_logprobs[1] == [-0.5, -1.0, -1.5, -2.0]
    assert gen.texts == tok.batch_decode(gen.completion_ids, skip_special_tokens=True)
    s.load_weights(model)
    assert s.llm.pushed == list(model.state_dict()) and s.llm.calls[-2:] == ["wake", "reset"]
