"""Data-parallel training over processes: `torchrun` or `accelerate launch` runs N copies of a trainer.

    torchrun --nproc_per_node 2 -m r1lab zero recipes/zero.yaml        # 2 processes, one machine
    accelerate launch --num_processes 2 -m r1lab sft data=FILE.jsonl    # the same through accelerate

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK; `init()` joins the process group from them
(gloo on CPU, nccl on CUDA) and is a no-op when WORLD_SIZE is unset or 1, so every trainer runs
unchanged in one process. What the trainers do with it, and why the result equals one process's:

- Work is split by the global batch, never by the rank's own choices: every rank draws the same
  global batch from (seed, step) and takes a contiguous `shard` of it. GRPO shards prompts, so a
  group (the G samples of one prompt, normalised together) always stays on one rank; its
  samples are drawn from a seed that is a function of (seed, step, global prompt index).
- Losses are normalised by the *global* batch (`sum_across` the counts first), and gradients are
  summed across ranks (`sum_gradients`), so the gradient is the one a single process computes
  for the whole batch, up to float summation order: tests/runtime/test_distributed.py checks 2 ranks
  against 1 on losses and weights.
- Metrics that are sums or normalised by global counts are summed across ranks; only rank 0
  (`is_main`) writes metrics, checkpoints and reports; every rank loads the same checkpoint on
  --resume.

`parallel` picks how weights live on the ranks:
- `ddp` (default): every rank holds the whole model and the gradients are all-reduced after the
  micro-batch loop. This is DistributedDataParallel's arithmetic, done by hand rather than by
  the `DistributedDataParallel` wrapper, because r1lab's loops are not one forward + one backward:
  GRPO backpropagates completions into a detached prompt cache and then the prompt pass once
  (rl.PromptPass), and the sampler reads the raw weights. One all-reduce per optimizer step is
  also what DDP's `no_sync` accumulation does.
- `fsdp2`: parameters, gradients and optimizer state sharded across ranks with
  `torch.distributed.fsdp.fully_shard`, one decoder layer at a time, for a model whose training
  state does not fit one device. Every rank must then run the same number of forwards and
  backwards (each one all-gathers a layer's weights, each backward reduce-scatters its
  gradients), so a rank with fewer rows runs empty-loss forwards on a pad token. GRPO's sampler
  decodes outside the model's forward, so under FSDP2 it decodes with a full copy of the weights
  on every rank, refreshed after each optimizer step by `copy_weights` (one tensor gathered at a
  time; vLLM gets the same stream). Checkpoints: the gathered weights as a Hugging Face model
  (rank 0), each rank's optimizer shard as its own file (runtime/checkpoint.py).
"""

from __future__ import annotations

import copy
import os
from typing import Callable, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from r1lab.errors import UserError

PARALLEL = ("ddp", "fsdp2")
T = TypeVar("T")


def init() -> int:
    """Join the launcher's process group (once); returns the world size (1: not distributed)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world_size()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def comm_device() -> torch.device:
    """Where collectives' tensors must be: the current CUDA device under nccl, else the CPU. The
    helpers below move their inputs there and their results back, so a model on either device works."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes files (metrics, checkpoints, reports): rank 0, or no group."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(n: int, rank: int, world: int) -> range:
    """The contiguous slice of n items that `rank` of `world` owns; sizes differ by at most one,
    and the slices of ranks 0..world-1 cover 0..n-1 in order."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def sum_across(values: list[float]) -> list[float]:
    """The element-wise sum of `values` over all ranks (float64; the identity in one process)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=comm_device())
    dist.all_reduce(t)
    return t.tolist()


