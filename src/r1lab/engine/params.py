"""Sampling settings: declared once as a config section, turned into one generation's parameters.

    grpo.sampling.temperature=1.0  eval.sampling.max_new_tokens=300      # on the command line
    params = cfg.sampling.params(stop_ids, seed=...)                     # in a stage

`SamplingConfig` is the `sampling` section of every config that generates (GRPO rollouts, the
R1-Zero stage's evaluations, rejection sampling, the pipeline's and distillation's reports,
`r1lab eval`), each with its own defaults: the paper's evaluation protocol (T = 0.6, top-p 0.95)
where a model is measured, T = 1 for RL rollouts and for traces. `SamplingParams` is what
`Sampler.generate` takes. Neither imports torch, so a config can be read without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1lab.errors import UserError


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()  # besides the tokenizer's EOS
    seed: int | tuple[int, ...] = 0  # a tuple: one seed per prompt (sampler.PromptDraws)
    min_new_tokens: int = 0  # stop tokens cannot be sampled before this many new tokens (as in HF)
    logprobs: bool = False  # also return each drawn token's log-prob under the distribution it was drawn from


@dataclass
class SamplingConfig:
    temperature: float = 0.6  # softmax temperature, >= 0; 0: greedy (R1 §5 evaluates at 0.6)
    top_p: float = 0.95  # nucleus sampling; 1: off
    max_new_tokens: int = 200  # a completion stops here if no stop token came first

    def validate(self) -> None:
        if not self.temperature >= 0:
            raise UserError(f"temperature: expected >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p: expected 0 < top_p <= 1, got {self.top_p}")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")

    def params(self, stop_token_ids: tuple[int, ...] = (), seed: int | tuple[int, ...] = 0) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_new_tokens, tuple(stop_token_ids), seed)


def sampling(temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 200):
    """A dataclass field holding a `SamplingConfig` with these defaults."""
    return field(default_factory=lambda: SamplingConfig(temperature, top_p, max_new_tokens))
