"""Round-trip filtering of generated questions, and their hard negatives, by BM25 within a pool.

A question written for a passage is worth training on only if it points back to that passage:
``judge`` keeps it when BM25 (bm25s, English stopwords, Snowball stemmer, as ``training.builders``)
over the passages of its pool ranks its own passage in the top ``k``. A question generated for
several passages ("What is the purpose of this function?") names none of them and is dropped
first (``training.synth.drop_repeated_queries``). ``mine_negatives`` then gives each kept pair one
hard negative from the same pool with ``training.builders.mine_bm25`` (the positive's text and
every document of its unit skipped, the false-negative rule qdata uses).

Pools are a source's passages, except that all man-page options are one pool (one page has too
few options), exactly as ``training.qdata`` mines its negatives.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

SEED = 4244


def kind_of(source: str) -> str:
    return source.split(":")[0]


def pool_of(source: str) -> str:
    """The passages a question competes against: its source, all man options together (as qdata)."""
    return "manopt" if kind_of(source) == "manopt" else source


def pools_of(rows: list[dict]) -> dict[str, list[dict]]:
    pools: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        pools[pool_of(r["source"])].append(r)
    return pools


def bm25_ranks(
    questions: list[str], targets: list[int], docs: list[str], k: int
) -> list[int | None]:
    """0-based rank of ``docs[targets[i]]`` in BM25's top ``k`` for ``questions[i]`` (None: not there).

    Only documents with a positive score count as retrieved; an all-stopword question retrieves none.
    """
    import bm25s
    import Stemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    toks = bm25s.tokenize(
        questions, stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False
    )
    ranks: list[int | None] = [None] * len(questions)
    todo = [i for i, t in enumerate(toks) if t]
    if todo:
        res, scores = retriever.retrieve(
            [toks[i] for i in todo], k=min(k, len(docs)), show_progress=False, n_threads=0
        )
        for i, row, srow in zip(todo, res, scores):
            hits = [int(c) for c, sc in zip(row, srow) if sc > 0]
            ranks[i] = hits.index(targets[i]) if targets[i] in hits else None
    return ranks


def judge(rows: list[dict], pools: dict[str, list[dict]], k: int) -> list[dict]:
    """Every row with ``bm25_rank`` and ``kept``; ``reason`` becomes ``repeated`` or
    ``bm25_not_top{k}`` for a clean question that fails (rows: ``{id, question|None, reason,
    positive, source}``; pools: every passage of each pool, ``positive`` among them)."""
    from .synth import drop_repeated_queries

    ok = [{**r, "query": r["question"]} for r in rows if r["question"]]
    unique = {x["id"] for x in drop_repeated_queries(ok, Counter({"ok": len(ok)}))}
    by: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by[pool_of(r["source"])].append(r)
    rank: dict[str, int | None] = {}
    for pool, group in by.items():
        docs = list(dict.fromkeys(p["positive"] for p in pools[pool]))
        where = {d: i for i, d in enumerate(docs)}
        got = bm25_ranks(
            [r["question"] for r in group], [where[r["positive"]] for r in group], docs, k
        )
        rank.update((r["id"], g) for r, g in zip(group, got))
    out = []
    for r in rows:
        reason = r["reason"]
        if r["question"] and r["id"] not in unique:
            reason = "repeated"
        elif r["question"] and rank.get(r["id"]) is None:
            reason = f"bm25_not_top{k}"
        out.append({**r, "reason": reason, "bm25_rank": rank.get(r["id"]), "kept": reason == "ok"})
    return out


def mine_negatives(
    kept: list[dict], pools: dict[str, list[dict]], prefix: str = "d2q"
) -> tuple[list[dict], Counter]:
    """SCL triples ``{query, positive, negative, source: "<prefix>:<source>", unit, ...}``."""
    from .builders import mine_bm25

    pairs = [
        {
            "query": r["question"],
            "positive": r["positive"],
            "source": pool_of(r["source"]),
            "_source": r["source"],
            "unit": r["unit"],
            "package": r.get("package"),
            "bm25_rank": r["bm25_rank"],
            "passage_id": r["id"],
        }
        for r in kept
    ]
    extra = [
        {"text": p["positive"], "source": pool, "unit": p["unit"]}
        for pool in sorted({x["source"] for x in pairs})
        for p in pools[pool]
    ]
    triples, stats = mine_bm25(pairs, seed=SEED, extra_docs=extra)
    return [
        {
            **{k: v for k, v in t.items() if k != "_source"},
            "source": f"{prefix}:{t['_source']}",
            "split": "train",
        }
        for t in triples
    ], stats


def keep_counts(judged: list[dict]) -> dict:
    """Passages, clean questions and kept pairs per kind, with the keep rate of clean questions."""
    by: dict[str, Counter] = defaultdict(Counter)
    for r in judged:
        c = by[kind_of(r["source"])]
        c["passages"] += 1
        c["questions"] += bool(r["question"])
        c["kept"] += bool(r["kept"])
    return {
        kind: {**c, "keep_rate": round(c["kept"] / c["questions"], 3) if c["questions"] else None}
        for kind, c in sorted(by.items())
    }
