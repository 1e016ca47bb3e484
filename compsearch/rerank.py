"""Reranking search candidates.

A reranker takes the candidates the vector index returned and reorders (or re-scores) them.
``ExactRescorer`` recomputes each candidate's score from the full-precision vector kept in the
store, which undoes the error of quantised or approximate indexes (IVF-SQ8, IVF-PQ, HNSW).
Hybrid search is no longer a reranker: BM25 over the dense candidates alone can never bring
back a chunk the dense search missed, so it is the ``hybrid`` search mode (``modes.py``), fusing
full-corpus dense and lexical rankings; ``rerank="hybrid"`` still works and means that mode.
``"maxsim"`` and ``"likelihood"`` re-score the top candidates from the chunks' memory-token
states (``rerank_late.py``).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .errors import CompsearchError


class Reranker(Protocol):
    def rerank(self, query: str, query_vector: np.ndarray, results: list, retriever) -> list:
        """Return ``results`` (SearchResult objects) reordered, best first, scores updated."""


class ExactRescorer:
    """Score = inner product of the query with the chunk's stored float32 vector."""

    def rerank(self, query, query_vector, results, retriever):
        if not results:
            return results
        store, index = retriever._open_read()
        vecs = store.vectors([r.id for r in results], index.dim)
        scores = vecs @ np.asarray(query_vector, dtype=np.float32)
        for r, s in zip(results, scores):
            r.score = float(s)
        return sorted(results, key=lambda r: -r.score)


def bm25_scores(query: str, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 (``bm25s``, English stopwords) of ``query`` against ``docs`` alone.

    A helper for evaluating small sets; search itself uses the store's FTS5 index.
    """
    import bm25s

    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(
        bm25s.tokenize(list(docs), stopwords="en", show_progress=False), show_progress=False
    )
    terms = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
    return retriever.get_scores(terms).tolist() if terms else [0.0] * len(docs)


def get_reranker(spec, *, exact_index: bool) -> Reranker | None:
    """Turn ``"auto" | "exact" | "maxsim" | "likelihood" | None | Reranker`` into a reranker."""
    if spec is None or spec == "none":
        return None
    if spec == "auto":
        return None if exact_index else ExactRescorer()
    if spec == "exact":
        return ExactRescorer()
    if spec == "maxsim":
        from .rerank_late import MaxSimReranker

        return MaxSimReranker()
    if spec == "likelihood":
        from .rerank_late import LikelihoodReranker

        return LikelihoodReranker()
    if spec == "hybrid":
        raise CompsearchError(
            "'hybrid' is a search mode now: use mode='hybrid' (compsearch query --mode hybrid)"
        )
    if hasattr(spec, "rerank"):
        return spec
    raise CompsearchError(f"unknown reranker {spec!r}; use auto, exact, maxsim, likelihood or none")
