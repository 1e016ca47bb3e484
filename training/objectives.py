"""The losses of the LLM2Comp recipe.

Stage 1 (pretext; the student writes k memory states, the frozen causal LM reads them as a soft
prompt ``[m_1..m_k, embed(target)]``):

- ``ctkd``: KL(teacher || student) at every continuation position, temperature 1. The teacher is
  the frozen LM on the full text ``[context, continuation]``; the student distribution is the
  frozen LM reading only the memory states. Averaged over positions per sample, then over samples.
- ``nll``: cross-entropy of the continuation tokens given the memory (same wiring, no teacher).
- ``rc``: reconstruction; the student reads the whole text and the decoder reproduces it (CE).

Stage 2 ``ucl`` (SimCSE): two dropout views of each sentence are positives, InfoNCE, tau 0.05.
Stage 3 ``scl``: query vs all in-batch positives and hard negatives, InfoNCE, tau 0.05.

On several processes the contrastive losses gather the document embeddings of every process with
a differentiable all-gather, so each process sees all negatives and the summed gradients equal the
single-process gradients on the concatenated batch (tested with two gloo processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

# ---------------------------------------------------------------------------- batches


@dataclass
class PretextBatch:
    context: list[list[int]]  # what the student reads (the whole text for rc)
    target: list[list[int]]  # what the decoder must produce (continuation; the text for rc)

    def __len__(self) -> int:
        return len(self.context)

    @property
    def tokens(self) -> int:
        return sum(map(len, self.context)) + sum(map(len, self.target))


@dataclass
class SentenceBatch:
    texts: list[list[int]]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def tokens(self) -> int:
        return 2 * sum(map(len, self.texts))


@dataclass
class TripleBatch:
    queries: list[list[int]]
    documents: list[list[int]]  # B positives, then B * h hard negatives (query-major)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def tokens(self) -> int:
        return sum(map(len, self.queries)) + sum(map(len, self.documents))


# ---------------------------------------------------------------------------- pretext


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _span_mask(starts: Sequence[int], lengths: Sequence[int], width: int, device) -> torch.Tensor:
    pos = torch.arange(width, device=device).unsqueeze(0)
    s = torch.as_tensor(list(starts), device=device).unsqueeze(1)
    n = torch.as_tensor(list(lengths), device=device).unsqueeze(1)
    return (pos >= s) & (pos < s + n)


def decoder_hidden(
    model, memory_states: torch.Tensor, target: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Frozen LM on ``[m_1..m_k, embed(target)]``: hidden states at the positions that predict each
    target token, flattened sample-major (N = total target tokens, H)."""
    lengths = [len(t) for t in target]
    return model.by_chunks(
        lengths,
        lambda idx: _decoder_hidden(model, memory_states[idx], [target[i] for i in idx]),
        sizes=lengths,
    )


def _decoder_hidden(
    model, memory_states: torch.Tensor, target: Sequence[Sequence[int]]
) -> torch.Tensor:
    k = memory_states.shape[1]
    ids, mask = _pad(target, model.pad_id, model.device)
    tok = model.token_embeddings(ids)
    inputs = torch.cat([memory_states.to(tok.dtype), tok], 1)
    attention = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, k), mask], 1)
    hidden = model.frozen_hidden(inputs, attention)
    lengths = [len(t) for t in target]
    where = _span_mask([k - 1] * len(target), lengths, inputs.shape[1], model.device)
    return hidden[where]


