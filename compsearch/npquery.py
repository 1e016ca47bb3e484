"""Query encoding without torch: the merged encoder's forward pass in numpy, for cold starts.

Why: a ``compsearch query`` process used to spend seconds importing torch (2-4 s on the project's
CPU) to encode one short query, which is a few GFLOP. When the index's encoder has a verified
merged-weights cache (``compsearch.fastpath``, written the first time the encoder was loaded on
this machine) and it is a plain Llama (``supports``), a query is encoded here: numpy, the
``tokenizers`` library and a memory-mapped safetensors file, nothing else. Only the embedding rows
of the query's tokens are read from the 100 MB embedding table.

The arithmetic is the encoder's (``compsearch.encoder``): ``[prompt + query tokens, m_1..m_k]``
through the first L layers with bidirectional attention, the final RMSNorm, the mean of the k
memory positions, L2 normalisation. It runs in float32 and matches the torch encoder's fp32 output
to ~1e-5 (``tests/test_npquery.py``). Documents are still encoded by the torch encoder (batched,
bf16 where native): this path is for the handful of texts a query process embeds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CompsearchError

LIGHT_ENV = "COMPSEARCH_TRANSFORMERS"  # "1": always the torch/transformers encoder


def supports(cfg: dict) -> bool:
    """Whether a config.json describes a Llama this module (and ``compsearch.llama``) reproduce."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = (
        rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else None
    )
    return (
        cfg.get("model_type") == "llama"
        and cfg.get("hidden_act", "silu") == "silu"
        and not cfg.get("attention_bias")
        and not cfg.get("mlp_bias")
        and rope_type == "default"
        and cfg.get("pretraining_tp", 1) == 1
    )


