"""Helpers for the training tests and smoke runs: tiny bases, tiny data, tiny configs (offline)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from .config import DataConfig, ModelConfig, OptimConfig, TrainConfig


def sharpen_base(src: Path, dst: Path, scale: float = 12.0) -> Path:
    """Copy a tiny random Llama with its (tied) embeddings scaled up, so its next-token
    distributions are peaked and depend on the context: a teacher worth distilling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def word_texts(words: list[str], n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def triples(words: list[str], n: int, seed: int = 0) -> list[dict]:
    """Query = a few words of its positive; negative = another record's positive."""
    rng = random.Random(seed)
    docs = word_texts(words, n, 8, 16, seed)
    out = []
    for i, d in enumerate(docs):
        toks = d.split()
        q = " ".join(rng.sample(toks, 3))
        out.append({"query": q, "positive": d, "negative": docs[(i + 1) % n]})
    return out


def tiny_config(stage: str, base: Path, files: list, out: Path, **kw) -> TrainConfig:
    """A config for a tiny model: fp32, no progress bar, frequent logging."""
    model = dict(base=str(base), max_length=48)
    model.update(kw.pop("model", {}))
    data_kw = dict(train=[str(p) for p in files], min_side_tokens=4, max_continuation_tokens=12)
    data_kw.update(kw.pop("data", {}))
    optim = dict(lr=1e-2, max_steps=8, batch_size=4, micro_batch_size=4, warmup_steps=0)
    optim.update(kw.pop("optim", {}))
    base_kw = dict(
        stage=stage,
        out_dir=str(out),
        precision="fp32",
        progress=False,
        save_every=1000,
        diagnostics=False,
        export=False,
        temperature=0.05,
        seed=7,
    )
    base_kw.update(kw)
    return TrainConfig(
        model=ModelConfig(**model),
        data=DataConfig(**data_kw),
        optim=OptimConfig(**optim),
        **base_kw,
    ).validate()


def losses(run_dir: Path) -> list[float]:
    return [
        json.loads(line)["loss"]
        for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    ]


# ---------------------------------------------------------------------------- multi-process checks


class BagOfWords(torch.nn.Module):
    """A stand-in encoder for the gather test: mean of learned word vectors (deterministic)."""

    def __init__(self, vocab: int = 50, dim: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab, dim, generator=gen))

    def embed(self, token_ids):
        return torch.stack([self.table[torch.as_tensor(t)].mean(0) for t in token_ids])


def gather_case(seed: int = 0, n: int = 8, h: int = 1):
    """A fixed SCL batch of n queries (token id lists) with h hard negatives each."""
    rng = random.Random(seed)
    rows = lambda: [[rng.randrange(50) for _ in range(rng.randint(2, 6))] for _ in range(n)]  # noqa: E731
    q, p = rows(), rows()
    negs = [rows() for _ in range(h)]
    return q, p, [negs[j][i] for i in range(n) for j in range(h)]


def gather_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One process of the two-process gather test: its half of the batch, gathered InfoNCE."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    from .objectives import SentenceBatch, TripleBatch, scl_loss, ucl_loss

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        q, p, neg = gather_case()
        b = len(q) // world_size
        mine = slice(rank * b, (rank + 1) * b)
        out = {}
        for name in ("scl", "ucl"):
            model = BagOfWords()
            if name == "scl":
                batch = TripleBatch(q[mine], p[mine] + neg[mine])
                loss, _ = scl_loss(model, batch, 0.05)
            else:
                loss, _ = ucl_loss(model, SentenceBatch(q[mine]), 0.05)
            loss.backward()
            grad = model.table.grad.clone()
            dist.all_reduce(grad)
            grad /= world_size
            total = loss.detach().clone()
            dist.all_reduce(total)
            out[f"{name}_loss"] = (total / world_size).reshape(1)
            out[f"{name}_grad"] = grad
        if rank == 0:
            save_file(out, str(Path(out_dir) / "gathered.safetensors"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_worker(rank: int, world_size: int, port: int, cfg_dict: dict) -> None:
    """One process of a multi-process run, set up the way torchrun sets it up (env://)."""
    import os

    import torch.distributed as dist

    from .train import train

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        train(TrainConfig.from_dict(cfg_dict))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
