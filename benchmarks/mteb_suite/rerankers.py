"""The memory-token rerankers on the suite's retrieval tasks: dense and hybrid, with and without.

    OMP_NUM_THREADS=1 python -m benchmarks.mteb_suite.rerankers --profile quick

Like ``search_modes`` (same task samples, seed, token cap and vector cache), this measures
compsearch's own search path: each task's sampled corpus goes into a real ``Retriever`` index,
every query is searched through ``Retriever.search_vectors`` in ``dense`` and the default
``hybrid`` mode, once without reranking (top 10) and once per reranker, which re-scores the top
``RERANK_DEPTH`` (20) candidates: ``maxsim`` with fp16 and with int8 stored states, and
``likelihood`` (stored fp16 states). nDCG@10 by ``pytrec_eval``. From the same runs, the reranker's
score fused with the first stage's (min-max normalised, weights ``FUSED_WEIGHTS`` on the reranker)
is scored too: whether the signal helps as an addition where it loses as a replacement.

Cost control (the shipped 30-layer encoder is slow on one CPU thread): one encoder forward gives
each text's vector and memory states, cached under the suite's cache folder (``rerankers/``); the
document vectors of ``search_modes``' cache are reused when it has them, and then only the
documents among some query's top 20 in either mode are encoded for their states. Only those
candidates' states are written to the benchmark index (the others are never re-scored, so this
changes nothing). Latency: the wall time of one ``search_vectors`` call per query, with the
reranker minus without it (p50 / p95 over queries): what a reranker adds to a query whose vector
and memory states one forward already made. The likelihood reranker without stored states
(candidates encoded at query time) is timed on the first few queries of each task only.

Writes ``benchmarks/results/rerankers-<profile>.{json,md}`` (``--stem`` to change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import builders as B
from . import sources as S
from .search_modes import (
    RETRIEVAL_TASKS,
    _doc_text,
    _encode_cached,
    cached_vectors_path,
    ndcg10,
    retrieval_sample,
)
from .tasks import PROFILES

TASKS = RETRIEVAL_TASKS + ["FaqRetrieval"]
BASES = {"dense": "dense", "hybrid": None}  # None: the default mode (hybrid, score fusion, w .3)
RERANKERS = ("maxsim-fp16", "maxsim-int8", "likelihood")
FUSED_WEIGHTS = (0.2, 0.5)  # reranker's share when fused with the first-stage score
NO_STATES_QUERIES = 1  # likelihood with candidates encoded at query time: timed on this many
OUT = Path(__file__).resolve().parents[1] / "results"


def _states_cached(enc, texts: list[str], kind: str, cache: Path, tag: str):
    """``(vectors, raw memory states)`` of ``texts``, one forward, cached as .npy files."""
    cap = getattr(enc, "max_tokens", None)  # the profile's token cap (models.TokenCapped)
    key = hashlib.sha256(json.dumps([enc.fingerprint, cap, kind, texts]).encode()).hexdigest()[:20]
    vpath, spath = cache / f"{tag}-{kind}-vec-{key}.npy", cache / f"{tag}-{kind}-mem-{key}.npy"
    if vpath.is_file() and spath.is_file():
        return np.load(vpath), np.load(spath)
    if not texts:
        return None, None
    vecs, states = enc.encode_states(texts, kind=kind, max_length=cap)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(vpath, vecs)
    np.save(spath, states)
    return vecs, states


def _with_states(r, ids: list[int], states, dtype: str) -> None:
    """Give chunks ``ids`` their stored states and record the option, as an index built with
    ``--memory-states`` holds them (for the candidates only: see the module docstring)."""
    from compsearch import memstates
    from compsearch.indexdir import transaction
    from compsearch.indexing import IndexReport, _Recorded, finish

    with transaction(r.root) as tx:
        memstates.record(tx.store.db, dtype)
        memstates.write(tx.store.db, ids, states, dtype)
        r._reload(finish(tx, _Recorded(tx.manifest["encoder"]), IndexReport()))


def _search(r, qvec, qtext, k, mode, rerank):
    t = time.perf_counter()
    hits = r.search_vectors(qvec[None], k, mode=mode, queries=[qtext], rerank=rerank)[0]
    return hits, time.perf_counter() - t


def evaluate_task(name, enc, profile, cache, work, seed=B.SEED, max_queries=None) -> dict:
    from compsearch import Retriever
    from compsearch.fusion import score_fusion
    from compsearch.rerank_late import RERANK_DEPTH, LikelihoodReranker, MaxSimReranker

    queries, corpus, qrels = retrieval_sample(name, profile, seed)
    if max_queries:
        queries = queries[:max_queries]
        qrels = {q["id"]: qrels[q["id"]] for q in queries if q["id"] in qrels}
    texts = [_doc_text(c) for c in corpus]
    qtexts = [q["text"] for q in queries]
    mcache = cache / "rerankers"
    t0 = time.perf_counter()
    # document vectors: search_modes' cache when it has them; else one forward for all the
    # documents gives their vectors and states
    all_states = None
    if cached_vectors_path(enc, texts, "document", cache / "search-modes", name).is_file():
        dvecs = _encode_cached(enc, texts, "document", cache / "search-modes", name)
    else:
        dvecs, all_states = _states_cached(enc, texts, "document", mcache, name)
    qvecs, qstates = _states_cached(enc, qtexts, "query", mcache, name)
    base = Retriever.open(work / f"{name}-base", enc)
    ids = base.add(texts, [{"source": c["id"]} for c in corpus], vectors=dvecs)
    doc_of = dict(zip(ids, (c["id"] for c in corpus)))
    row_of = {i: n for n, i in enumerate(ids)}
    # pass 1: first-stage candidates (no reranking) and their latency
    runs: dict = {}
    lat: dict = {}
    first: dict = {}  # (mode, query) -> [(first-stage score, chunk id)] of the top RERANK_DEPTH
    need: set[int] = set()
    for label, mode in BASES.items():
        run, times = {}, []
        for qi, q in enumerate(queries):
            hits, dt = _search(base, qvecs[qi], q["text"], RERANK_DEPTH, mode, None)
            need.update(h.id for h in hits)
            first[label, qi] = [(h.score, h.id) for h in hits]
            hits10, dt = _search(base, qvecs[qi], q["text"], 10, mode, None)
            times.append(dt)
            run[q["id"]] = {doc_of[h.id]: float(10 - n) for n, h in enumerate(hits10)}
        runs[label], lat[label] = run, times
    cand = sorted(need)
    if all_states is not None:
        dstates = all_states[[row_of[i] for i in cand]]
    else:
        cand_texts = [texts[row_of[i]] for i in cand]
        _, dstates = _states_cached(enc, cand_texts, "document", mcache, name)
    encode_s = time.perf_counter() - t0
    indexes = {}
    for dtype in ("fp16", "int8"):
        r = Retriever.open(work / f"{name}-{dtype}", enc)
        r.add(texts, [{"source": c["id"]} for c in corpus], vectors=dvecs)
        _with_states(r, cand, dstates, dtype)
        indexes[dtype] = r
    out: dict = {
        "n_queries": len(queries),
        "n_docs": len(corpus),
        "n_docs_with_states": len(cand),
        "encode_s": round(encode_s, 1),
        "modes": {},
    }
    qstate_of = dict(zip(qtexts, qstates))
    rerankers = {
        "maxsim-fp16": ("fp16", MaxSimReranker(qstate_of)),
        "maxsim-int8": ("int8", MaxSimReranker(qstate_of)),
        "likelihood": ("fp16", LikelihoodReranker()),
    }
    for label, mode in BASES.items():
        out["modes"][label] = _entry(runs[label], qrels, lat[label], None)
        _print(name, label, out["modes"][label])
        for rname, (dtype, reranker) in rerankers.items():
            r = indexes[dtype]
            _search(r, qvecs[0], qtexts[0], 10, mode, reranker)  # warm: loads the decoder
            run, added = {}, []
            fused: dict = {w: {} for w in FUSED_WEIGHTS}
            for qi, q in enumerate(queries):
                hits, dt = _search(r, qvecs[qi], q["text"], RERANK_DEPTH, mode, reranker)
                added.append(dt - lat[label][qi])
                run[q["id"]] = {doc_of[h.id]: float(10 - n) for n, h in enumerate(hits[:10])}
                for w in FUSED_WEIGHTS:  # the reranker's score as one more signal
                    top = score_fusion(
                        [first[label, qi], [(h.score, h.id) for h in hits]], [1 - w, w]
                    )
                    fused[w][q["id"]] = {
                        doc_of[i]: float(10 - n) for n, (_, i) in enumerate(top[:10])
                    }
            key = f"{label}+{rname}"
            out["modes"][key] = _entry(run, qrels, lat[label], added)
            _print(name, key, out["modes"][key])
            for w in FUSED_WEIGHTS:
                out["modes"][f"{key}@{w}"] = _entry(fused[w], qrels, lat[label], None)
                _print(name, f"{key}@{w}", out["modes"][f"{key}@{w}"])
    # likelihood without stored states: the candidates are encoded at query time
    times = []
    for qi in range(min(NO_STATES_QUERIES, len(queries))):
        _, dt = _search(base, qvecs[qi], qtexts[qi], 10, None, LikelihoodReranker())
        times.append(dt - lat["hybrid"][qi])
    out["likelihood_unstored_added_ms"] = [round(1000 * t, 1) for t in times]
    for r in [base, *indexes.values()]:
        r.close()
    return out


def _entry(run, qrels, base_lat, added) -> dict:
    e = {
        "ndcg_at_10": round(ndcg10(run, qrels), 5),
        "search_ms_p50": round(1000 * float(np.percentile(base_lat, 50)), 2),
    }
    if added is not None:
        e["added_ms_p50"] = round(1000 * float(np.percentile(added, 50)), 2)
        e["added_ms_p95"] = round(1000 * float(np.percentile(added, 95)), 2)
    return e


def _print(task, key, e) -> None:
    extra = f"  +{e['added_ms_p50']:.1f} ms p50" if "added_ms_p50" in e else ""
    print(f"  {task:24s} {key:22s} nDCG@10 {e['ndcg_at_10']:.4f}{extra}", flush=True)


def _cell(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def render(res: dict) -> str:
    cols = [b for b in BASES] + [f"{b}+{r}" for b in BASES for r in RERANKERS]
    lines = [
        f"# Memory-token rerankers: nDCG@10 on the offline suite ({res['profile']} profile, "
        f"sample seed {res.get('seed', B.SEED)}, rerank depth {res['depth']})",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in res["commands"]) + "  ",
        f"Encoder: {res['encoder']['name']} (fingerprint {res['encoder']['fingerprint'][:12]}, "
        f"max {res['encoder']['max_tokens']} tokens); machine: {res['machine']}; {res['created']}",
        "",
        "| task | " + " | ".join(cols) + " |",
        "| --- | " + " | ".join("---:" for _ in cols) + " |",
    ]
    for task, t in res["tasks"].items():
        best = max(t["modes"][c]["ndcg_at_10"] for c in cols)
        cells = [
            f"**{t['modes'][c]['ndcg_at_10']:.3f}**"
            if t["modes"][c]["ndcg_at_10"] == best
            else f"{t['modes'][c]['ndcg_at_10']:.3f}"
            for c in cols
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if res["tasks"]:
        means = [
            np.mean([t["modes"][c]["ndcg_at_10"] for t in res["tasks"].values()]) for c in cols
        ]
        lines.append("| **mean** | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    fcols = [
        f"{b}+{r}@{w}" for b in BASES for r in ("maxsim-fp16", "likelihood") for w in FUSED_WEIGHTS
    ]
    fcols = [c for c in fcols if any(c in t["modes"] for t in res["tasks"].values())]
    if fcols and res["tasks"]:
        lines += [
            "",
            "The reranker's score as one more signal instead (`X@w`: the first stage's top "
            f"{res['depth']}, its score and the reranker's each min-max normalised, weight w on the "
            "reranker's; `compsearch.fusion.score_fusion`; computed from the same runs, not an "
            "option of compsearch):",
            "",
            "| task | " + " | ".join(list(BASES) + fcols) + " |",
            "| --- | " + " | ".join("---:" for _ in list(BASES) + fcols) + " |",
        ]
        for task, t in res["tasks"].items():
            vals = [t["modes"].get(c, {}).get("ndcg_at_10") for c in list(BASES) + fcols]
            lines.append(f"| {task} | " + " | ".join(_cell(v) for v in vals) + " |")
        means = [
            [t["modes"].get(c, {}).get("ndcg_at_10") for t in res["tasks"].values()]
            for c in list(BASES) + fcols
        ]
        means = [None if None in m else float(np.mean(m)) for m in means]
        lines.append("| **mean** | " + " | ".join(_cell(m) for m in means) + " |")
    rcols = [f"{b}+{r}" for b in BASES for r in RERANKERS]
    lines += [
        "",
        "Latency a reranker adds to one query (ms, p50 / p95 over queries; search with the "
        "reranker minus search without it), the search itself without reranking (p50), and the "
        "likelihood reranker when the index keeps no states (candidates encoded at query time; "
        "the first query or three of the task, hybrid):",
        "",
        "| task | "
        + " | ".join(rcols)
        + " | dense / hybrid search p50 | likelihood, no stored states |",
        "| --- | " + " | ".join("---:" for _ in rcols) + " | ---: | ---: |",
    ]
    for task, t in res["tasks"].items():
        m = t["modes"]
        lines.append(
            f"| {task} | "
            + " | ".join(f"{m[c]['added_ms_p50']:.1f} / {m[c]['added_ms_p95']:.1f}" for c in rcols)
            + f" | {m['dense']['search_ms_p50']:.1f} / {m['hybrid']['search_ms_p50']:.1f}"
            + f" | {', '.join(f'{x:.0f}' for x in t['likelihood_unstored_added_ms'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mteb_suite.rerankers", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--seed", type=int, default=B.SEED)
    p.add_argument("--max-queries", type=int, default=None, help="first N queries (smoke runs)")
    p.add_argument("--stem", default=None, help="output file name stem")
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch

    from compsearch.rerank_late import RERANK_DEPTH

    from .models import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    enc = load_model("compsearch", max_tokens=PROFILES[a.profile]["max_tokens"]).mteb_model.encoder
    stem = a.stem or f"rerankers-{a.profile}"
    out = Path(a.out)
    res = {
        "profile": a.profile,
        "seed": a.seed,
        "depth": RERANK_DEPTH,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commands": [
            "OMP_NUM_THREADS="
            + os.environ.get("OMP_NUM_THREADS", "?")
            + " python -m benchmarks.mteb_suite.rerankers "
            + shlex.join(argv or sys.argv[1:])
        ],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads "
        f"{torch.get_num_threads()}, encoder dtype {enc.dtype}",
        "encoder": {
            "name": enc.name,
            "fingerprint": enc.fingerprint,
            "max_tokens": getattr(enc, "max_tokens", enc.config.max_length),
        },
        "tasks": {},
    }
    if (out / f"{stem}.json").is_file():  # tasks run by an earlier command are kept
        old = json.loads((out / f"{stem}.json").read_text())
        if old.get("encoder", {}).get("fingerprint") == enc.fingerprint:
            res["tasks"] = old.get("tasks", {})
            res["commands"] = old.get("commands", []) + res["commands"]
    with tempfile.TemporaryDirectory() as work:
        for name in a.tasks.split(","):
            print(f"{name}: searching, encoding candidates, reranking", flush=True)
            res["tasks"][name] = evaluate_task(
                name, enc, a.profile, S.cache_dir(), Path(work), a.seed, a.max_queries
            )
            (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
            (out / f"{stem}.md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
