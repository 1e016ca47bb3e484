"""Search modes on the suite's retrieval tasks: dense, lexical, hybrid (RRF and score fusion).

    python -m benchmarks.mteb_suite.search_modes --profile quick

Unlike ``run`` (which scores an encoder through mteb's evaluator), this measures compsearch's own
search path end to end: each task's sampled corpus (the same sample, seed and token cap as the
suite's profile) is added to a real ``Retriever`` index, then every query is searched through
``Retriever.search_vectors`` in each mode, and nDCG@10 is computed with ``pytrec_eval`` (what
mteb uses). The corpus and queries are encoded once per task and every mode reuses the vectors,
so the encoder is the cost; vectors are cached under the suite's cache folder (keyed by the
encoder's fingerprint and the task sample). Latency is the wall time of one ``search_vectors``
call per query (search, fusion, reading the chunks), plus, reported separately, the time to
encode one query, which the dense and hybrid modes pay and lexical does not.

Writes ``benchmarks/results/search-modes.{json,md}``.
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
from .tasks import PROFILES, _subsample_retrieval

RETRIEVAL_TASKS = [
    "DebianPackageRetrieval",
    "WordNetNounRetrieval",
    "FoldocRetrieval",
    "ManPageRetrieval",
    "PythonDocsRetrieval",
]  # cheapest to encode first
MODES = {
    "dense": ("dense", None, None),
    "lexical": ("lexical", None, None),
    "hybrid-rrf": ("hybrid", "rrf", 0.5),
    "hybrid-score": ("hybrid", "score", 0.5),
    "hybrid-rrf-w.3": ("hybrid", "rrf", 0.3),
    "hybrid-score-w.3": ("hybrid", "score", 0.3),
}
OUT = Path(__file__).resolve().parents[1] / "results"


def _doc_text(c: dict) -> str:
    title = (c.get("title") or "").strip()
    return f"{title} {c['text']}".strip() if title else c["text"]


def retrieval_sample(name: str, profile: str, seed: int = B.SEED, tasks_root: Path | None = None):
    """``(queries, corpus, qrels)`` of a built retrieval task, drawn as the suite draws it for ``profile``."""
    _meta, files, _units = B.read_task((tasks_root or S.cache_dir() / "tasks") / name)
    settings = PROFILES[profile]
    return _subsample_retrieval(
        files, settings["retrieval_queries"], settings["retrieval_corpus"], seed
    )


def cached_vectors_path(enc, texts: list[str], kind: str, cache: Path, tag: str) -> Path:
    """Where ``_encode_cached`` keeps the vectors of ``texts`` for this encoder."""
    key = hashlib.sha256(
        json.dumps([enc.fingerprint, enc.config.max_length, kind, texts]).encode()
    ).hexdigest()[:20]
    return cache / f"{tag}-{kind}-{key}.npy"


def _encode_cached(enc, texts: list[str], kind: str, cache: Path, tag: str) -> np.ndarray:
    path = cached_vectors_path(enc, texts, kind, cache, tag)
    if path.is_file():
        return np.load(path)
    vecs = enc.encode(texts, kind=kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def ndcg10(run: dict, qrels: dict) -> float:
    import pytrec_eval

    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    per_q = ev.evaluate(run)
    return float(np.mean([per_q[q]["ndcg_cut_10"] if q in per_q else 0.0 for q in qrels]))


def evaluate_task(
    name: str,
    enc,
    profile: str,
    cache: Path,
    work: Path,
    tasks_root: Path | None = None,
    seed: int = B.SEED,
) -> dict:
    from compsearch import Retriever

    queries, corpus, qrels = retrieval_sample(name, profile, seed, tasks_root)
    t0 = time.perf_counter()
    dvecs = _encode_cached(enc, [_doc_text(c) for c in corpus], "document", cache, name)
    qtexts = [q["text"] for q in queries]
    qvecs = _encode_cached(enc, qtexts, "query", cache, name)
    encode_s = time.perf_counter() - t0
    # the time to encode one query, as a user pays it (first 20 queries, one at a time)
    one = []
    for q in qtexts[:20]:
        t = time.perf_counter()
        enc.encode([q], kind="query")
        one.append(time.perf_counter() - t)
    r = Retriever.open(work / name, enc)
    ids = r.add(
        [_doc_text(c) for c in corpus], [{"source": c["id"]} for c in corpus], vectors=dvecs
    )
    doc_of = dict(zip(ids, (c["id"] for c in corpus)))
    out: dict = {
        "n_queries": len(queries),
        "n_docs": len(corpus),
        "encode_s": round(encode_s, 1),
        "query_encode_ms_p50": round(1000 * float(np.median(one)), 2),
        "modes": {},
    }
    for label, (mode, fusion, weight) in MODES.items():
        run, lat = {}, []
        for qi, q in enumerate(queries):
            t = time.perf_counter()
            hits = r.search_vectors(
                qvecs[qi : qi + 1],
                10,
                mode=mode,
                fusion=fusion,
                dense_weight=weight,
                queries=[q["text"]],
                rerank=None,
            )[0]
            lat.append(time.perf_counter() - t)
            run[q["id"]] = {doc_of[h.id]: float(len(hits) - rank) for rank, h in enumerate(hits)}
        out["modes"][label] = {
            "ndcg_at_10": round(ndcg10(run, qrels), 5),
            "search_ms_p50": round(1000 * float(np.percentile(lat, 50)), 2),
            "search_ms_p95": round(1000 * float(np.percentile(lat, 95)), 2),
        }
        print(
            f"  {name:24s} {label:13s} nDCG@10 {out['modes'][label]['ndcg_at_10']:.4f}  "
            f"p50 {out['modes'][label]['search_ms_p50']:.1f} ms",
            flush=True,
        )
    r.close()
    return out


NOTES = "<!-- notes below are hand-written; the tables above are generated by the command -->"


def write_report(path: Path, text: str) -> None:
    """Write the generated ``text`` to ``path``, keeping the hand-written notes (from ``NOTES`` on) of
    the report it replaces: a rerun refreshes the tables, and the notes stay to be re-read."""
    try:
        old = path.read_text()
    except OSError:
        old = ""
    at = old.find(NOTES)
    path.write_text(text if at < 0 else text.rstrip("\n") + "\n\n" + old[at:])


def render(res: dict) -> str:
    labels = list(MODES)
    lines = [
        f"# Search modes: nDCG@10 on the offline suite ({res['profile']} profile, "
        f"sample seed {res.get('seed', B.SEED)})",
        "",
        f"Command: `{res['command']}`  ",
        f"Encoder: {res['encoder']['name']} "
        f"(fingerprint {res['encoder']['fingerprint'][:12]}, max {res['encoder']['max_tokens']}"
        f" tokens); machine: {res['machine']}; {res['created']}",
        "",
        "| task | " + " | ".join(labels) + " | suite BM25 (mteb bm25s) |",
        "| --- | " + " | ".join("---:" for _ in labels) + " | ---: |",
    ]
    for task, t in res["tasks"].items():
        best = max(t["modes"][m]["ndcg_at_10"] for m in labels)
        cells = [
            (
                f"**{t['modes'][m]['ndcg_at_10']:.3f}**"
                if t["modes"][m]["ndcg_at_10"] == best
                else f"{t['modes'][m]['ndcg_at_10']:.3f}"
            )
            for m in labels
        ]
        ref = res.get("suite_bm25", {}).get(task)
        lines.append(
            f"| {task} | " + " | ".join(cells) + f" | {'' if ref is None else f'{ref:.3f}'} |"
        )
    means = {
        m: np.mean([t["modes"][m]["ndcg_at_10"] for t in res["tasks"].values()]) for m in labels
    }
    lines.append("| **mean** | " + " | ".join(f"{means[m]:.3f}" for m in labels) + " | |")
    lines += [
        "",
        "Query latency (ms, one query per call, search + fusion + reading chunks; "
        "dense and hybrid also pay the query encoding below):",
        "",
        "| task | " + " | ".join(f"{m} p50 / p95" for m in labels) + " | encode one query p50 |",
        "| --- | " + " | ".join("---:" for _ in labels) + " | ---: |",
    ]
    for task, t in res["tasks"].items():
        lines.append(
            f"| {task} | "
            + " | ".join(
                f"{t['modes'][m]['search_ms_p50']:.1f} / {t['modes'][m]['search_ms_p95']:.1f}"
                for m in labels
            )
            + f" | {t['query_encode_ms_p50']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mteb_suite.search_modes", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--tasks", default=",".join(RETRIEVAL_TASKS))
    p.add_argument("--out", default=str(OUT))
    p.add_argument(
        "--seed",
        type=int,
        default=B.SEED,
        help="sample seed (default: the suite's; another one gives a held-out sample)",
    )
    p.add_argument("--stem", default="search-modes", help="output file name stem")
    p.add_argument(
        "--model",
        default="compsearch",
        help="compsearch encoder as a suite model spec (default: the shipped one; "
        "compsearch:<encoder folder> for another)",
    )
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from .models import load_model

    # the suite's own loader: the shipped default encoder with the profile's token cap
    if a.model != "compsearch" and not a.model.startswith("compsearch:"):
        p.error(f"--model {a.model!r}: give compsearch or compsearch:<encoder folder>")
    enc = load_model(a.model, max_tokens=PROFILES[a.profile]["max_tokens"]).mteb_model.encoder
    res = {
        "profile": a.profile,
        "seed": a.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "OMP_NUM_THREADS="
        + os.environ.get("OMP_NUM_THREADS", "?")
        + " python -m benchmarks.mteb_suite.search_modes "
        + shlex.join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads "
        f"{__import__('torch').get_num_threads()}",
        "encoder": {
            "name": enc.name,
            "fingerprint": enc.fingerprint,
            "max_tokens": enc.config.max_length,
        },
        "tasks": {},
    }
    try:
        if a.seed != B.SEED:
            raise KeyError("the suite's BM25 scores are for its own sample")
        quick = json.loads((Path(a.out) / f"quality-{a.profile}.json").read_text())
        res["suite_bm25"] = {
            t: v["scores"]["ndcg_at_10"] for t, v in quick["results"]["BM25"].items()
        }
    except (OSError, KeyError, ValueError):
        pass
    cache = S.cache_dir() / "search-modes"
    with tempfile.TemporaryDirectory() as work:
        for name in a.tasks.split(","):
            print(f"{name}: encoding and searching", flush=True)
            res["tasks"][name] = evaluate_task(name, enc, a.profile, cache, Path(work), seed=a.seed)
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{a.stem}.json").write_text(json.dumps(res, indent=2) + "\n")
            write_report(out / f"{a.stem}.md", render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
