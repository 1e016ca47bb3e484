"""Fusing a dense and a lexical ranking into one (hybrid search).

Two standard ways, both over each side's full-corpus top-N:

* **Reciprocal rank fusion** (Cormack et al., 2009): ``sum 1 / (k + rank)``. Uses ranks only, so
  the two scores' scales never matter; a chunk found by one side only still gets its share.
* **Normalised score combination**: each side's scores min-max scaled to [0, 1] over its own
  top-N, then a weighted sum; a chunk missing from one side gets 0 there. Keeps how *much* better
  the top hit is, which ranks lose.

Which one is the default is decided by measurement (benchmarks/results/search-modes.md).
"""

from __future__ import annotations

from typing import Sequence

RRF_K = 60


def rrf(
    rankings: Sequence[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[float, int]]:
    """``(score, id)`` best first; ``rankings`` are id lists, best first (rank 1 = first)."""
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[int, float] = {}
    first_seen: dict[int, int] = {}
    for w, ranking in zip(weights, rankings):
        for rank, i in enumerate(ranking, 1):
            scores[i] = scores.get(i, 0.0) + w / (k + rank)
            first_seen.setdefault(i, len(first_seen))
    return sorted(((s, i) for i, s in scores.items()), key=lambda t: (-t[0], first_seen[t[1]]))


def normalised(scored: Sequence[tuple[float, int]]) -> dict[int, float]:
    """Min-max scale ``(score, id)`` pairs to [0, 1] (all equal -> all 1)."""
    if not scored:
        return {}
    values = [s for s, _ in scored]
    lo, hi = min(values), max(values)
    span = hi - lo
    return {i: (1.0 if span <= 0 else (s - lo) / span) for s, i in scored}


def score_fusion(
    lists: Sequence[Sequence[tuple[float, int]]], weights: Sequence[float] | None = None
) -> list[tuple[float, int]]:
    """``(score, id)`` best first: weighted sum of each list's min-max normalised scores."""
    weights = weights or [1.0 / len(lists)] * len(lists)
    if len(weights) != len(lists):
        raise ValueError("one weight per list")
    scores: dict[int, float] = {}
    first_seen: dict[int, int] = {}
    for w, scored in zip(weights, lists):
        for i, s in normalised(scored).items():
            scores[i] = scores.get(i, 0.0) + w * s
            first_seen.setdefault(i, len(first_seen))
    return sorted(((s, i) for i, s in scores.items()), key=lambda t: (-t[0], first_seen[t[1]]))
