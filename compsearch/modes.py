"""Search modes: dense (vectors), lexical (BM25 over the whole corpus) and hybrid (both, fused).

Why three: dense search finds paraphrases but misses rare exact strings (an error code, a
function name, a CVE id); BM25 finds those but not paraphrases. Hybrid takes the full-corpus
top-N of *each* (not BM25 over the dense candidates, which can never bring back a chunk the dense
side missed) and fuses them (``fusion.py``). Filters apply to every side before ranking.

The default mode and fusion were chosen by measurement on the offline suite's retrieval tasks
(benchmarks/results/search-modes.md): hybrid with normalised-score fusion, dense weight 0.3,
scored nDCG@10 .708 on average over the five tasks against .637 for BM25 alone, .505 for dense
alone and .656 for RRF; it beat both dense and BM25 on each of the five tasks and was the best
mode on four (on WordNet, RRF with the same weight scored .587 against its .569). The
shipped encoder is weaker than BM25 on most of these tasks, which is why the lexical side gets
the larger share; RRF, which ignores how far ahead a BM25 hit is, lost to BM25 on three of five.

Everything here works on ``(score, chunk id)`` lists; ``retriever.py`` turns them into results.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import fusion as F
from .errors import CompsearchError

MODES = ("dense", "lexical", "hybrid")
FUSIONS = ("rrf", "score")
DEFAULT_MODE = "hybrid"
DEFAULT_FUSION = "score"
HYBRID_DEPTH = 100  # each side's top-N that hybrid fuses
DENSE_WEIGHT = 0.3  # the dense side's share in hybrid fusion
PROMOTE_MAX = 3  # identifier matches this rare go first in hybrid
EXACT_FILTER_MAX = 20_000  # filters matching fewer chunks are scored exactly

Hits = list[tuple[float, int]]


def resolve(mode: str | None, fusion: str | None, rerank) -> tuple[str, str, object]:
    """Validate ``mode``/``fusion``; the old ``rerank="hybrid"`` means ``mode="hybrid"``."""
    if rerank == "hybrid":  # before hybrid search existed this was a BM25 rerank
        if mode not in (None, "hybrid"):
            raise CompsearchError(
                f"rerank='hybrid' is the hybrid search mode; it cannot be "
                f"combined with mode={mode!r}"
            )
        mode, rerank = "hybrid", "auto"
    mode = mode or DEFAULT_MODE
    fusion = fusion or DEFAULT_FUSION
    if mode not in MODES:
        raise CompsearchError(f"unknown search mode {mode!r}; use {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise CompsearchError(f"unknown fusion {fusion!r}; use {', '.join(FUSIONS)}")
    return mode, fusion, rerank


def dense(
    store, index, qvecs: np.ndarray, n: int, allowed: np.ndarray | None, exact: bool = False
) -> list[Hits]:
    """Top ``n`` by inner product; ``exact`` re-scores approximate candidates from the store."""
    if allowed is not None and len(allowed) <= EXACT_FILTER_MAX:
        scores, ids = _exact_scores(store, qvecs, allowed, n, index.dim)
        exact = False
    else:
        scores, ids = index.search(qvecs, n, allowed)
    out = []
    for qi in range(len(qvecs)):
        hits = [(float(s), int(i)) for s, i in zip(scores[qi], ids[qi]) if i >= 0]
        if exact and hits:
            vecs = store.vectors([i for _, i in hits], index.dim)
            new = vecs @ np.asarray(qvecs[qi], dtype=np.float32)
            hits = sorted(((float(s), i) for s, (_, i) in zip(new, hits)), key=lambda t: -t[0])
        out.append(hits)
    return out


def lexical(store, queries: Sequence[str], n: int, where, roots: Sequence[str]) -> list[Hits]:
    return [store.lexical_search(q, n, where, roots) for q in queries]


def fuse(
    dense_hits: Hits,
    lexical_hits: Hits,
    fusion: str,
    literal: Sequence[int] | None = None,
    dense_weight: float | None = None,
) -> list[tuple[float, int, dict]]:
    """``(score, id, {"dense_score", "lexical_score"})`` best first.

    ``literal``: the few chunks that contain every identifier-like token of the query verbatim
    (``store.literal_matches``). They go first, in fused order. Rank fusion alone cannot promise
    that: a chunk ranked first by BM25 for ``ENOSPC`` but far down by the dense side loses to one
    ranked second by both. A rare identifier typed exactly is the strongest signal a query has.
    ``dense_weight`` in [0, 1] (default ``DENSE_WEIGHT``): the dense side's share; the lexical side
    gets the rest.
    """
    w = DENSE_WEIGHT if dense_weight is None else float(dense_weight)
    if not 0.0 <= w <= 1.0:
        raise CompsearchError(f"dense_weight must be between 0 and 1, not {dense_weight}")
    d = {i: s for s, i in dense_hits}
    lx = {i: s for s, i in lexical_hits}
    if fusion == "rrf":
        fused = F.rrf(
            [[i for _, i in dense_hits], [i for _, i in lexical_hits]], weights=[2 * w, 2 * (1 - w)]
        )
    else:
        fused = F.score_fusion([dense_hits, lexical_hits], weights=[w, 1 - w])
    if literal:
        first = set(literal) & set(lx)
        fused = [t for t in fused if t[1] in first] + [t for t in fused if t[1] not in first]
    return [(s, i, {"dense_score": d.get(i), "lexical_score": lx.get(i)}) for s, i in fused]


def _exact_scores(store, qvecs: np.ndarray, allowed: np.ndarray, k: int, dim: int):
    if len(allowed) == 0:
        return np.zeros((len(qvecs), 0), np.float32), np.zeros((len(qvecs), 0), np.int64)
    vecs = store.vectors(allowed.tolist(), dim)
    scores = qvecs @ vecs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, 1), allowed[top]


def query_vectors(retriever, queries, mode: str, rerank) -> tuple:
    """``(query vectors or None, reranker spec)`` for ``Retriever.search_batch``: lexical mode
    needs no vectors (unless a reranker object may use them); for ``"maxsim"`` the queries'
    memory states come from the same forward as their vectors, and travel in the reranker."""
    queries = list(queries)
    if mode == "lexical" and not hasattr(rerank, "rerank"):
        return None, rerank
    encoder = retriever.query_encoder
    if rerank == "maxsim" and hasattr(encoder, "encode_states"):
        from .rerank_late import MaxSimReranker

        vecs, states = encoder.encode_states(queries, kind="query")
        return vecs, MaxSimReranker(dict(zip(queries, states)))
    return encoder.encode(queries, kind="query"), rerank


def run(retriever, qvecs, k, where, mode, fusion, dense_weight, rerank, fetch, queries) -> list:
    """``Retriever.search_vectors``: the mode's hits, filtered, fused, fetched, reranked."""
    from .filters import parse
    from .rerank import get_reranker
    from .results import to_result

    mode, fusion, rerank = resolve(mode, fusion, rerank)
    if mode != "dense" and queries is None:
        raise CompsearchError(f"search mode {mode!r} needs the query texts")
    if mode != "lexical" and qvecs is None:
        raise CompsearchError(f"search mode {mode!r} needs query vectors")
    n_queries = len(queries) if queries is not None else len(qvecs)
    store, index = retriever._open_read()
    where, roots = parse(where), retriever.manifest.get("roots", [])
    reranker = get_reranker(rerank, exact_index=index.spec.exact)
    depth = getattr(reranker, "depth", None) or k * 4  # maxsim / likelihood: their own depth
    fetch = max(k, fetch or (depth if reranker is not None else k))
    late = hasattr(rerank, "rerank") or rerank in ("maxsim", "likelihood")
    allowed = store.ids_where(where, roots) if where and mode != "lexical" else None
    extras: list[dict] = [{} for _ in range(n_queries)]
    if mode == "dense":
        hits = dense(store, index, qvecs, fetch, allowed)
    elif mode == "lexical":
        hits = lexical(store, queries, fetch, where, roots)
        reranker = reranker if late else None  # BM25 order is final but for these
    else:
        depth = max(HYBRID_DEPTH, fetch)
        dense_hits = dense(store, index, qvecs, depth, allowed, exact=not index.spec.exact)
        lex = lexical(store, queries, depth, where, roots)
        hits, extras = [], []
        for q, d, lx in zip(queries, dense_hits, lex):
            literal = store.literal_matches(q, PROMOTE_MAX, where, roots)
            fused = fuse(d, lx, fusion, literal, dense_weight)[:fetch]
            hits.append([(s, i) for s, i, _ in fused])
            extras.append({i: e for _, i, e in fused})
        reranker = reranker if late else None  # fused order is final but for these
    out = []
    for qi in range(n_queries):
        records = store.get([i for _, i in hits[qi]])
        doc_map = store.doc_ids_for_chunks(list(records))
        results = [
            to_result(records[i], s, extras[qi].get(i), doc_map.get(i))
            for s, i in hits[qi]
            if i in records
        ]
        if reranker is not None:
            q = queries[qi] if queries else ""
            results = reranker.rerank(q, None if qvecs is None else qvecs[qi], results, retriever)
        out.append(results[:k])
    return out
