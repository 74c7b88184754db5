"""Each rank's memory for GRPO's weights, gradients and Adam state: parallel=ddp against fsdp2, 2 ranks.

    flock /tmp/r1lab-cpu.lock .venv/bin/python bench/fsdp_memory.py [--steps 2] [--layers 8]

The model: lora_memory.py's dense `Qwen2ForCausalLM` (random weights from seed 0, hidden 768,
`--layers` layers; 8 layers: 51.0M parameters), float32. Each variant is a `torchrun
--nproc_per_node 2` launch (gloo, this CPU) of this script's worker, which builds what
stages/zero.py builds under that `parallel`, then runs `--steps` calls of `rl.grpo_step` on its
share (2 prompts x 8 samples, at most 48 new tokens) of a 4-prompt batch, β = 0.04 and μ = 1:
  ddp    every rank holds the whole policy, its gradients, AdamW's two moments and the frozen
         reference; the sampler decodes with the policy itself;
  fsdp2  the policy and the reference sharded by decoder layer (`distributed.shard_model`); the
         sampler decodes with a full copy of the weights that `load_weights` refreshes after
         each step, one tensor gathered at a time.

Counted per rank, from the tensors themselves (a DTensor: its local shard): the policy's weights,
its gradients (when the optimizer steps, from a step pre-hook), AdamW's state, the reference's
weights and the sampler's copy; and `ru_maxrss`, each rank's peak resident memory over the whole
launch (imports, loading, rollouts, activations, the collectives' buffers). Then the bytes per
parameter of each part, and what they say about the largest model whose training state fits one
80 GB GPU, or each of 8: weights, gradients and Adam state, the reference and the sampler's copy,
activations and the CUDA context aside (float32 as measured; bfloat16, r1lab's `dtype=bfloat16`,
keeps every one of these tensors in bfloat16, so half the bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

PROMPTS, GROUP, NEW_TOKENS = 4, 8, 48
GB = 80e9  # one GPU's memory for the table


def tensor_bytes(tensors) -> int:
    from r1lab.runtime.distributed import local

    return sum(local(t).numel() * local(t).element_size() for t in tensors)


def length_reward(completions, problems):
    return [len(c) / 200 for c in completions]


def worker(parallel: str, model_dir: str, steps: int) -> None:
    import torch

    from r1lab.engine.params import SamplingConfig
    from r1lab.engine.sampler import HFSampler
    from r1lab.rl.step import GRPOConfig, group_seeds, grpo_step
    from r1lab.runtime import distributed
    from r1lab.runtime.loading import load
    from r1lab.runtime.lora import reference_model
    from r1lab.tasks import apply_template, make_task

    world = distributed.init()
    rank = distributed.rank()
    model, tok = load(model_dir)
    g = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, beta=0.04, micro_tokens=512, lr=1e-5,
                   sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=NEW_TOKENS))
    ref = reference_model(model)
    sampler = HFSampler(model, tok)
    if parallel == "fsdp2":  # as stages/zero.py: reference and policy sharded, the sampler keeps the full copy
        model = distributed.shard_policy(model, ref, keep_full=True)
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, betas=(0.9, 0.99))
    grads = []
    opt.register_step_pre_hook(lambda *_: grads.append(tensor_bytes(p.grad for p in model.parameters()
                                                                    if p.grad is not None)))
    problems = make_task("arithmetic", digits=4, terms=2).problems("train", PROMPTS * steps, seed=1000,
                                                                   langs=("en", "zh", "ja", "ko"))
    own = distributed.shard(PROMPTS, rank, world)
    model.train()
    for step in range(steps):
        batch = [problems[step * PROMPTS + i] for i in own]
        grpo_step(model, ref, opt, sampler, batch, [apply_template(p.prompt) for p in batch], {"length": length_reward},
                  {"length": 1.0}, g, tok.pad_token_id, (), seed=group_seeds(0, step, own), step=step,
                  log=lambda *a: None)
        sampler.load_weights(model)
    params = sum(p.numel() for p in sampler.model.parameters())
    row = {"rank": rank, "params": params, "weights": tensor_bytes(model.parameters()), "grads": max(grads),
           "adam": tensor_bytes(t for s in opt.state.values() for t in s.values() if t.dim() > 0),
           "reference": tensor_bytes(ref.parameters()),
           "copy": tensor_bytes(sampler.model.parameters()) if sampler.model is not model else 0,
           "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    rows = distributed.concat_across({"rows": [row]})["rows"]
    if distributed.is_main():
        print(json.dumps(rows))
    distributed.shutdown()


def run(parallel: str, model_dir: str, steps: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                          __file__, "--worker", parallel, "--model", model_dir, "--steps", str(steps)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


PARTS = ("weights", "grads", "adam", "reference", "copy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--worker", choices=["ddp", "fsdp2"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import lora_memory; lora_memory.build_model(__import__('pathlib').Path({tmp!r}), {args.layers})"],
                       check=True)
        results = {parallel: run(parallel, tmp, args.steps) for parallel in ("ddp", "fsdp2")}
    n = results["ddp"][0]["params"]
    mb = lambda x: f"{x / 2**20:.1f}"  # noqa: E731
    print(f"GRPO, beta=0.04, {args.steps} steps of {PROMPTS} prompts x {GROUP} samples over 2 ranks (gloo, CPU); "
          f"dense Qwen2, {n / 1e6:.1f}M parameters, float32. MB per rank:")
    print("| parallel | rank | weights | gradients | Adam state | weights+grads+Adam | reference | sampler's copy | "
          "all counted | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for parallel, rows in results.items():
        for r in rows:
            trio = r["weights"] + r["grads"] + r["adam"]
            print(f"| {parallel} | {r['rank']} | {mb(r['weights'])} | {mb(r['grads'])} | {mb(r['adam'])} | {mb(trio)} | "
                  f"{mb(r['reference'])} | {mb(r['copy'])} | {mb(sum(r[p] for p in PARTS))} | {mb(r['peak_rss'])} |")
    ddp, fsdp = (max(results[p], key=lambda r: sum(r[k] for k in PARTS)) for p in ("ddp", "fsdp2"))
    trio = lambda r: r["weights"] + r["grads"] + r["adam"]  # noqa: E731
    print(f"fsdp2 / ddp, the larger rank: weights+grads+Adam {trio(fsdp) / trio(ddp):.2f}, all counted "
          f"{sum(fsdp[p] for p in PARTS) / sum(ddp[p] for p in PARTS):.2f}, peak RSS "
          f"{max(r['peak_rss'] for r in results['fsdp2']) / max(r['peak_rss'] for r in results['ddp']):.2f}")

    # bytes per parameter: what is sharded (divided by the ranks) and what each rank holds whole
    per = {p: {k: sum(r[k] for r in results[p]) / n for k in PARTS} for p in results}  # summed over the 2 ranks
    sharded = {"ddp": 0.0, "fsdp2": per["fsdp2"]["weights"] + per["fsdp2"]["grads"] + per["fsdp2"]["adam"]
               + per["fsdp2"]["reference"]}
    whole = {"ddp": sum(per["ddp"].values()) / 2, "fsdp2": per["fsdp2"]["copy"] / 2}
    print("\nBytes per parameter on each of N ranks (float32; bfloat16: half), beta > 0, and the largest model "
          "whose weights, gradients, Adam state, reference and rollout copy fit 80 GB per GPU:")
    print("| parallel | bytes per parameter per rank | N = 1 | N = 8 |")
    print("|---|---|---|---|")
    for p in ("ddp", "fsdp2"):
        formula = f"{whole[p]:.1f}" if not sharded[p] else f"{sharded[p]:.1f} / N + {whole[p]:.1f}"
        fits = [GB / (sharded[p] / k + whole[p]) / 1e9 for k in (1, 8)]
        print(f"| {p} | {formula} | {fits[0]:.1f}B (bf16 {2 * fits[0]:.1f}B) | {fits[1]:.1f}B (bf16 {2 * fits[1]:.1f}B) |")


if __name__ == "__main__":
    main()