def max_across(value: float) -> float:
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum each trainable parameter's gradient over ranks, in one flat all-reduce. The losses are
    normalised by the global batch, so the sum (not the mean) is the single-process gradient. A
    parameter that got a gradient on some rank (e.g. an expert routed to only there) gets the
    sum, with zeros from the others; one that got none anywhere keeps None, as in one process,
    so that the optimizer skips it there too."""
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=comm_device())
    dist.all_reduce(has)
    params = [p for p, h in zip(params, has.tolist()) if h]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params]).to(comm_device())
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def sum_tensors_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over ranks, in place (e.g. the expert-load counts behind the router bias,
    which must see the whole batch's routing to stay the same on every rank)."""
    if world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors]).to(comm_device())
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def concat_across(lists: dict[str, list]) -> dict[str, list]:
    """Each key's list concatenated over ranks in rank order: with contiguous shards, the whole
    batch's values in the global order (the identity in one process)."""
    if world_size() == 1:
        return lists
    parts: list[dict[str, list]] = [{} for _ in range(world_size())]
    dist.all_gather_object(parts, lists)
    return {k: [x for part in parts for x in part[k]] for k in lists}


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (e.g. a run directory named after rank 0's clock)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_first(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0, then on the others: for work with a cache (the pretrained base) that
    rank 0 fills and the others then only read."""
    if world_size() == 1:
        return fn()
    out = fn() if is_main() else None
    barrier()
    return out if is_main() else fn()


def check_parallel(parallel: str) -> None:
    if parallel not in PARALLEL:
        raise UserError(f"parallel: expected one of {', '.join(PARALLEL)}, got '{parallel}'")


def shard_model(model: torch.nn.Module) -> None:
    """FSDP2: each decoder layer, then the rest (embeddings, norm, head), sharded across ranks.
    FSDP2 averages the gradients it reduce-scatters over ranks, where r1lab's losses are already
    normalised by the global batch: the trainer multiplies its loss by the world size (a divide
    factor of 1 would say it directly, but it needs a reduce op that gloo lacks). A parameter
    some rank did not use (an expert no token of its rows was routed to) is reduce-scattered as
    zeros, so that every rank sends the same tensors; `drop_unused_grads` then tells apart the
    ones no rank used. A frozen model (GRPO's reference) is resharded after every forward, its
    embeddings and head too: with no backward to follow, FSDP2 would keep the root's unsharded."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError(f"parallel=fsdp2: {type(model).__name__} has no model.layers to shard; use parallel=ddp")
    for layer in layers:
        fully_shard(layer)
    frozen = not any(p.requires_grad for p in model.parameters())
    fully_shard(model, reshard_after_forward=True if frozen else None)
    model.set_reduce_scatter_unused_params(True)


def shard_policy(model: torch.nn.Module, ref: torch.nn.Module | None, keep_full: bool) -> torch.nn.Module:
    """GRPO under FSDP2: `ref` (if any) sharded in place, and the policy to train, sharded: a deep
    copy of `model` when `keep_full` (a sampler that decodes with `model` keeps it whole, and gets
    the trained weights through its `load_weights`), else `model` itself."""
    if ref is not None:
        shard_model(ref)
    policy = copy.deepcopy(model) if keep_full else model
    shard_model(policy)
    return policy


def is_sharded(model) -> bool:
    """Whether `model` is an FSDP2 module (its parameters are DTensor shards)."""
    return isinstance(model, FSDPModule)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor; a plain tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def drop_unused_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """After an FSDP2 backward: set back to None the gradient of every parameter no rank used (all
    zeros on every shard), as one process leaves it, so that AdamW leaves it alone there too (no
    decay, no moment update). A used parameter whose gradient sums to exactly zero everywhere is
    taken for unused as well; with float gradients that needs every contribution to be zero."""
    params = [p for p in params if p.requires_grad]  # the same list on every rank
    used = torch.tensor([p.grad is not None and bool(local(p.grad).any()) for p in params], dtype=torch.int32,
                        device=comm_device())
    dist.all_reduce(used)
    for p, u in zip(params, used.tolist()):
        if not u:
            p.grad = None


def shard_like(t: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """This rank's part `t` of a tensor laid out as `param` (a DTensor shard), as such a DTensor."""
    if not isinstance(param, DTensor):
        return t
    return DTensor.from_local(t.to(param.device), param.device_mesh, param.placements, run_check=False,
                              shape=param.shape, stride=param.stride())


def load_full_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Full (unsharded) weights, on every rank, into an FSDP2 model: each rank keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def full_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for each entry of `model`'s state dict, an FSDP2 model's shards all-gathered
    one tensor at a time (collective: every rank iterates to the end, in the same order), so that
    at most one gathered tensor exists at once beyond what the consumer keeps."""
    for name, t in model.state_dict().items():
        yield name, t.full_tensor() if isinstance(t, DTensor) else t


@torch.no_grad()
def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """`source`'s weights (FSDP2-sharded or not) into `target`, an unsharded model of the same
    architecture, in place (collective when `source` is sharded)."""
    dest = target.state_dict()
    for name, t in full_tensors(source):
        dest[name].copy_(t)


def full_state_dict(model: torch.nn.Module) -> dict:
    """The unsharded state dict of an FSDP2 model on rank 0 (empty on the others); collective.
    A tied weight (the LM head sharing the embeddings) appears once, under its first name, as in
    the state dict `save_pretrained` writes for an unsharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    return {k: v for k, v in state.items() if k in names}
