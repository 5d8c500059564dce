"""Several processes, one model: the process group that `torchrun` sets up, and what training shares over it.

`torchrun --nproc_per_node N` starts N copies of a command with RANK, LOCAL_RANK and WORLD_SIZE in their
environment. `session()` joins them into one process group when WORLD_SIZE > 1 (nccl when CUDA is there,
else gloo) and gives a `World`; a single process gets a World of size 1 whose methods are identities, so the
same code serves both. Data parallelism is done by hand, not by DistributedDataParallel: a training step
calls the model several times (sampler writes, one forward per query kind), while DDP expects one forward
per backward. Every rank takes a contiguous share of the same global batch (`shard`), gathers the others'
outputs as constants (`gather_rows`) so the loss is the global batch's, and sums the gradients
(`reduce_grads`) before the optimiser step, which is then the same on every rank.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

TIMEOUT = timedelta(hours=2)  # rank 0 validates and saves while the others wait at a barrier


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process's rank in [0, size)
    size: int = 1  # processes in the group (1: no process group, every method an identity)
    local_rank: int = 0  # rank on this machine: the CUDA device it drives
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where training runs

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, logs and indexes; the others compute."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n rows (sizes differ by at most one; a share may be empty)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    # ------------------------------------------------------------------ collectives (identities alone)
    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's picklable `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max_int(self, value: int) -> int:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def sum_floats(self, values: list[float]) -> list[float]:
        if self.size == 1 or not values:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (as DistributedDataParallel's constructor does)."""
        if self.size == 1:
            return
        with torch.no_grad():
            for t in module.state_dict().values():
                buf = t.to(self.device)  # nccl moves CUDA tensors only
                dist.broadcast(buf, src=0)
                t.copy_(buf)

    def reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every trainable gradient over the ranks in one flat all-reduce. A rank without a gradient for a
        parameter adds zeros; a parameter no rank touched keeps `grad = None`, as one process would (AdamW
        then leaves it alone)."""
        if self.size == 1 or not params:
            return
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
            + [torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)]
        )
        dist.all_reduce(flat)
        grads, flags = flat[: -len(params)], flat[-len(params) :].tolist()
        offset = 0
        for p, flag in zip(params, flags):
            n = p.numel()
            p.grad = grads[offset : offset + n].view_as(p).to(p.dtype) if flag > 0 else None
            offset += n

    def gather_rows(self, local: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """Tensors whose first axis is rows, concatenated over the ranks in rank order (rows of one step are
        split contiguously, so this is the global batch's order). This rank's rows stay in its autograd graph;
        the others' arrive as constants, so a loss computed identically on every rank back-propagates into
        each rank's own rows only, and `reduce_grads` sums those into the global batch's gradient.
        `local` is None on a rank without rows; the result is None when no rank has any."""
        if self.size == 1:
            return local
        sent = None if local is None else {k: v.detach().cpu() for k, v in local.items()}
        parts = self.gather(sent)
        present = [(r, p) for r, p in enumerate(parts) if p is not None]
        if not present:
            return None
        keys = present[0][1].keys()
        return {
            k: torch.cat([local[k] if r == self.rank else p[k].to(self.device) for r, p in present])
            for k in keys
        }


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """The device for "auto" (the local rank's GPU when CUDA is there, else the CPU), "cpu" or "cuda"."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device != "cpu":
        raise ValueError(f"Unknown device {device!r}; use auto, cpu or cuda.")
    return torch.device("cpu")


def current() -> World:
    """The World of an already initialised process group (a World of size 1 without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", 0))
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    return World(dist.get_rank(), dist.get_world_size(), local, device)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[World]:
    """Join the process group torchrun describes (WORLD_SIZE > 1 in the environment), leave it at the end.

    The backend follows the device: nccl for CUDA, gloo for the CPU. Without torchrun (or WORLD_SIZE=1) no
    process group is made and the World has size 1.
    """
    size = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local)
    if size == 1 or (dist.is_available() and dist.is_initialized()):
        yield current() if size > 1 else World(device=dev)
        return
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local, dev)
    finally:
        dist.destroy_process_group()
