"""Per-query scores and paired comparisons: is a difference between two models more than noise?

``run --per-query`` keeps, for every retrieval task, each query's nDCG@10 (computed by pytrec_eval
from the ranking mteb saved, exactly as mteb computes its mean) under ``per_query`` in the results
JSON. Two models evaluated on the same tasks are then compared query by query:

- ``paired_bootstrap``: resample the queries of every task with replacement (the same draw for both
  models) and recompute the difference of the mean over tasks; the 95% interval and the share of
  resamples on the other side of zero (a two-sided p-value) say whether the difference is noise;
- ``sign_test``: the exact two-sided sign test over tasks (how often the same direction would
  happen under a fair coin);
- ``seed_bootstrap``: two training recipes, each run with several seeds: the difference of their seed
  means, with an interval that resamples the seeds of each recipe as well as the queries, so that the
  noise a seed makes counts as well as the noise of the query sample.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

K = 10


def per_query_ndcg(qrels: dict, ranking: dict, k: int = K) -> dict[str, float]:
    """nDCG@k of every query with a relevant document; a query with no ranking scores 0."""
    import pytrec_eval

    qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in qrels.items() if docs}
    run = {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in ranking.items()}
    measure = f"ndcg_cut_{k}"
    scores = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}"}).evaluate(run)
    return {q: round(float(scores.get(q, {}).get(measure, 0.0)), 6) for q in qrels}


def task_qrels(task) -> dict:
    """The relevance judgments of an offline retrieval task (loading its data if needed)."""
    if not getattr(task, "data_loaded", False) or not task.dataset:
        task.load_data()
    split = task.dataset["default"]["test"]
    return split["relevant_docs"]


def predictions_ranking(path: Path) -> dict:
    """The ranking mteb saved with ``prediction_folder`` (subset ``default``, split ``test``)."""
    saved = json.loads(Path(path).read_text())
    return saved["default"]["test"]


def per_query_scores(results: dict, label: str) -> dict[str, dict[str, float]]:
    """``{task: {query: nDCG@10}}`` of one model label in a results JSON from ``run --per-query``."""
    return {
        task: r["per_query"] for task, r in results.get(label, {}).items() if r.get("per_query")
    }


def paired_bootstrap(
    a: dict[str, dict[str, float]],
    b: dict[str, dict[str, float]],
    samples: int = 10000,
    seed: int = 0,
) -> dict:
    """Mean over tasks of (a - b), with a 95% bootstrap interval over queries resampled per task.

    Only tasks and queries both models have count; an empty intersection is an error."""
    tasks = sorted(set(a) & set(b))
    diffs = []
    for t in tasks:
        qs = sorted(set(a[t]) & set(b[t]))
        if qs:
            diffs.append(np.array([a[t][q] - b[t][q] for q in qs]))
    if not diffs:
        raise ValueError("the two models share no task with per-query scores")
    rng = np.random.default_rng(seed)
    boot = np.zeros(samples)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(samples, len(d)))
        boot += d[idx].mean(axis=1)
    boot /= len(diffs)
    observed = float(np.mean([d.mean() for d in diffs]))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    # two-sided: twice the smaller tail beyond zero, at most 1
    p = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    return {
        "tasks": len(diffs),
        "queries": int(sum(len(d) for d in diffs)),
        "diff": round(observed, 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "p": round(p, 4),
        "samples": samples,
    }


def seed_bootstrap(
    a_runs: list[dict[str, dict[str, float]]],
    b_runs: list[dict[str, dict[str, float]]],
    samples: int = 10000,
    seed: int = 0,
    matched: bool = False,
) -> dict:
    """Mean over seeds of recipe a minus that of recipe b (each seed's score: the mean over tasks of its
    per-task mean nDCG@10), with a 95% interval from a two-level bootstrap: every resample draws each
    recipe's seeds with replacement and each task's queries with replacement (one query draw shared by
    all runs, since they answer the same queries). With one seed per recipe it is ``paired_bootstrap``;
    with two, the seed level has few distinct draws, so the interval is wide where seeds disagree.

    ``matched``: ``a_runs[i]`` and ``b_runs[i]`` share seed i (the same data and order, as the arms of
    one ablation seed do), so seeds are drawn as pairs and a seed effect common to both recipes cancels;
    otherwise each recipe's seeds are drawn on their own.

    Only tasks and queries every run has count; none in common is an error."""
    runs = list(a_runs) + list(b_runs)
    if not a_runs or not b_runs:
        raise ValueError("each recipe needs at least one run")
    if matched and len(a_runs) != len(b_runs):
        raise ValueError("matched seeds need as many runs of a as of b")
    tasks = sorted(set.intersection(*(set(r) for r in runs)))
    rng = np.random.default_rng(seed)
    na, nb = len(a_runs), len(b_runs)
    pick_a = rng.integers(0, na, size=(samples, na))
    pick_b = pick_a if matched else rng.integers(0, nb, size=(samples, nb))
    boot, observed, queries, used = np.zeros(samples), 0.0, 0, 0
    for t in tasks:
        qs = sorted(set.intersection(*(set(r[t]) for r in runs)))
        if not qs:
            continue
        m = np.array([[r[t][q] for q in qs] for r in runs])  # runs x queries
        w = rng.multinomial(len(qs), np.full(len(qs), 1 / len(qs)), size=samples) / len(qs)
        per_run = w @ m.T  # samples x runs: each run's task mean under the query draw
        a_mean = np.take_along_axis(per_run[:, :na], pick_a, axis=1).mean(axis=1)
        b_mean = np.take_along_axis(per_run[:, na:], pick_b, axis=1).mean(axis=1)
        boot += a_mean - b_mean
        observed += m[:na].mean() - m[na:].mean()
        queries += len(qs)
        used += 1
    if not used:
        raise ValueError("the runs share no task with per-query scores")
    boot /= used
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    return {
        "tasks": used,
        "queries": queries,
        "seeds": [na, nb],
        "matched": matched,
        "diff": round(float(observed / used), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "p": round(p, 4),
        "samples": samples,
    }


def sign_test(diffs: list[float]) -> dict:
    """Exact two-sided sign test; ties are dropped."""
    pos = sum(1 for d in diffs if d > 0)
    neg = sum(1 for d in diffs if d < 0)
    n = pos + neg
    if n == 0:
        return {"positive": 0, "negative": 0, "p": 1.0}
    tail = sum(math.comb(n, i) for i in range(0, min(pos, neg) + 1)) / 2**n
    return {"positive": pos, "negative": neg, "p": min(1.0, 2 * tail)}


def compare(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict:
    """``paired_bootstrap(a, b)`` plus ``sign``: the sign test over the shared tasks' mean differences."""
    tasks = sorted(set(a) & set(b))
    diffs = [float(np.mean(list(a[t].values())) - np.mean(list(b[t].values()))) for t in tasks]
    return {**paired_bootstrap(a, b), "sign": sign_test(diffs)}


