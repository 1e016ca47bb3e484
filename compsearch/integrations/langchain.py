"""LangChain adapters: an ``Embeddings``, a ``BaseRetriever`` and a ``VectorStore`` over compsearch.

>>> from compsearch.integrations.langchain import CompsearchRetriever
>>> docs = CompsearchRetriever(index=".compsearch", k=4).invoke("how do I rotate logs?")

- ``CompsearchEmbeddings(model=None)``: compsearch's encoder (default, a saved encoder folder, a
  base model) as LangChain embeddings; queries get the encoder's query prompt.
- ``CompsearchRetriever(index=PATH, k=4, where=None, rerank="auto")``: an existing index (e.g.
  built by ``compsearch index ./docs``); each ``Document`` carries ``source``, ``start_line``,
  ``end_line``, ``section``, ``score`` and ``chunk_id`` plus the chunk's own metadata.
- ``CompsearchVectorStore(embedding=None, index=PATH)``: a vector store with your string ids,
  ``add_texts``/``add_documents`` (an existing id is replaced), ``get_by_ids``, ``delete``,
  filters (compsearch's ``where`` grammar) and ``as_retriever``. ``embedding`` may be any
  LangChain ``Embeddings``; the index records its fingerprint and refuses another model.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.vectorstores import VectorStore
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "compsearch.integrations.langchain needs langchain-core: "
        "pip install 'compsearch[langchain]'"
    ) from exc

import numpy as np

from ..embedders import ExternalEncoder, get_encoder


class CompsearchEmbeddings(Embeddings):
    """compsearch's encoder as LangChain ``Embeddings`` (loaded on first use)."""

    def __init__(self, model: Any = None, *, batch_size: int = 32):
        self.model = model
        self.batch_size = batch_size
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = get_encoder(self.model)
        return self._encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.encoder.encode(list(texts), kind="document").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode([text], kind="query")[0].tolist()


def _encoder_for(embedding: Embeddings | None):
    """The compsearch encoder behind a LangChain embedding (its own, when it wraps compsearch)."""
    if embedding is None:
        return None
    if isinstance(embedding, CompsearchEmbeddings):
        return embedding.encoder
    return ExternalEncoder(embedding)


class CompsearchRetriever(BaseRetriever):
    """Search an existing compsearch index from LangChain."""

    index: str = ".compsearch"
    k: int = 4
    where: dict | None = None
    rerank: Any = "auto"
    model: Any = None  # an embedding object, when the index was built with a foreign one
    model_config = ConfigDict(arbitrary_types_allowed=True)
    _retriever: Any = PrivateAttr(default=None)

    def _open(self):
        if self._retriever is None:
            from .. import Retriever

            encoder = _encoder_for(self.model) if isinstance(self.model, Embeddings) else self.model
            self._retriever = Retriever.open(self.index, encoder, must_exist=True)
        return self._retriever

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        where = kwargs.get("where", kwargs.get("filter", self.where))
        hits = self._open().search(
            query, k=k, where=where, rerank=kwargs.get("rerank", self.rerank)
        )
        return [
            Document(
                page_content=h.text,
                id=h.doc_id or str(h.id),
                metadata=dict(
                    h.metadata,
                    source=h.source,
                    start_line=h.start_line,
                    end_line=h.end_line,
                    section=h.section,
                    score=h.score,
                    chunk_id=h.id,
                ),
            )
            for h in hits
        ]


class CompsearchVectorStore(VectorStore):
    """A LangChain vector store kept in a compsearch index directory."""

    def __init__(
        self, embedding: Embeddings | None = None, index: str | Path = ".compsearch", **_: Any
    ):
        from .. import Retriever

        self._embedding = embedding
        self.retriever = Retriever.open(index, _encoder_for(embedding))

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if ids is None:
            ids = [str(uuid.uuid4()) for _ in texts]
        ids = [i if i is not None else str(uuid.uuid4()) for i in ids]
        return self.retriever.add(
            texts, metadatas, ids=ids, source=kwargs.get("source", "<langchain>")
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        where = kwargs.get("where", kwargs.get("filter"))
        if ids is None and where is None:
            return False
        self.retriever.delete(list(ids or []), where=where)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._document(h) for h in self.retriever.get(list(ids))]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        if not self.retriever.exists:
            return []
        hits = self.retriever.search(
            query,
            k=k,
            where=filter,
            mode=kwargs.get("mode", "dense"),
            rerank=kwargs.get("rerank", "auto"),
        )
        return [(self._document(h), h.score) for h in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        if not self.retriever.exists:
            return []
        q = np.asarray([embedding], dtype=np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        hits = self.retriever.search_vectors(q, k, where=filter)[0]
        return [self._document(h) for h in hits]

    def _select_relevance_score_fn(self):
        return lambda score: (score + 1.0) / 2.0  # cosine similarity in [-1, 1] -> [0, 1]

    @staticmethod
    def _document(hit) -> Document:
        return Document(
            page_content=hit.text, metadata=dict(hit.metadata), id=hit.doc_id or str(hit.id)
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        index: str | Path = ".compsearch",
        **kwargs: Any,
    ) -> "CompsearchVectorStore":
        store = cls(embedding=embedding, index=index)
        store.add_texts(texts, metadatas, ids=ids, **kwargs)
        return store
