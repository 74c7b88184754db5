"""Device placement without a GPU: every tensor the trainers make is made on the model's device.

There is no CUDA here, so the check runs the trainers with the model on the CPU and torch's
default device set to "meta" (`with torch.device("meta")`). A factory call that forgets
`device=` (torch.tensor, zeros, arange, full, rand, ...) then makes a meta tensor, which the code
running on a GPU would have made on the CPU instead. Such a tensor either raises where it meets
the model's tensors, or worse, is read silently as garbage (indexing a CPU tensor with a meta
index "works"); so each run is also watched op by op (`MetaWatcher`: no aten op may see or make
a meta tensor) and its results must equal, bit for bit, the same run without the meta default.

Covered: a GRPO step (rollout through the sampler's torch path for dense and MLA models, rewards,
advantages, β > 0 with a reference model, μ = 2, the nucleus and plain draws, per-prompt seeds), a
LoRA GRPO step (the model's own forward over a DynamicCache, adapters-off reference), the
evaluation sampling path, an SFT step (with DeepSeek-V3's router-load counts) and reward-model
steps; then bfloat16 on the CPU, and the `device` / `dtype` fields' one-line errors.
"""

from __future__ import annotations

import copy
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from r1lab.cli import main
from r1lab.engine import kernels, static_cache
from r1lab.engine.params import SamplingConfig, SamplingParams
from r1lab.engine.sampler import HFSampler
from r1lab.errors import UserError
from r1lab.eval.metrics import evaluate
from r1lab.model.architecture import build_model
from r1lab.model.tokenizer import train_tokenizer
from r1lab.rl.rewards import get_reward
from r1lab.rl.step import GRPOConfig, group_seeds, grpo_step
from r1lab.runtime.device import model_device, resolve_device, resolve_dtype
from r1lab.runtime.loading import load
from r1lab.runtime.lora import LoRAConfig, add_adapters, reference_model
from r1lab.tasks import apply_template, make_task, register_task
from tests.tiny_models import TINY_DEEPSEEK, save_tiny_qwen2


