"""Encoders other than compsearch's own: sentence-transformers folders and any object that embeds.

A ``Retriever`` needs very little from an encoder (the *encoder protocol*):

- ``dim`` (int), ``fingerprint`` (str: changes whenever the vectors would), ``name``, ``source``
  (how to load it again, or ``None`` when it cannot be loaded by name);
- ``encode(texts, kind="query" | "document") -> np.ndarray`` of shape (n, dim), float32,
  L2-normalised (compsearch searches by inner product);
- optionally ``count_tokens(texts)`` and ``max_length`` for chunking, and ``last_truncated``.

``as_encoder`` turns the usual shapes into that protocol: a compsearch ``Encoder`` (returned as is),
a sentence-transformers ``SentenceTransformer``, a LangChain ``Embeddings`` (``embed_documents`` /
``embed_query``), a LlamaIndex embedding (``get_text_embedding_batch`` / ``get_query_embedding``),
or any object with ``encode(list[str]) -> array``. Vectors of a foreign model are identified by a
fingerprint over its class, its declared name and the vectors it gives for fixed probe texts, so an
index refuses a different model even when the caller forgets to say which one it is.

``load_encoder(spec)`` is what ``Retriever.open(path, "spec")`` and ``--model`` use: a
sentence-transformers folder is loaded with sentence-transformers (its own pooling and
normalisation), never mistaken for a causal LM with untrained memory tokens.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CompsearchError

PROBES = (
    "compsearch fingerprint probe: the quick brown fox jumps over the lazy dog",
    "How do I rotate log files?",
    "0123456789 ENOSPC os.path.join",
)
ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def is_sentence_transformers_folder(path: str | os.PathLike) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and any((p / m).is_file() for m in ST_MARKERS)


def _normalise(vecs: Any, n: int) -> np.ndarray:
    if hasattr(vecs, "detach"):  # a torch tensor
        vecs = vecs.detach().float().cpu().numpy()
    out = np.asarray(vecs, dtype=np.float32)
    if out.ndim == 1 and n == 1:
        out = out[None, :]
    if out.ndim != 2 or out.shape[0] != n:
        raise CompsearchError(
            f"the encoder returned an array of shape {out.shape} for {n} texts; expected ({n}, dim)"
        )
    if not np.all(np.isfinite(out)):
        raise CompsearchError("the encoder returned NaN or infinite values")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


class ExternalEncoder:
    """Any embedding model behind the encoder protocol (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        source: str | None = None,
        max_length: int = 512,
    ):
        self.model = model
        self._name = name or f"{type(model).__module__}.{type(model).__qualname__}"
        self.source = source
        self.max_length = max_length
        self.last_truncated: list[int] = []
        self.truncated_total = 0
        self._dim: int | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------------- protocol
    def _raw(self, texts: list[str], kind: str) -> Any:
        m = self.model
        if hasattr(m, "embed_documents") and hasattr(m, "embed_query"):  # LangChain
            return (
                [m.embed_query(t) for t in texts] if kind == "query" else m.embed_documents(texts)
            )
        if hasattr(m, "get_text_embedding_batch"):  # LlamaIndex
            return (
                [m.get_query_embedding(t) for t in texts]
                if kind == "query"
                else m.get_text_embedding_batch(texts)
            )
        if hasattr(m, "encode_query") and hasattr(
            m, "encode_document"
        ):  # sentence-transformers >= 5
            fn = m.encode_query if kind == "query" else m.encode_document
            return fn(texts, convert_to_numpy=True, show_progress_bar=False)
        if hasattr(m, "encode"):
            try:
                return m.encode(texts, kind=kind)
            except TypeError:
                return m.encode(texts)
        if callable(m):
            return m(texts)
        raise CompsearchError(
            f"{self._name} cannot embed texts: give an object with encode(), "
            f"embed_documents()/embed_query(), or a callable"
        )

    def encode(self, texts: str | Sequence[str], *, kind: str = "document", **_: Any) -> np.ndarray:
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
        single = isinstance(texts, str)  # one string -> one 1-D vector, as in sentence-transformers
        texts = [texts] if single else list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("encode() takes a string or a list of strings")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = _normalise(self._raw(texts, kind), len(texts))
        if self._dim is not None and out.shape[1] != self._dim:
            raise CompsearchError(
                f"{self._name} returned {out.shape[1]}-d vectors, expected {self._dim}"
            )
        return out[0] if single else out

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(_normalise(self._raw([PROBES[0]], "document"), 1).shape[1])
        return self._dim

    @property
    def fingerprint(self) -> str:
        """sha256 over the class, the declared name and rounded probe vectors (query and document)."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"external:{type(self.model).__qualname__}:{self._name}".encode())
            for kind in ("document", "query"):
                vecs = _normalise(self._raw(list(PROBES), kind), len(PROBES))
                h.update(np.round(vecs, 4).astype(np.float32).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def name(self) -> str:
        return self._name

    dtype = "float32"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Approximate token counts (words x 4/3) when the model exposes no tokenizer."""
        tok = getattr(self.model, "tokenizer", None)
        if tok is not None and callable(tok):
            try:
                return [len(ids) for ids in tok(list(texts), add_special_tokens=True)["input_ids"]]
            except Exception:
                pass
        return [max(1, (len(t.split()) * 4 + 2) // 3) for t in texts]

    def manifest_entry(self) -> dict:
        return {
            "source": self.source,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "dtype": "float32",
            "max_length": self.max_length,
            "kind": "external",
        }

    def __repr__(self) -> str:
        return f"ExternalEncoder({self._name}, dim={self.dim}, fingerprint={self.fingerprint[:12]})"


class SentenceTransformerEncoder(ExternalEncoder):
    """A sentence-transformers folder, loaded by sentence-transformers, fingerprinted by its files."""

    def __init__(self, folder: str | os.PathLike, device: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise CompsearchError(
                f"{folder} is a sentence-transformers model: pip install "
                f"sentence-transformers to use it"
            ) from None
        folder = Path(folder).expanduser().resolve()
        model = SentenceTransformer(str(folder), device=device or "cpu")
        super().__init__(
            model,
            name=f"sentence-transformers:{folder.name}",
            source=str(folder),
            max_length=int(getattr(model, "max_seq_length", 512) or 512),
        )
        self.folder = folder

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from .models import folder_fingerprint

            h = hashlib.sha256(b"sentence-transformers\0")
            for name in ST_MARKERS + ("sentence_bert_config.json",):
                if (self.folder / name).is_file():
                    h.update(name.encode() + (self.folder / name).read_bytes())
            for sub in sorted(p for p in self.folder.iterdir() if p.is_dir()):  # pooling, normalize
                for cfg in sorted(sub.glob("*.json")):
                    h.update(f"{sub.name}/{cfg.name}".encode() + cfg.read_bytes())
            h.update(folder_fingerprint(self.folder).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tok = self.model.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=True)["input_ids"]]

    def manifest_entry(self) -> dict:
        return dict(super().manifest_entry(), kind="sentence-transformers")


def as_encoder(obj: Any):
    """Whatever the caller gave, as something that follows the encoder protocol."""
    if obj is None:
        return None
    if isinstance(obj, (str, os.PathLike)):
        return load_encoder(obj)
    if all(hasattr(obj, a) for a in ("encode", "fingerprint", "dim", "name")):
        return obj  # already follows the protocol
    return ExternalEncoder(obj)


def get_encoder(model: Any = None):
    """What the adapters take as ``model``: None for compsearch's default, else ``as_encoder``."""
    return load_encoder(None) if model is None else as_encoder(model)


def load_encoder(spec: str | os.PathLike | None):
    """Load an encoder by name or folder: a sentence-transformers folder, else ``Encoder.load``."""
    if spec is not None and spec != "default" and is_sentence_transformers_folder(spec):
        return SentenceTransformerEncoder(spec)
    from .encoder import Encoder

    return Encoder.load(spec)


def index_encoder(root, manifest: dict | None):
    """Load the encoder an index was built with: its saved encoder folder, else the manifest's
    source, else (a new index) compsearch's default. One line when it cannot be loaded."""
    from pathlib import Path as _Path

    saved = _Path(root) / "encoder"
    if (saved / "compsearch_encoder.json").is_file():
        source = str(saved)
    else:
        source = manifest["encoder"]["source"] if manifest else "default"
    if source is None:
        raise CompsearchError(
            f"index {root} was built with {manifest['encoder'].get('name')}, an embedding model "
            f"compsearch cannot load by name: pass that model, e.g. Retriever.open(path, encoder=model)"
        )
    try:
        return load_encoder(source)
    except CompsearchError as exc:
        raise CompsearchError(
            f"cannot load the encoder this index was built with ({source}): {exc}"
        ) from None
