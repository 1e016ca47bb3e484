"""Several training processes (torchrun / accelerate launch): set-up and the few collectives the loop needs.

The loop runs without a DDP wrapper: the trainable parameters are a few MB and one forward has three
roles (student, teacher, decoder), so gradients are averaged by hand with one all-reduce per
optimizer step, and rank 0's clock decides when a time budget is spent. With one process every
function here is a no-op (or plain local arithmetic), so the single-process path has no collectives.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from compsearch.encoder import pick_device


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Initialises torch.distributed when launched by torchrun/accelerate."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        dev = (
            torch.device(f"cuda:{torch.cuda.current_device()}")
            if (torch.cuda.is_available() and device in ("auto", "cuda"))
            else torch.device("cpu")
        )
        return rank, world_size, dev
    return 0, 1, pick_device(device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def average_gradients(params: dict, loss: float, world_size: int) -> float:
    """Average every parameter's gradient (one flat all-reduce) and the loss over the processes.

    Parameters that got no gradient this step (e.g. memory tokens in a stage that freezes them) get
    zeros first, so every process reduces tensors of the same shape. Returns the mean loss."""
    for p in params.values():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if world_size == 1:
        return loss
    grads = [p.grad for p in params.values()]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params.values(), grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
    loss_t = torch.tensor([loss], device=flat.device)
    dist.all_reduce(loss_t)
    return float(loss_t) / world_size


def out_of_time(elapsed: float, max_minutes: float, world_size: int, device) -> bool:
    """Whether the time budget is spent; with several processes, rank 0's clock decides for all."""
    if not max_minutes or max_minutes <= 0:
        return False
    over = elapsed >= 60.0 * max_minutes
    if world_size > 1:
        flag = torch.tensor([1.0 if over else 0.0], device=device)
        dist.broadcast(flag, 0)
        over = bool(flag.item())
    return over
