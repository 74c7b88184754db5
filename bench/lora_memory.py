"""Peak memory of GRPO with β > 0: full fine-tune vs LoRA, same model, same steps, this CPU.

    flock /tmp/r1lab-cpu.lock .venv/bin/python bench/lora_memory.py [--steps 2] [--layers 8]

The model: a dense `Qwen2ForCausalLM` with random weights from seed 0 (hidden 768, `--layers`
layers, 12 heads, 4 KV heads, intermediate 2048; 8 layers: 51.0M parameters), with a tokenizer
trained on the arithmetic task's prompts, saved to a temporary directory; both variants load it
with `r1lab.runtime.loading.load` (float32).

The workload, identical for both: `--steps` calls of `rl.grpo_step` (P = 4 prompts of r1lab's
arithmetic task under the R1-Zero template x G = 8 samples, at most 48 new tokens,
temperature 1, micro-batches of at most 512 padded completion tokens) with β = 0.04 and a length reward (so every group has reward spread and every
sample takes part in the update; the base never earns the task's own rewards). Exactly what
`r1lab zero` builds for each:
  full  every weight trains; AdamW over all of them; the reference is a frozen deep copy of the
        base (`lora.reference_model`), i.e. what stages/zero.py does with lora.r = 0;
  lora  rank-16 adapters (alpha 32) on q/k/v/o and the MLP projections (`lora.DEFAULT_TARGETS`);
        AdamW over the adapters; the reference is the same model with adapters off
        (`lora.DisabledAdapters`), no copy; rollouts through the model's own forward.

Each variant runs in its own subprocess (`--worker full|lora`) and reports its `ru_maxrss`
(peak resident set size over the process's life: imports, model load and the steps), its RSS
just after loading the model (VmRSS: imports plus whatever of the weights is resident by then;
the safetensors file is memory-mapped, so not necessarily all of it), and its peak after one
rollout alone (the reference copy of "full" already made, no update yet), to tell generation's
peak from the update's. The update's activations are the same for both (same rows, same
micro-batches); what LoRA saves is the weights' gradients, AdamW's two moments and the
reference copy, about 4 x 4 bytes per parameter. The parent imports no torch, so nothing of its own is counted in the children.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, GROUP, NEW_TOKENS = 4, 8, 48


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_model(out: Path, layers: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from r1lab.model.tokenizer import train_tokenizer
    from r1lab.tasks import apply_template, make_task

    task = make_task("arithmetic", digits=4, terms=2)
    texts = [apply_template(p.prompt) + " <think> 1+2=3 </think> <answer>3</answer>"
             for p in task.problems("train", 200, seed=0, langs=("en", "zh", "ja", "ko"))]
    tok = train_tokenizer(texts, vocab_size=512)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                         num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=1024,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)


def length_reward(completions, problems):
    return [len(c) / 200 for c in completions]


def worker(variant: str, model_dir: str, steps: int, threads: int) -> dict:
    import torch

    from r1lab.engine.params import SamplingConfig, SamplingParams
    from r1lab.engine.sampler import HFSampler
    from r1lab.rl.step import GRPOConfig, grpo_step
    from r1lab.runtime.loading import load
    from r1lab.runtime.lora import LoRAConfig, add_adapters, reference_model
    from r1lab.tasks import apply_template, make_task

    if threads:
        torch.set_num_threads(threads)
    model, tok = load(model_dir)
    loaded = rss_mb()
    if variant == "lora":
        model = add_adapters(model, LoRAConfig(r=16, alpha=32))
    g = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, beta=0.04,
                   micro_tokens=512, lr=1e-4 if variant == "lora" else 1e-5,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=NEW_TOKENS))
    ref = reference_model(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=g.lr, betas=(0.9, 0.99))
    sampler = HFSampler(model, tok)
    problems = make_task("arithmetic", digits=4, terms=2).problems("train", PROMPTS * steps, seed=1000,
                                                                   langs=("en", "zh", "ja", "ko"))
    prompts = [apply_template(p.prompt) for p in problems[:PROMPTS]]
    sampler.generate(prompts, GROUP, SamplingParams(g.sampling.temperature, g.sampling.top_p, g.sampling.max_new_tokens, seed=99))
    rollout_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.train()
    t0, kl = time.time(), []
    for step in range(steps):
        batch = problems[step * PROMPTS : (step + 1) * PROMPTS]
        record, _ = grpo_step(model, ref, opt, sampler, batch, [apply_template(p.prompt) for p in batch],
                              {"length": length_reward}, {"length": 1.0}, g, tok.pad_token_id, (), seed=step, step=step,
                              log=lambda *a: None)
        kl.append(record["kl"])
    return {"variant": variant, "params": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "loaded_mb": loaded, "rollout_peak_mb": rollout_peak, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.time() - t0, "kl_last": kl[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    ap.add_argument("--worker", choices=["full", "lora"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.steps, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import lora_memory; lora_memory.build_model(__import__('pathlib').Path({tmp!r}), {args.layers})"],
                       check=True)
        rows = []
        for variant in ("full", "lora"):
            out = subprocess.run([sys.executable, __file__, "--worker", variant, "--model", tmp,
                                  "--steps", str(args.steps), "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"GRPO, beta=0.04, {args.steps} steps of {PROMPTS} prompts x {GROUP} samples, <= {NEW_TOKENS} new tokens; "
          f"dense Qwen2, {rows[0]['params'] / 1e6:.1f}M parameters, float32")
    print("| variant | trainable params | RSS after load (MB) | peak after a rollout (MB) | peak RSS (MB) | "
          "peak - load (MB) | seconds | KL at last step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['trainable'] / 1e6:.2f}M | {r['loaded_mb']:.0f} | {r['rollout_peak_mb']:.0f} | "
              f"{r['peak_mb']:.0f} | "
              f"{r['peak_mb'] - r['loaded_mb']:.0f} | {r['seconds']:.1f} | {r['kl_last']:.2e} |")
    full, lora = rows
    print(f"peak RSS lora / full: {lora['peak_mb'] / full['peak_mb']:.2f}; training overhead (peak - load) lora / full: "
          f"{(lora['peak_mb'] - lora['loaded_mb']) / (full['peak_mb'] - full['loaded_mb']):.2f}")


if __name__ == "__main__":
    main()