@torch.no_grad()
def teacher_hidden(
    model, context: Sequence[Sequence[int]], target: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Frozen LM on the full text ``[context, target]``: hidden states predicting each target token."""
    return model.by_chunks(
        [len(c) + len(t) for c, t in zip(context, target)],
        lambda idx: _teacher_hidden(model, [context[i] for i in idx], [target[i] for i in idx]),
        sizes=[len(t) for t in target],
    )


def _teacher_hidden(model, context, target) -> torch.Tensor:
    full = [list(c) + list(t) for c, t in zip(context, target)]
    ids, mask = _pad(full, model.pad_id, model.device)
    hidden = model.frozen_hidden(model.token_embeddings(ids), mask)
    where = _span_mask(
        [len(c) - 1 for c in context], [len(t) for t in target], ids.shape[1], model.device
    )
    return hidden[where]


def _per_sample_mean(values: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Mean over each sample's positions, then over samples."""
    seg = torch.repeat_interleave(
        torch.arange(len(lengths), device=values.device),
        torch.as_tensor(list(lengths), device=values.device),
    )
    sums = torch.zeros(len(lengths), device=values.device, dtype=values.dtype).index_add_(
        0, seg, values
    )
    counts = torch.as_tensor(list(lengths), device=values.device, dtype=values.dtype)
    return (sums / counts).mean()


def pretext_loss(model, batch: PretextBatch, objective: str) -> tuple[torch.Tensor, dict]:
    """ctkd / nll / rc loss of one micro-batch; returns (loss, float stats)."""
    if any(len(c) < 1 for c in batch.context) or any(len(t) < 1 for t in batch.target):
        raise ValueError("every sample needs at least one context and one target token")
    lengths = [len(t) for t in batch.target]
    targets = torch.as_tensor([tok for t in batch.target for tok in t], device=model.device)
    memory = model.memory_states(batch.context)  # (B, k, H), differentiable
    s_logp = F.log_softmax(model.logits(decoder_hidden(model, memory, batch.target)), -1)
    s_nll = -s_logp.gather(1, targets[:, None]).squeeze(1)
    stats = {"nll_student": float(_per_sample_mean(s_nll.detach(), lengths))}
    if objective == "ctkd":
        with torch.no_grad():
            t_logp = F.log_softmax(
                model.logits(teacher_hidden(model, batch.context, batch.target)), -1
            )
        kl = F.kl_div(s_logp, t_logp, log_target=True, reduction="none").sum(-1)
        loss = _per_sample_mean(kl, lengths)
        t_nll = -t_logp.gather(1, targets[:, None]).squeeze(1)
        stats["nll_teacher"] = float(_per_sample_mean(t_nll, lengths))
    elif objective in ("nll", "rc"):
        loss = _per_sample_mean(s_nll, lengths)
    else:
        raise ValueError(f"unknown pretext objective {objective!r}")
    return loss, stats


# ---------------------------------------------------------------------------- contrastive


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every process's gradient for the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rows of every process concatenated in rank order, offset of this process's rows).
    Every process must pass the same number of rows."""
    rank, size = world()
    if size == 1:
        return x, 0
    return _GatherWithGrad.apply(x), rank * x.shape[0]


def info_nce(
    queries: torch.Tensor, docs: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, dict]:
    """Cross-entropy over cosine(query, every doc) / temperature; ``labels`` index the positives."""
    q = F.normalize(queries.float(), dim=-1)
    d = F.normalize(docs.float(), dim=-1)
    scores = q @ d.T / temperature
    loss = F.cross_entropy(scores, labels)
    with torch.no_grad():
        acc = (scores.argmax(-1) == labels).float().mean()
        pos = scores.gather(1, labels[:, None]).mean() * temperature
    return loss, {"acc": float(acc), "pos_cos": float(pos), "negatives": int(d.shape[0] - 1)}


def ucl_loss(model, batch: SentenceBatch, temperature: float) -> tuple[torch.Tensor, dict]:
    """SimCSE: two forward passes (different dropout) of the same sentences are positives."""
    z1 = model.embed(batch.texts)
    z2 = model.embed(batch.texts)
    keys, offset = gather(z2)
    labels = torch.arange(len(batch), device=z1.device) + offset
    return info_nce(z1, keys, labels, temperature)


def scl_loss(model, batch: TripleBatch, temperature: float) -> tuple[torch.Tensor, dict]:
    """Query against every gathered positive and hard negative."""
    b = len(batch)
    q = model.embed(batch.queries)
    d = model.embed(batch.documents)
    pos, offset = gather(d[:b])
    neg, _ = gather(d[b:])
    labels = torch.arange(b, device=q.device) + offset
    return info_nce(q, torch.cat([pos, neg], 0), labels, temperature)


def contrastive_loss(model, batch, stage: str, temperature: float):
    if stage == "ucl":
        return ucl_loss(model, batch, temperature)
    if stage == "scl":
        return scl_loss(model, batch, temperature)
    raise ValueError(f"unknown contrastive stage {stage!r}")


def stage_loss(model, batch, stage: str, temperature: float = 0.05):
    if stage in ("ctkd", "nll", "rc"):
        return pretext_loss(model, batch, stage)
    return contrastive_loss(model, batch, stage, temperature)
