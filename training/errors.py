"""The one exception type of ``training/``: a problem the user can fix, said in one line.

Bad config files or overrides, missing or malformed data, a checkpoint that does not match the
config, a run that cannot go on (out of memory, a non-finite loss), a ship that fails its checks:
all raise ``TrainingError``, which ``python -m training`` prints as ``error: <message>`` with exit
status 2. It is a ``CompsearchError``, so code that drives both the library and the recipe catches
one type. An allocation failure during a step becomes one too (``is_oom``, ``oom_message``), with
what to change. Programming errors (an unknown objective passed by code, not by a config) stay built-in
exceptions with tracebacks.
"""

from __future__ import annotations

from compsearch.errors import CompsearchError


class TrainingError(CompsearchError):
    """Training cannot go on; the message says what to change."""


def is_oom(exc: BaseException) -> bool:
    """CUDA OOM, or a CPU allocation failure (MemoryError / "DefaultCPUAllocator: can't allocate")."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "defaultcpuallocator")
    )


def oom_message(batch, cfg, device, step: int, world_size: int) -> str:
    """What to change when a micro-batch does not fit in memory (the loop raises it as a TrainingError)."""
    rows = (
        getattr(batch, "context", None)
        or getattr(batch, "texts", None)
        or getattr(batch, "queries", [])
    )
    longest = max((len(r) for r in rows), default=0)
    return (
        f"a micro-batch of {len(batch)} samples ({batch.tokens} tokens, longest text {longest} tokens) "
        f"does not fit in {device} memory at step {step + 1}. Lower optim.micro_batch_size "
        f"(now {cfg.optim.micro_batch_size}; optim.batch_size={cfg.optim.batch_size} is kept by gradient "
        f"accumulation), lower model.max_length (now {cfg.model.max_length}) or "
        f"data.max_continuation_tokens, or set gradient_checkpointing=true"
        + (
            " (contrastive stages: fewer in-batch negatives per micro-batch)"
            if cfg.stage in ("ucl", "scl")
            else ""
        )
    )
