"""Rollouts through vLLM on a GPU, colocated with the trainer, behind the same `Sampler` interface.

    r1lab zero recipes/qwen2.5-0.5b-gsm8k-zero.yaml rollout.backend=vllm [rollout.gpu_memory_utilization=0.3]

`rollout.backend` picks the engine that samples the GRPO rollouts and the evaluations:
- `hf` (default): `sampler.HFSampler`, which decodes with the trainer's own model; the sampled
  tokens' log-probs are the trainer's, so the update is exactly on-policy;
- `vllm`: `VLLMSampler`, a vLLM `LLM` in the trainer's process and on the same GPU. It loads its
  own copy of the weights from the model directory, is put to sleep after each generation
  (`enable_sleep_mode`: its KV cache is freed and its weights offloaded while the trainer runs)
  and gets the trainer's weights pushed into it after every optimizer step (`load_weights`).

The weight push follows verl's colocated sharding manager and TRL's GRPOTrainer in colocate
mode (`_move_model_to_vllm`): wake the engine, call the engine model's own `load_weights` with
(name, tensor) pairs of the trainer's state dict (the model class maps Hugging Face names onto
its fused q/k/v and gate/up parameters) and reset the prefix cache; the next generation puts it
back to sleep. The engine model sits at
`llm.llm_engine.model_executor.driver_worker.worker.model_runner.model` with the V1 engine run in
process (VLLM_ENABLE_V1_MULTIPROCESSING=0, which this module sets, as TRL does) and at
`...driver_worker.model_runner.model` on the V0 engine; `engine_model` tries both.

vLLM samples with its own kernels (bf16 weights, other reduction orders), so its probability of
a sampled token differs a little from the trainer's: the rollout is slightly off-policy even at
μ = 1. Each `Generation` therefore carries vLLM's log-prob of every sampled token
(`SamplingParams.logprobs=0`; `logprobs_mode="raw_logprobs"`, the untempered model's, which are
what r1lab's loss computes), and rl.update_policy multiplies each token's policy-gradient term by
min(π_old / π_vllm, `grpo.tis_cap`) (grpo.truncated_is_weights; TRL's
`vllm_importance_sampling_correction` with `vllm_importance_sampling_cap`, verl's TIS).

What is and is not verified: tests/engine/test_rollout_contract.py runs one behavioural contract
(grouping, stop tokens, length limits, greedy = a reference decode, seeds, weight pushes) on every
backend, but the vLLM case is skipped without vllm and a CUDA GPU, and this project has neither:
the vLLM code path has never run here. The parameter mapping (`vllm_sampling_kwargs`) and the
importance weights are unit-tested without vLLM. Importing r1lab never imports vllm; choosing the
backend without it is one line on stderr and exit status 2 (`check_backend`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import Generation, HFSampler, model_stop_ids
from r1lab.errors import UserError
from r1lab.runtime import distributed

BACKENDS = ("hf", "vllm")


@dataclass
class RolloutConfig:
    backend: str = "hf"  # hf: the trainer's own model (on-policy) | vllm: a colocated vLLM engine (GPU)
    gpu_memory_utilization: float = 0.3  # vllm: share of the GPU for its weights + KV cache; the trainer has the rest
    dtype: str = "bfloat16"  # vllm: the engine's weights (the trainer's are cast when pushed)
    max_model_len: int = 0  # vllm: prompt + completion limit (0: the model's own)
    sleep: bool = True  # vllm: free the KV cache and offload the weights between generations

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"backend: expected one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise UserError(f"gpu_memory_utilization: expected a fraction in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len < 0:
            raise UserError(f"max_model_len: expected >= 0 (0: the model's own), got {self.max_model_len}")


def check_backend(cfg: RolloutConfig) -> None:
    """Refuse `backend=vllm` in one line when vllm or a CUDA GPU is missing (before any real work)."""
    if cfg.backend != "vllm":
        return
    import importlib.util

    import torch

    missing = [what for what, ok in (("the vllm package (pip install vllm)", importlib.util.find_spec("vllm")),
                                     ("a CUDA GPU", torch.cuda.is_available())) if not ok]
    if missing:
        raise UserError(f"rollout.backend: vllm needs {' and '.join(missing)}; use rollout.backend=hf")


def make_sampler(cfg: RolloutConfig, model, tokenizer, model_path: str | Path, log=print):
    """The rollout sampler `cfg.backend` names, for `model` (loaded from `model_path`)."""
    if cfg.backend == "hf":
        return HFSampler(model, tokenizer)
    check_backend(cfg)
    return VLLMSampler(model_path, model, tokenizer, cfg, log=log)


def vllm_sampling_kwargs(params: SamplingParams, n: int, stop_ids: set[int] | tuple[int, ...], prompt: int) -> dict:
    """r1lab's `SamplingParams` for prompt number `prompt` as keyword arguments of `vllm.SamplingParams`.

    The same stop set as HFSampler (the model's EOS ids and `params.stop_token_ids`), the sampled
    token's own log-prob (`logprobs=0`), and a seed per prompt: `params.seed[prompt]` when it is
    a tuple of per-prompt seeds, else derived from (seed, prompt), so a rollout is reproducible and
    two prompts never share a random stream."""
    seed = params.seed[prompt] if isinstance(params.seed, tuple) else params.seed * 1_000_003 + prompt
    return {
        "n": n,
        "temperature": params.temperature,  # 0: greedy, as in HFSampler
        "top_p": params.top_p,
        "top_k": -1,
        "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_new_tokens,
        "stop_token_ids": sorted({*stop_ids, *params.stop_token_ids}),
        "ignore_eos": False,
        "seed": seed % 2**63,
        "logprobs": 0,  # the sampled token's log-prob only
        "skip_special_tokens": True,
    }


def engine_model(llm):
    """The `torch.nn.Module` inside a colocated vLLM engine (V1 in process, then V0)."""
    engine = llm.llm_engine
    executor = getattr(engine, "model_executor", None) or engine.engine_core.engine_core.model_executor
    worker = executor.driver_worker
    worker = getattr(worker, "worker", worker)  # V1 wraps the GPU worker
    return worker.model_runner.model


class VLLMSampler:
    """`Sampler` over a vLLM engine colocated with the trainer (see the module docstring)."""

    def __init__(self, model_path: str | Path, model, tokenizer, cfg: RolloutConfig, log=print):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: weights reachable
        from vllm import LLM  # import-guarded: only this backend needs vllm

        self.tokenizer, self.cfg = tokenizer, cfg
        self.stop_ids = model_stop_ids(model, tokenizer)
        self.add_special_tokens = True
        extra = {"max_model_len": cfg.max_model_len} if cfg.max_model_len else {}
        self.llm = LLM(model=str(model_path), tokenizer=str(model_path), dtype=cfg.dtype,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, enable_sleep_mode=cfg.sleep,
                       enable_prefix_caching=True, logprobs_mode="raw_logprobs", seed=0, **extra)
        self.asleep = False
        self._sleep()
        log(f"rollout: vLLM engine on {model_path} ({cfg.dtype}, {cfg.gpu_memory_utilization:.0%} of the GPU)")

    def _sleep(self) -> None:
        if self.cfg.sleep and not self.asleep:
            self.llm.sleep(level=1)  # KV cache freed, weights offloaded to CPU: the GPU is the trainer's
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def load_weights(self, model) -> None:
        """Push the trainer's weights into the engine (after each optimizer step); it stays awake
        for the next generation, which puts it back to sleep."""
        self._wake()
        # one tensor at a time; an FSDP2 model's shards gathered as they go (collective: every rank pushes)
        engine_model(self.llm).load_weights(weights=((name, t.detach()) for name, t in distributed.full_tensors(model)))
        self.llm.reset_prefix_cache()  # cached prompt KV was computed by the old weights

    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> Generation:
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        t0 = time.time()
        prompt_ids = self.tokenizer(prompts, add_special_tokens=self.add_special_tokens)["input_ids"]
        self._wake()
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids],
            [VLLMParams(**vllm_sampling_kwargs(params, n, self.stop_ids, i)) for i in range(len(prompt_ids))],
            use_tqdm=False)
        self._sleep()
        completions, truncated, logprobs = [], [], []
        for out in outputs:  # in prompt order; each holds its n samples
            for sample in sorted(out.outputs, key=lambda s: s.index):
                ids = list(sample.token_ids)
                completions.append(ids)
                truncated.append(sample.finish_reason == "length")
                logprobs.append([float(step[t].logprob) for step, t in zip(sample.logprobs, ids)])
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return Generation(prompt_ids, completions, texts, truncated, n, time.time() - t0, logprobs)
