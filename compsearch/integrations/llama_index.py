"""LlamaIndex adapters: ``CompsearchEmbedding`` (a ``BaseEmbedding``) and ``CompsearchRetriever``.

>>> from compsearch.integrations.llama_index import CompsearchRetriever
>>> nodes = CompsearchRetriever(index=".compsearch", k=4).retrieve("how do I rotate logs?")

``CompsearchRetriever`` returns ``NodeWithScore`` objects whose ``TextNode`` carries the chunk text
and, in its metadata, ``source``, ``start_line``, ``end_line``, ``section`` and the chunk's own
metadata. No ``VectorStoreIndex`` is needed: compsearch is the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "compsearch.integrations.llama_index needs llama-index-core: "
        "pip install 'compsearch[llama-index]'"
    ) from exc


class CompsearchEmbedding(BaseEmbedding):
    """compsearch's encoder as a LlamaIndex embedding model (loaded on first use)."""

    model: Any = None
    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, model: Any = None, **kwargs: Any):
        super().__init__(model=model, model_name=str(model or "compsearch-default"), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "CompsearchEmbedding"

    @property
    def encoder(self):
        if self._encoder is None:
            from ..embedders import get_encoder

            self._encoder = get_encoder(self.model)
        return self._encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encoder.encode([query], kind="query")[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encoder.encode([text], kind="document")[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode(list(texts), kind="document").tolist() if texts else []

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


class CompsearchRetriever(BaseRetriever):
    """Search an existing compsearch index; returns ``NodeWithScore`` best first."""

    def __init__(
        self,
        index: str | Path = ".compsearch",
        k: int = 4,
        where: dict | None = None,
        rerank: Any = "auto",
        encoder: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        from .. import Retriever

        self.k, self.where, self.rerank = k, where, rerank
        self._retriever = Retriever.open(index, encoder, must_exist=True)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._retriever.search(
            query_bundle.query_str, k=self.k, where=self.where, rerank=self.rerank
        )
        return [
            NodeWithScore(
                node=TextNode(
                    id_=h.doc_id or str(h.id),
                    text=h.text,
                    metadata=dict(
                        h.metadata,
                        source=h.source,
                        start_line=h.start_line,
                        end_line=h.end_line,
                        section=h.section,
                    ),
                ),
                score=h.score,
            )
            for h in hits
        ]