def load_per_query(paths) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {task: {query: nDCG@10}}}`` merged from results files of ``run --per-query``."""
    out: dict = {}
    for p in paths:
        results = json.loads(Path(p).read_text()).get("results", {})
        for label in results:
            out.setdefault(label, {}).update(per_query_scores(results, label))
    return out


def main(argv: list[str] | None = None) -> int:
    """Compare model labels pairwise on the queries they share:

    python -m benchmarks.mteb_suite.paired --eval quality-quick.json faq/quality-full.json \\
        --pair compsearch:a compsearch:b [--pair ...]
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.mteb_suite.paired", description=main.__doc__
    )
    ap.add_argument("--eval", nargs="+", required=True, help="results JSONs from run --per-query")
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A", "B"))
    ap.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    a = ap.parse_args(argv)
    missing = [p for p in a.eval if not Path(p).is_file()]
    if missing:
        print(f"error: no results file at {', '.join(missing)}", file=sys.stderr)
        return 2
    scores = load_per_query(a.eval)
    rows = []
    for x, y in a.pair:
        lost = [label for label in (x, y) if not scores.get(label)]
        if lost:
            print(
                f"error: no per-query scores for {', '.join(lost)} (run --per-query)",
                file=sys.stderr,
            )
            return 2
        rows.append({"a": x, "b": y, **compare(scores[x], scores[y])})
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| a | b | a − b | 95% interval | p | tasks a > b | sign-test p |")
    print("|---|---|---:|---|---:|---|---:|")
    for r in rows:
        s = r["sign"]
        print(
            f"| {r['a']} | {r['b']} | {r['diff']:+.3f} | [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | "
            f"{r['p']:.3f} | {s['positive']} of {s['positive'] + s['negative']} | {s['p']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