class NumpyQueryEncoder:
    """The subset of ``Encoder`` a search needs (``encode``, ``dim``, ``fingerprint``), torch-free."""

    def __init__(self, merged: Path, encoder_dir: Path, fingerprint: str):
        from safetensors import safe_open

        from .fastpath import LightTokenizer
        from .models import resolve_base

        cfg = json.loads((Path(encoder_dir) / "compsearch_encoder.json").read_text())
        self.config = cfg
        self.fingerprint = fingerprint
        self.model_cfg = json.loads((Path(merged) / "config.json").read_text())
        if not supports(self.model_cfg):
            raise CompsearchError("the numpy query path supports plain Llama models only")
        self.tokenizer = LightTokenizer.from_folder(resolve_base(cfg["base_model"]))
        if self.tokenizer is None:
            raise CompsearchError("the numpy query path needs the base model's tokenizer.json")
        with safe_open(str(Path(encoder_dir) / "memory.safetensors"), framework="np") as f:
            self.memory = f.get_tensor("memory").astype(np.float32)
        self._weights = safe_open(str(Path(merged) / "model.safetensors"), framework="np")
        self._layers: list[dict] | None = None
        self.last_truncated: list[int] = []
        self.max_length = int(cfg.get("max_length", 512))

    @property
    def dim(self) -> int:
        return int(self.memory.shape[1])

    @property
    def name(self) -> str:
        return f"{self.config.get('base_model')} (k={self.memory.shape[0]}, numpy query path)"

    def _layer_weights(self) -> list[dict]:
        if self._layers is None:
            w = self._weights
            n = int(self.model_cfg["num_hidden_layers"])
            names = (
                "input_layernorm",
                "post_attention_layernorm",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "mlp.gate_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            )
            self._layers = [
                {
                    k: np.ascontiguousarray(w.get_tensor(f"layers.{i}.{k}.weight"), np.float32)
                    for k in names
                }
                for i in range(n)
            ]
            self._norm = w.get_tensor("norm.weight").astype(np.float32)
        return self._layers

    def encode(
        self, texts, *, kind: str = "query", max_length: int | None = None, **_
    ) -> np.ndarray:
        single = isinstance(texts, str)
        out, _states = self.encode_states(
            [texts] if single else texts, kind=kind, max_length=max_length
        )
        return out[0] if single else out

    def encode_states(
        self, texts, *, kind: str = "query", max_length: int | None = None, **_
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors (n, dim), memory states (n, k, dim))`` from one forward, as ``Encoder``'s."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
        texts = list(texts)
        prompt = (
            self.config.get("query_prompt")
            if kind == "query"
            else self.config.get("document_prompt")
        )
        prepared = [f"{prompt}: {t}\n" if prompt else t for t in texts]
        limit = int(max_length or self.max_length)
        ids = self.tokenizer(prepared, add_special_tokens=True)["input_ids"] if texts else []
        self.last_truncated = [i for i, t in enumerate(ids) if len(t) > limit]
        k = len(self.memory)
        states = (
            np.stack([self._memory_states([int(x) for x in t[:limit]]) for t in ids])
            if ids
            else np.zeros((0, k, self.dim), np.float32)
        )
        out = states.mean(1)
        if self.config.get("normalize", True):
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out, states

    def _memory_states(self, token_ids: list[int]) -> np.ndarray:
        """The final hidden states (k, dim) at the memory positions of one text."""
        c = self.model_cfg
        rows = sorted(set(token_ids))
        table = self._weights.get_slice("embed_tokens.weight")
        found = {r: np.asarray(table[r : r + 1], np.float32)[0] for r in rows}
        x = np.stack([found[t] for t in token_ids] + list(self.memory)).astype(np.float32)
        n, k = len(x), len(self.memory)
        heads, kv = (
            int(c["num_attention_heads"]),
            int(c.get("num_key_value_heads") or c["num_attention_heads"]),
        )
        hd = int(c.get("head_dim") or c["hidden_size"] // heads)
        eps = float(c.get("rms_norm_eps", 1e-6))
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        theta = float(rope.get("rope_theta", c.get("rope_theta", 10000.0)))
        inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd)
        ang = np.arange(n, dtype=np.float32)[:, None] * inv[None, :]
        cos = np.cos(np.concatenate([ang, ang], -1))[:, None, :]
        sin = np.sin(np.concatenate([ang, ang], -1))[:, None, :]
        for w in self._layer_weights():
            h = _rms(x, w["input_layernorm"], eps)
            q = (h @ w["self_attn.q_proj"].T).reshape(n, heads, hd)
            kk = (h @ w["self_attn.k_proj"].T).reshape(n, kv, hd)
            v = (h @ w["self_attn.v_proj"].T).reshape(n, kv, hd)
            q, kk = q * cos + _rotate(q) * sin, kk * cos + _rotate(kk) * sin
            rep = heads // kv
            kk, v = np.repeat(kk, rep, axis=1), np.repeat(v, rep, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, kk) / np.sqrt(hd)  # bidirectional: no mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            att = np.einsum("hqk,khd->qhd", scores, v).reshape(n, heads * hd)
            x = x + att @ w["self_attn.o_proj"].T
            h = _rms(x, w["post_attention_layernorm"], eps)
            g = h @ w["mlp.gate_proj"].T
            x = x + ((g / (1.0 + np.exp(-g))) * (h @ w["mlp.up_proj"].T)) @ w["mlp.down_proj"].T
        return _rms(x[n - k :], self._norm, eps)


def _rms(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return weight * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def _rotate(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], -1)


def light_query_encoder(root: Path, manifest: dict | None):
    """A ``NumpyQueryEncoder`` for this index when its merged cache is verified, else None."""
    if not manifest or os.environ.get(LIGHT_ENV) == "1":
        return None
    entry = manifest.get("encoder") or {}
    if entry.get("kind") in ("external", "sentence-transformers") or entry.get("quantize"):
        return None
    encoder_dir = Path(root) / "encoder"
    if not (encoder_dir / "compsearch_encoder.json").is_file():
        return None
    from .fastpath import read_merged

    merged = read_merged(entry["fingerprint"])
    if merged is None:
        return None
    try:
        return NumpyQueryEncoder(merged, encoder_dir, entry["fingerprint"])
    except (CompsearchError, OSError, ValueError, KeyError):
        return None
