"""Diagnostics the paper uses, as tools: run after each stage, saved as JSON + PNG.

- **Dimensional collapse**: singular values of the (centred, L2-normalised) embedding matrix of a
  held-out set, sorted; effective dimension as (a) the number of singular values above 1% of the
  largest, (b) the entropy effective rank exp(H(p)), p = s / sum(s) (Roy & Vetterli 2007), and
  (c) the participation ratio (sum s^2)^2 / sum s^4.
- **Memory-token redundancy**: the k x k correlation matrix of the memory-token states: for each
  text, the Pearson correlation (across hidden dimensions) between memory states i and j,
  averaged over texts. Off-diagonal values near 1 mean redundant tokens.

``python -m training diagnose ENCODER_DIR --data FILE.jsonl --out DIR`` runs them on any
compsearch encoder folder (or base model spec).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch


def spectrum(embeddings: np.ndarray, *, center: bool = True, normalize: bool = True) -> dict:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("spectrum needs an (n >= 2, dim) matrix")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if center:
        x = x - x.mean(0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    s_max = float(s[0]) if s.size else 0.0
    if s_max <= 0:
        return {
            "singular_values": s.tolist(),
            "n": int(x.shape[0]),
            "dim": int(x.shape[1]),
            "above_1pct": 0,
            "entropy_rank": 0.0,
            "participation_ratio": 0.0,
        }
    p = s / s.sum()
    nz = p[p > 0]
    entropy_rank = float(math.exp(-(nz * np.log(nz)).sum()))
    pr = float((s**2).sum() ** 2 / (s**4).sum())
    return {
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "centered": center,
        "normalized": normalize,
        "singular_values": [float(v) for v in s],
        "above_1pct": int((s > 0.01 * s_max).sum()),
        "above_10pct": int((s > 0.1 * s_max).sum()),
        "entropy_rank": entropy_rank,
        "participation_ratio": pr,
    }


def memory_correlation(states: np.ndarray) -> dict:
    """states (n, k, H): the mean per-text Pearson correlation matrix between memory states."""
    x = np.asarray(states, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError("memory_correlation needs (n, k, hidden) states")
    x = x - x.mean(2, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    corr = np.einsum("nkh,njh->kj", x, x) / x.shape[0]
    k = corr.shape[0]
    off = corr[~np.eye(k, dtype=bool)] if k > 1 else np.zeros(0)
    return {
        "k": int(k),
        "n": int(x.shape[0]),
        "matrix": corr.round(6).tolist(),
        "mean_offdiag": float(off.mean()) if off.size else None,
        "max_offdiag": float(off.max()) if off.size else None,
    }


@torch.no_grad()
def collect_states(
    states_fn: Callable[[list[list[int]]], torch.Tensor],
    token_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> np.ndarray:
    """Run ``states_fn`` (token id lists -> (B, k, H)) over all texts; (n, k, H) float32."""
    out = []
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        out.append((idx, states_fn([list(token_ids[i]) for i in idx]).float().cpu().numpy()))
    k, h = out[0][1].shape[1:]
    result = np.zeros((len(token_ids), k, h), dtype=np.float32)
    for idx, arr in out:
        result[idx] = arr
    return result


def analyze(states: np.ndarray) -> dict:
    """Both diagnostics from memory states (n, k, H); the embedding is their mean."""
    return {"spectrum": spectrum(states.mean(1)), "memory_correlation": memory_correlation(states)}


def save(result: dict, out_dir: str | Path, title: str = "") -> dict[str, str]:
    """Write diagnostics.json, spectrum.png and memory_correlation.png; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnostics.json").write_text(json.dumps(result, indent=1) + "\n")
    paths = {"json": str(out / "diagnostics.json")}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the JSON has everything
        return paths
    sp = result["spectrum"]
    s = np.asarray(sp["singular_values"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(1, len(s) + 1), s / max(s[0], 1e-12))
    ax.axhline(0.01, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value / largest")
    ax.set_title(
        f"{title} spectrum: {sp['above_1pct']} > 1%, erank {sp['entropy_rank']:.1f}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out / "spectrum.png", dpi=110)
    plt.close(fig)
    mc = result["memory_correlation"]
    fig, ax = plt.subplots(figsize=(4, 3.5))
    im = ax.imshow(np.asarray(mc["matrix"]), vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax)
    mean = mc["mean_offdiag"]
    ax.set_title(
        f"{title} memory corr (mean off-diag {mean:.2f})" if mean is not None else title, fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out / "memory_correlation.png", dpi=110)
    plt.close(fig)
    paths.update(
        spectrum=str(out / "spectrum.png"), memory_correlation=str(out / "memory_correlation.png")
    )
    return paths


def encoder_states_fn(encoder) -> Callable:
    """(B, k, H) memory states from a loaded ``compsearch.Encoder`` (library functions only)."""
    from compsearch.encoder import memory_inputs

    def fn(token_ids):
        pad = encoder.tokenizer.pad_token_id
        pad = pad if pad is not None else (encoder.tokenizer.eos_token_id or 0)
        inputs, attention, mem = memory_inputs(
            encoder.model.get_input_embeddings(), encoder.memory, token_ids, pad
        )
        hidden = encoder.model(inputs_embeds=inputs, attention_mask=attention).last_hidden_state
        return hidden[mem].view(len(token_ids), encoder.memory.shape[0], hidden.shape[-1])

    return fn


def diagnose_encoder(
    encoder_path: str,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    kind: str = "document",
    batch_size: int = 16,
    dtype: str | None = "float32",
) -> dict:
    from compsearch import Encoder

    enc = Encoder.load(encoder_path, dtype=dtype)
    ids = [t[: enc.config.max_length] for t in enc.tokenize(enc.prepare(list(texts), kind))]
    result = analyze(collect_states(encoder_states_fn(enc), ids, batch_size))
    result["encoder"] = str(encoder_path)
    result["texts"] = len(texts)
    result["files"] = save(result, out_dir, Path(str(encoder_path)).name)
    return result


def after_stage(model, cfg, data, out_dir: Path) -> dict:
    """Spectrum + memory correlation of the held-out texts (or, lacking those, training items),
    run by the training loop when a stage ends; returns the summary's short form."""
    from .data import heldout_texts

    texts = heldout_texts(cfg)
    if texts:
        ids = [t[: cfg.model.max_length] for t in model.tokenize(texts)]
        source = "heldout"
    else:
        store = getattr(data, "store", None) or getattr(data, "positives")
        ids = [store[i] for i in range(min(len(store), cfg.data.heldout_limit))]
        source = "training items (no data.heldout configured)"
    if len(ids) < 2:
        return {"skipped": "fewer than 2 texts"}
    was_training = model.training
    model.eval()
    try:
        with model.autocast():
            states = collect_states(
                model.memory_states, ids, batch_size=max(1, cfg.optim.micro_batch_size or 16)
            )
    finally:
        model.train(was_training)
    result = analyze(states)
    result.update(source=source, texts=len(ids), stage=cfg.stage)
    result["files"] = save(result, out_dir, cfg.stage)
    sp, mc = result["spectrum"], result["memory_correlation"]
    return {
        "above_1pct": sp["above_1pct"],
        "entropy_rank": round(sp["entropy_rank"], 2),
        "memory_mean_offdiag": mc["mean_offdiag"],
        "dir": str(out_dir),
        "source": source,
    }
