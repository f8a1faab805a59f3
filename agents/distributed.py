"""Data-parallel training across processes and GPUs: the few ``torch.distributed`` calls we need.

Launch any learner script with ``torchrun --nproc_per_node 4 -m agents.train ...`` or
``accelerate launch -m agents.train ...``; nothing else changes. Under such a launcher
(``WORLD_SIZE`` > 1 in the environment) :class:`~agents.base.Learner`:

* initialises the process group (``nccl`` when CUDA is available, ``gloo`` on CPU: automatic,
  see :func:`default_backend`), and on CUDA uses the GPU ``LOCAL_RANK``;
* broadcasts rank 0's initial parameters, so all ranks start equal;
* lets each rank own its vector env and rollouts: rank ``r`` resets its slots with the seeds a
  single process with ``world_size * num_envs`` slots would give slots ``[r*N, (r+1)*N)``, and
  samples with its own torch generator (``seed + r``);
* averages gradients across ranks after every backward (:func:`all_reduce_gradients`), so the
  parameters stay identical on every rank;
* averages the logged metrics and the evaluation results over ranks, and logs, shows progress
  and writes checkpoints on rank 0 only (each rank's sampling RNG state goes into the checkpoint).

A single ``all_reduce`` of the flattened gradients (plus a "this rank's loss was finite" flag)
replaces ``DistributedDataParallel``: the policy is trained through several custom forward paths
(the chunked log-prob autograd function, the value head, optional peft wrapping), which DDP
would only see if they all went through the wrapper's ``forward``; averaging ``p.grad`` after
backward is exactly what DDP computes, needs no wrapper, and lets a non-finite loss on one rank
skip the step on all ranks instead of deadlocking them.

Losses are means over each rank's batch and gradients are averaged over ranks, so the update
equals a single process's on the union of the batches when every rank has the same number of
(sequences, tokens) per minibatch (e.g. fixed-length completions); per-rank statistics such as
advantage whitening are computed per rank, as in other DDP RL code.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info(environ: dict[str, str] | None = None) -> DistInfo:
    """Rank, world size and local rank from the variables torchrun / accelerate launch set."""
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    rank = int(environ.get("RANK", "0"))
    local = int(environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank, world, local)


def default_backend(cuda_available: bool | None = None) -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    return "nccl" if cuda_available and dist.is_nccl_available() else "gloo"


def setup(backend: str | None = None, timeout_s: float = 1800) -> DistInfo:
    """Join the process group if launched by torchrun / accelerate (idempotent); returns the
    process's :class:`DistInfo`. Without the launcher variables this is a no-op."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info().local_rank)
    info = env_info()
    if not info.enabled:
        return info
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return info


def current() -> DistInfo:
    """The process group this process is in (world size 1 if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info().local_rank)
    return DistInfo()


def default_device(info: DistInfo | None = None) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    info = info or env_info()
    return (
        torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    )


def _comm_device(tensor: torch.Tensor) -> torch.device:
    return tensor.device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            buf = tensor.detach().to(_comm_device(tensor))
            dist.broadcast(buf, src)
            if buf.data_ptr() != tensor.data_ptr():
                tensor.copy_(buf)


def all_reduce_gradients(params: list[torch.nn.Parameter], local_ok: bool = True) -> bool:
    """Average ``p.grad`` over ranks in one flat all-reduce; returns False (on every rank) if any
    rank reports ``local_ok=False`` (its loss was not finite), leaving the grads undefined."""
    world = dist.get_world_size()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = _comm_device(params[0]) if params else torch.device("cpu")
    flat = torch.cat(
        [g.detach().reshape(-1).to(device, torch.float32) for g in grads]
        + [torch.tensor([0.0 if local_ok else 1.0], device=device)]
    )
    dist.all_reduce(flat)
    if flat[-1].item() > 0:
        return False
    flat = flat[:-1].div_(world)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        avg = flat[offset : offset + n].view_as(g).to(p.device, p.dtype)
        if p.grad is None:
            p.grad = avg
        else:
            p.grad.copy_(avg)
        offset += n
    return True


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (every rank must pass the same keys)."""
    if not current().enabled or not values:
        return dict(values)
    keys = sorted(values)
    buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf)
    buf = (buf / dist.get_world_size()).cpu().tolist()
    return {**values, **dict(zip(keys, buf))}


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not current().enabled:
        return bool(flag)
    buf = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf)
    return bool(buf.item() > 0)


def broadcast_flag(flag: bool, src: int = 0) -> bool:
    """Rank ``src``'s ``flag`` on every rank (e.g. a wall-clock time limit)."""
    if not current().enabled:
        return bool(flag)
    buf = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.broadcast(buf, src)
    return bool(buf.item() > 0)


def gather_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on all ranks), in rank order."""
    if not current().enabled:
        return [tensor]
    device = _comm_device(tensor)
    local = tensor.to(device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


def gather_objects(obj: object) -> list[object]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` when not distributed). Only for
    what the ranks of one job send each other, e.g. evaluation samples; files are never
    unpickled."""
    if not current().enabled:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call at the end of a distributed script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
