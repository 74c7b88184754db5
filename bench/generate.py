"""r1lab's sampler against transformers' `model.generate`: same model, same batch, same lengths.

    flock /tmp/r1lab-cpu.lock .venv/bin/python bench/generate.py [--repeat 3] [--only NAME] [--trained DIR]

What is compared. For each workload, the same model object, in float32, eval mode, on torch's
default thread count (2 here; `--threads N` sets it for both), is asked for 8 prompts x 16
samples in two ways:
  r1lab     `HFSampler(model, tok).generate(prompts, 16, SamplingParams(...))`, the call RL
            rollouts and evaluation make (tokenise, prefill each prompt once, decode, decode
            the texts);
  generate  `model.generate(**tok(prompts, padding=True), num_return_sequences=16,
            do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=...,
            eos_token_id=[EOS, </answer>], pad_token_id=PAD)` with the tokeniser call and
            `batch_decode` inside the timed region too (its own defaults otherwise: a
            DynamicCache, all 128 rows prefilled, finished rows kept until the longest ends).
The workloads:
  deepseek  r1lab's pretrained DeepSeek-V3 base (MLA + DeepSeekMoE, 1.81M parameters) from
            `pretrain(PretrainConfig())` (the cached base directory; on a fresh clone ~15
            minutes of pretraining first) on the R1-Zero rollout: 8 arithmetic problems (train
            split, seed 1000, en/zh/ja/ko) in the R1-Zero template, 16 samples each, at most
            200 new tokens, temperature 1, stop at EOS or `</answer>`. The two draw different
            samples (different random streams), so their lengths differ; tokens/s is the fair
            number, and the mean length is printed to show how close the two runs are.
  qwen      a dense random-weight `Qwen2ForCausalLM` (hidden 128, 4 layers, 4 heads, 2 KV heads,
            intermediate 384, r1lab's tokenizer: 0.85M parameters, seed 0), same prompts, with
            exactly 200 new tokens per sample in both (`min_new_tokens` = `max_new_tokens`, so no
            stop token is sampled): every row runs to the end, the batch never shrinks, and both
            do identical work.
  trained   only with `--trained DIR`: an R1-Zero checkpoint of that base (e.g. the last one of
            `r1lab zero`), on the deepseek workload. It answers with ~160-token reasoning, so most
            of the 200 decode steps run at large batch and long cache: the late-RL rollout.
tokens/s = generated tokens (each row up to and including its stop token; `generate`'s padding
after a stop is not counted) / wall seconds of the call; median of `--repeat` calls (seeds 1, 2,
3) after one warm-up call (seed 0, timed separately as "first call": it includes any one-off
cost such as compilation). The timed calls alternate, generate then r1lab, seed by seed: this
VM's speed drifts by tens of percent over minutes (CPU steal), and alternating puts both sides
under the same drift. The last line is `speedup X.XX`: r1lab's tokens/s over generate's,
the smallest of the workloads' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.engine.params import SamplingParams
from r1lab.engine.sampler import HFSampler
from r1lab.model.base import PretrainConfig, pretrain
from r1lab.runtime.loading import load
from r1lab.tasks import apply_template, make_task

PROMPTS, SAMPLES = 8, 16


def hf_generate(model, tok, prompts: list[str], params: SamplingParams) -> int:
    """`model.generate` on the workload; returns the number of generated tokens (stop included)."""
    torch.manual_seed(params.seed)
    enc = tok(prompts, return_tensors="pt", padding=True)
    stops = [tok.eos_token_id, *params.stop_token_ids]
    out = model.generate(**enc, do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0,
                         max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens,
                         num_return_sequences=SAMPLES, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    new = out[:, enc["input_ids"].shape[1]:]  # (P*n, L)
    tok.batch_decode(new, skip_special_tokens=True)
    is_stop = torch.isin(new, torch.tensor(stops))
    first_stop = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, new.shape[1])
    return int(first_stop.sum())


def r1lab_generate(sampler: HFSampler, prompts: list[str], params: SamplingParams) -> int:
    return sampler.generate(prompts, SAMPLES, params).num_tokens


def measure(runs: dict, prompts, params: SamplingParams, repeat: int) -> dict[str, dict]:
    """Each run's first (warm-up) call, then `repeat` rounds with seeds 1..repeat in which the runs
    take turns (so a slow spell of this shared VM falls on both): median tokens/s per run."""
    first, rates, lengths = {}, {name: [] for name in runs}, {name: [] for name in runs}
    for name, run in runs.items():
        t0 = time.perf_counter()
        run(prompts, params)
        first[name] = time.perf_counter() - t0
    for seed in range(1, repeat + 1):
        for name, run in runs.items():
            t0 = time.perf_counter()
            tokens = run(prompts, SamplingParams(**{**vars(params), "seed": seed}))
            rates[name].append(tokens / (time.perf_counter() - t0))
            lengths[name].append(tokens / (PROMPTS * SAMPLES))
    return {name: {"tok_s": statistics.median(rates[name]), "first": first[name], "len": statistics.mean(lengths[name])}
            for name in runs}


def qwen_like(tok) -> Qwen2ForCausalLM:
    config = Qwen2Config(vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=384, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    ap.add_argument("--only", choices=["deepseek", "qwen", "trained"])
    ap.add_argument("--trained", help="an R1-Zero checkpoint directory: also measure the trained-policy workload")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    deepseek, tok = load(pretrain(PretrainConfig(), log=lambda *a: None))
    deepseek.eval()
    problems = make_task("arithmetic", digits=4, terms=2).problems("train", PROMPTS, seed=1000,
                                                                   langs=("en", "zh", "ja", "ko"))
    prompts = [apply_template(p.prompt) for p in problems]
    answer_end = tok.convert_tokens_to_ids("</answer>")
    m = args.max_new_tokens
    workloads = {
        "deepseek": (deepseek, SamplingParams(1.0, 1.0, m, (answer_end,), seed=0)),
        "qwen": (qwen_like(tok), SamplingParams(1.0, 1.0, m, (answer_end,), seed=0, min_new_tokens=m)),
    }
    if args.trained:
        workloads["trained"] = (load(args.trained)[0].eval(), workloads["deepseek"][1])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {PROMPTS} prompts x {SAMPLES} samples, "
          f"max {m} new tokens; tok/s: median of {args.repeat} calls after a warm-up call")
    print(f"{'workload':<9} {'params':>6} | {'generate tok/s':>14} {'len':>6} {'first':>6} | "
          f"{'r1lab tok/s':>11} {'len':>6} {'first':>6} | {'speedup':>7}")
    ratios = []
    for name, (model, params) in workloads.items():
        if args.only and name != args.only:
            continue
        sampler = HFSampler(model, tok)
        runs = {"generate": lambda p, s, model=model: hf_generate(model, tok, p, s),
                "r1lab": lambda p, s, sampler=sampler: r1lab_generate(sampler, p, s)}
        result = measure(runs, prompts, params, args.repeat)
        hf, ours = result["generate"], result["r1lab"]
        ratios.append(ours["tok_s"] / hf["tok_s"])
        size = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<9} {size:>5.2f}M | {hf['tok_s']:>14.0f} {hf['len']:>6.1f} {hf['first']:>5.1f}s | "
              f"{ours['tok_s']:>11.0f} {ours['len']:>6.1f} {ours['first']:>5.1f}s | {ratios[-1]:>6.2f}x")
    print(f"speedup {min(ratios):.2f}")


if __name__ == "__main__":
    main()
