"""mteb's encoder protocol for compsearch encoders, so ``mteb.evaluate`` scores them directly.

>>> import mteb
>>> from compsearch.integrations.mteb import from_pretrained
>>> model = from_pretrained()                # compsearch's default encoder; or a folder / model
>>> results = mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact"]))

``CompsearchMTEBEncoder`` wraps anything with the compsearch encoder interface
(``encode(texts, kind=..., batch_size=...)``, ``dim``, ``name``, ``fingerprint``; see
``compsearch.embedders``). mteb's query prompt type maps to ``kind="query"`` (the encoder's query
instruction); documents and the symmetric tasks (STS, classification, clustering) use
``kind="document"``. Repeated texts in one call are encoded once. Needs ``pip install
'compsearch[mteb]'``; the offline suite in ``benchmarks/`` builds on it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "compsearch.integrations.mteb needs mteb: pip install 'compsearch[mteb]'"
    ) from exc


@runtime_checkable
class EncoderLike(Protocol):
    """The compsearch encoder interface (``compsearch.Encoder``) the wrapper needs."""

    dim: int
    name: str
    fingerprint: str

    def encode(
        self,
        texts: list[str],
        *,
        kind: str = "document",
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> np.ndarray: ...


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "model"


def model_meta(
    name: str,
    revision: str,
    dim: int | None,
    *,
    n_parameters: int | None = None,
    max_tokens: int | None = None,
    model_type: str = "dense",
) -> ModelMeta:
    return ModelMeta.create_empty(
        overwrites={
            "name": name if "/" in name else f"compsearch/{_slug(name)}",
            "revision": revision,
            "embed_dim": dim,
            "n_parameters": n_parameters,
            "max_tokens": max_tokens,
            "languages": ["eng-Latn"],
            "similarity_fn_name": ScoringFunction.COSINE if model_type == "dense" else None,
            "framework": ["PyTorch"] if model_type == "dense" else [],
            "model_type": [model_type],
            "use_instructions": model_type == "dense",
            "open_weights": True,
        }
    )


class CompsearchMTEBEncoder(AbsEncoder):
    """mteb ``EncoderProtocol`` around a compsearch-style encoder."""

    def __init__(
        self,
        encoder: EncoderLike,
        *,
        label: str | None = None,
        batch_size: int | None = None,
        **_: Any,
    ) -> None:
        self.encoder = encoder
        self.label = label or encoder.name
        self.batch_size = batch_size
        self.mteb_model_meta = model_meta(
            self.label,
            str(encoder.fingerprint)[:16],
            int(encoder.dim),
            n_parameters=getattr(encoder, "n_parameters", None),
            max_tokens=getattr(encoder, "max_tokens", None),
        )
        self.calls: list[
            tuple[str, str, int]
        ] = []  # (task, kind, n texts): what was asked, for tests/logs
        self.encode_seconds = 0.0
        self.texts_encoded = 0

    @staticmethod
    def kind_for(prompt_type: PromptType | str | None) -> str:
        return (
            "query"
            if prompt_type is not None and PromptType(prompt_type) == PromptType.query
            else "document"
        )

    def encode(
        self,
        inputs,
        *,
        task_metadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        kind = self.kind_for(prompt_type)
        self.calls.append((task_metadata.name, kind, len(texts)))
        if not texts:
            return np.zeros((0, int(self.encoder.dim)), dtype=np.float32)
        index: dict[str, int] = {}
        order = [index.setdefault(t, len(index)) for t in texts]
        unique = list(index)
        bs = int(self.batch_size or kwargs.get("batch_size") or 32)
        t0 = time.perf_counter()
        emb = np.asarray(
            self.encoder.encode(unique, kind=kind, batch_size=bs, show_progress=False),
            dtype=np.float32,
        )
        self.encode_seconds += time.perf_counter() - t0
        self.texts_encoded += len(unique)
        if emb.shape != (len(unique), int(self.encoder.dim)):
            raise ValueError(
                f"{self.label}: encode returned shape {emb.shape}, expected ({len(unique)}, {self.encoder.dim})"
            )
        return emb[np.asarray(order)]


def from_pretrained(
    model: Any = None, *, label: str | None = None, batch_size: int | None = None
) -> CompsearchMTEBEncoder:
    """An mteb model from compsearch's default encoder, an encoder folder, a base model, a
    sentence-transformers folder, or any embedding object."""
    from ..embedders import get_encoder

    return CompsearchMTEBEncoder(get_encoder(model), label=label, batch_size=batch_size)
