"""compsearch: search and RAG over your documents with an LLM2Comp text encoder.

Importing the package is cheap: torch, transformers and faiss load on first use.

>>> from compsearch import Retriever
>>> r = Retriever.open("my-index")
>>> r.index(["./docs"])
>>> for hit in r.search("how do I configure logging?", k=5):
...     print(hit.score, hit.source, hit.span, hit.text[:80])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "CompsearchError",
    "Encoder",
    "EncoderConfig",
    "Retriever",
    "SearchResult",
    "IndexReport",
]

_LAZY = {
    "Encoder": "compsearch.encoder",
    "EncoderConfig": "compsearch.encoder",
    "Retriever": "compsearch.retriever",
    "SearchResult": "compsearch.retriever",
    "IndexReport": "compsearch.retriever",
}

from .errors import CompsearchError  # noqa: E402  (tiny, no dependencies)

if TYPE_CHECKING:  # pragma: no cover
    from .encoder import Encoder, EncoderConfig
    from .retriever import IndexReport, Retriever, SearchResult


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'compsearch' has no attribute {name!r}")