class MetaWatcher(TorchDispatchMode):
    """Records every aten op that takes or makes a meta tensor, with the innermost r1lab line that
    led to it (the first one is enough to find the factory call that forgot its device)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tree_leaves((args, kwargs, out))):
            where = [f"{f.filename.split('/src/')[-1]}:{f.lineno} {f.line}" for f in traceback.extract_stack()
                     if "/r1lab/" in f.filename and "/tests/" not in f.filename]
            self.seen.append(f"{func} at {where[-1] if where else '?'}")
        return out


def on_meta_default(fn):
    """fn() with torch's default device "meta", watched; fails naming the first meta tensor's origin."""
    watcher = MetaWatcher()
    with torch.device("meta"), watcher:
        out = fn()
    assert not watcher.seen, f"{len(watcher.seen)} ops saw a meta tensor; first: {watcher.seen[0]}"
    return out


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture(autouse=True)
def torch_ops(monkeypatch):
    """The torch path of the sampler: the C kernels are CPU float32 only (a GPU never takes them)."""
    monkeypatch.setenv("R1LAB_KERNELS", "0")
    assert not kernels.enabled()


@pytest.fixture(scope="module")
def tok():
    task = make_task("arithmetic", digits=2, terms=2)
    text = " ".join(apply_template(p.prompt) for p in task.problems("train", 30, seed=0))
    return train_tokenizer([text, "<think> 12+34=46 </think> <answer>46</answer>"] * 4, vocab_size=300)


@pytest.fixture(scope="module")
def model_dirs(tok, tmp_path_factory):
    """Tiny random-weight models saved as Hugging Face directories, loaded by `runtime.loading.load`."""
    root = tmp_path_factory.mktemp("models")
    deepseek = root / "deepseek"
    build_model(TINY_DEEPSEEK, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, seed=0).save_pretrained(deepseek)
    tok.save_pretrained(deepseek)
    return {"qwen": save_tiny_qwen2(root / "qwen", tok), "deepseek": deepseek}


@pytest.fixture(scope="module")
def problems():
    task = register_task(make_task("arithmetic", digits=2, terms=2))
    return task.problems("train", 2, seed=0, langs=("en", "zh"))


def parity(texts, problems):  # a reward with spread in every group, so the update has work to do
    return [float(len(t) % 2) for t in texts]


REWARDS = {"format": get_reward("format"), "parity": parity}
WEIGHTS = {"format": 0.1, "parity": 1.0}
COMPARED = ("reward", "loss", "kl", "clip_frac", "entropy", "grad_norm", "len_mean", "zero_spread_frac")


def grpo_run(model, ref, tok, problems, g: GRPOConfig):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    record, gen = grpo_step(model, ref, opt, HFSampler(model, tok), problems, [apply_template(p.prompt) for p in problems],
                            REWARDS, WEIGHTS, g, tok.pad_token_id, (), seed=group_seeds(0, 0, range(len(problems))),
                            step=0, log=lambda *_: None)
    return record, gen


@pytest.mark.parametrize("kind, top_p, lora", [("qwen", 1.0, False), ("deepseek", 0.9, False), ("qwen", 1.0, True)])
def test_grpo_step_makes_every_tensor_on_the_model_device(kind, top_p, lora, model_dirs, tok, problems):
    """β > 0 (reference forward), μ = 2 (π_old forward and two updates), per-prompt seeds; the
    same rollout, statistics and updated weights as without the meta default."""
    g = GRPOConfig(prompts_per_step=2, group_size=3, beta=0.05, mu=2, micro_batch=4,
                   sampling=SamplingConfig(temperature=1.0, top_p=top_p, max_new_tokens=8))
    runs = []
    for watched in (False, True):
        model, _ = load(model_dirs[kind], "cpu")
        if lora:
            torch.manual_seed(0)  # the adapters' initialisation
            model = add_adapters(model, LoRAConfig(r=4))
        ref = reference_model(model)
        assert model_device(ref) == torch.device("cpu")
        model.train()
        fn = lambda: grpo_run(model, ref, tok, problems, g)  # noqa: E731
        record, gen = on_meta_default(fn) if watched else fn()
        runs.append((model, record, gen))
    (plain, r0, g0), (watched, r1, g1) = runs
    assert r0["zero_spread_frac"] < 1 and r0["kl"] > 0  # there was an update, and the reference counted
    assert g1.completion_ids == g0.completion_ids and g1.texts == g0.texts
    assert {k: r1[k] for k in COMPARED} == {k: r0[k] for k in COMPARED}
    assert same_weights(watched, plain)


@pytest.mark.parametrize("static_cache", [True, False])
def test_evaluation_sampling_makes_every_tensor_on_the_model_device(static_cache, model_dirs, tok, problems):
    """The evaluation path (one seed, nucleus sampling at the paper's T = 0.6 / top-p 0.95)."""
    model, _ = load(model_dirs["deepseek"])
    s = HFSampler(model, tok, static_cache=static_cache)
    prompts = [apply_template(p.prompt) for p in problems]
    params = SamplingParams(0.6, 0.95, 10, seed=7)
    plain = evaluate(s, problems, prompts, 3, params)
    watched = on_meta_default(lambda: evaluate(s, problems, prompts, 3, params))
    assert watched.completions == plain.completions and watched.lengths == plain.lengths
    greedy = SamplingParams(0.0, 1.0, 6, seed=0, min_new_tokens=2)  # greedy, stop tokens masked first
    assert on_meta_default(lambda: s.generate(prompts, 1, greedy)).completion_ids == \
        s.generate(prompts, 1, greedy).completion_ids


def test_sft_step_makes_every_tensor_on_the_model_device(model_dirs, tok):
    """Two SFT optimizer steps on r1lab's DeepSeek-V3 (its router-load counts and bias update too)."""
    from r1lab.stages.sft import Example, SFTConfig, train_sft

    g = torch.Generator().manual_seed(3)
    examples = [Example(torch.randint(5, 200, (3 + i,), generator=g).tolist(),
                        torch.randint(5, 200, (2 + i,), generator=g).tolist() + [tok.eos_token_id], f"x:{i}")
                for i in range(6)]
    cfg = SFTConfig(epochs=1, rows_per_step=2, micro_rows=1, warmup_steps=0, seq_len=32, lr=1e-2)
    runs = []
    for watched in (False, True):
        model, _ = load(model_dirs["deepseek"])
        fn = lambda: train_sft(model, tok, examples, cfg, log=lambda *_: None)  # noqa: E731
        history = on_meta_default(fn) if watched else fn()
        runs.append((model, [{k: v for k, v in r.items() if k != "seconds"} for r in history]))
    (plain, h0), (watched, h1) = runs
    assert len(h0) >= 2 and h1 == h0
    assert same_weights(watched, plain)


def test_reward_model_steps_make_every_tensor_on_the_model_device(model_dirs, tok):
    from r1lab.data.preferences import preference_pairs
    from r1lab.rl.reward_model import pair_accuracy, preference_reward
    from r1lab.runtime.loading import load
    from r1lab.stages.rm import RMConfig, train_rm

    pairs = preference_pairs("train")[:8]
    runs = []
    for watched in (False, True):
        torch.manual_seed(0)  # the new score head
        model, rm_tok = load(model_dirs["qwen"], "cpu", head="score")
        fn = lambda: (train_rm(model, rm_tok, pairs, RMConfig(epochs=1, batch_pairs=4, lr=1e-2), log=lambda *_: None),  # noqa: E731
                      pair_accuracy(model, rm_tok, pairs),
                      preference_reward(model.eval(), rm_tok)(["<answer>hi</answer>"],
                                                               [make_task("general").problems("train", 1, seed=0)[0]]))
        out = on_meta_default(fn) if watched else fn()
        runs.append((model, [{k: v for k, v in r.items() if k != "seconds"} for r in out[0]], out[1:]))
    (plain, h0, m0), (watched, h1, m1) = runs
    assert h1 == h0 and m1 == m0 and m0[1][0] > 0
    assert same_weights(watched, plain)


def test_bfloat16_on_the_cpu_loads_bf16_and_takes_a_grpo_step(model_dirs, tok, problems, monkeypatch):
    """dtype=bfloat16: bf16 weights; the sampler leaves the (float32-only) C kernels even when they
    are on, decodes with torch ops, and a GRPO step updates the weights, in bf16, device-clean."""
    monkeypatch.setenv("R1LAB_KERNELS", "1")
    model, _ = load(model_dirs["qwen"], "cpu", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert static_cache.dense_kernel(model, torch.zeros(1, 2, 8, 16, dtype=torch.bfloat16)) is None
    before = copy.deepcopy(model)
    g = GRPOConfig(prompts_per_step=2, group_size=3, beta=0.05, micro_batch=4,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8))
    model.train()
    record, gen = on_meta_default(lambda: grpo_run(model, reference_model(model), tok, problems, g))
    assert gen.num_tokens > 0 and record["zero_spread_frac"] < 1
    assert torch.isfinite(torch.tensor([record["loss"], record["grad_norm"]])).all()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not same_weights(model, before)


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    assert resolve_dtype("bfloat16") is torch.bfloat16
    for bad in ("gpu", "cuda:", "CPU", "cuda:0:1", ""):
        with pytest.raises(UserError, match="device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            resolve_device(bad)
    with pytest.raises(UserError, match="dtype: expected one of 'float32', 'bfloat16', got 'float16'"):
        resolve_dtype("float16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [["zero", "device=cuda"], ["sft", "data=x.jsonl", "device=cuda:1"],
                                  ["rm", "device=cuda"]])
def test_cuda_without_cuda_is_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch sees no CUDA device" in err and err.startswith("r1lab: error: ")
