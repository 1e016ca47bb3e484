"""Results files: JSON (with machine info), a markdown report and a per-task bar chart."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

# Metrics kept per task type (the main score comes first).
KEPT_METRICS = {
    "Retrieval": ("ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10", "map_at_10"),
    "Reranking": ("map_at_1000", "mrr_at_10", "ndcg_at_10"),
    "STS": ("cosine_spearman", "cosine_pearson", "spearman", "pearson"),
    "Classification": ("accuracy", "f1", "f1_weighted"),
    "Clustering": ("v_measure", "v_measure_std", "ami"),
    "PairClassification": ("max_ap", "max_f1", "max_accuracy"),
}
TYPE_ORDER = ("Retrieval", "Reranking", "STS", "Classification", "PairClassification", "Clustering")


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Where and with what the numbers were measured."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        import torch

        threads = torch.get_num_threads()
        cuda = torch.cuda.is_available()
    except ImportError:
        threads, cuda = None, False
    commit = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": mem_gb,
        "torch_threads": threads,
        "cuda": cuda,
        "git_commit": commit,
        "packages": {
            d: _version(d)
            for d in (
                "mteb",
                "torch",
                "transformers",
                "sentence-transformers",
                "bm25s",
                "numpy",
                "scikit-learn",
                "datasets",
                "compsearch",
            )
        },
    }


def pick_scores(task_type: str, scores: dict) -> dict:
    keep = KEPT_METRICS.get(task_type, ())
    out = {k: float(scores[k]) for k in keep if isinstance(scores.get(k), (int, float))}
    if isinstance(scores.get("main_score"), (int, float)):
        out["main_score"] = float(scores["main_score"])
    return out


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _task_order(results: dict) -> list[str]:
    tasks = results.get("tasks", {})
    return sorted(
        tasks,
        key=lambda t: (
            TYPE_ORDER.index(tasks[t]["type"]) if tasks[t]["type"] in TYPE_ORDER else 99,
            list(tasks).index(t),
        ),
    )


def _cell(results: dict, model: str, task: str, key: str = "main_score"):
    r = results.get("results", {}).get(model, {}).get(task)
    if not r or "error" in r or "skipped" in r:
        return None
    return r["scores"].get(key)


def averages(results: dict, model: str) -> dict[str, float | None]:
    """Mean main score per task type, and over all tasks the model ran."""
    tasks = results.get("tasks", {})
    by: dict[str, list[float]] = {}
    for t in tasks:
        v = _cell(results, model, t)
        if v is not None:
            by.setdefault(tasks[t]["type"], []).append(v)
    out = {k: sum(v) / len(v) for k, v in by.items()}
    allv = [x for v in by.values() for x in v]
    out["all"] = sum(allv) / len(allv) if allv else None
    out["n"] = len(allv)
    return out


def markdown(results: dict) -> str:
    models = list(results.get("models", {}))
    tasks = results.get("tasks", {})
    order = _task_order(results)
    m = results.get("machine", {})
    lines = [f"# compsearch quality suite — {results.get('profile')} profile", ""]
    lines.append(
        f"Last run {results.get('created', '?')} on {m.get('cpu', '?')} ({m.get('cpu_count')} cores, "
        f"{m.get('torch_threads')} torch threads), mteb {m.get('packages', {}).get('mteb')}, "
        f"torch {m.get('packages', {}).get('torch')}. Main score per task "
        "(retrieval nDCG@10, STS Spearman of cosine, classification accuracy, clustering V-measure); "
        "'—' = not run or not applicable (BM25 is retrieval only). Models run at different times merge into "
        "this file; compare them within one profile only."
    )
    lines.append("")
    head = "| task | type | size | " + " | ".join(models) + " |"
    lines += [head, "|" + "---|" * (3 + len(models))]
    for t in order:
        info = tasks[t]
        vals = []
        col = [_cell(results, mm, t) for mm in models]
        best = max((v for v in col if v is not None), default=None)
        for v in col:
            s = _fmt(v)
            vals.append(f"**{s}**" if v is not None and v == best and len(models) > 1 else s)
        lines.append(
            f"| {t} | {info['type']} | {info.get('size', '')} | " + " | ".join(vals) + " |"
        )
    avgs = {mm: averages(results, mm) for mm in models}
    types = [ty for ty in TYPE_ORDER if any(tasks[t]["type"] == ty for t in tasks)]
    for ty in types:
        lines.append(
            f"| *mean {ty}* | | | " + " | ".join(_fmt(avgs[mm].get(ty)) for mm in models) + " |"
        )
    lines.append(
        "| *mean of tasks run* | | | "
        + " | ".join(f"{_fmt(avgs[mm]['all'])} ({avgs[mm]['n']})" for mm in models)
        + " |"
    )
    sts = [t for t in order if tasks[t]["type"] == "STS"]
    if sts:
        lines += [
            "",
            "STS detail (Spearman / Pearson of cosine similarity):",
            "",
            "| task | " + " | ".join(models) + " |",
            "|" + "---|" * (1 + len(models)),
        ]
        for t in sts:
            cells = []
            for mm in models:
                sp, pe = (
                    _cell(results, mm, t, "cosine_spearman"),
                    _cell(results, mm, t, "cosine_pearson"),
                )
                cells.append("—" if sp is None else f"{sp:.3f} / {pe:.3f}")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    ret = [t for t in order if tasks[t]["type"] == "Retrieval"]
    if ret:
        lines += [
            "",
            "Retrieval detail (Recall@10 / Recall@100):",
            "",
            "| task | " + " | ".join(models) + " |",
            "|" + "---|" * (1 + len(models)),
        ]
        for t in ret:
            cells = []
            for mm in models:
                r10, r100 = (
                    _cell(results, mm, t, "recall_at_10"),
                    _cell(results, mm, t, "recall_at_100"),
                )
                cells.append("—" if r10 is None else f"{r10:.3f} / {r100:.3f}")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Models:",
        "",
        "| model | spec | dim | params | fingerprint | load s | eval s |",
        "|---|---|---|---|---|---|---|",
    ]
    for mm, info in results.get("models", {}).items():
        ev = sum(r.get("eval_s", 0) for r in results.get("results", {}).get(mm, {}).values())
        params = info.get("n_parameters")
        lines.append(
            f"| {mm} | `{info.get('spec')}` | {info.get('dim', '—')} | "
            f"{'—' if not params else f'{params / 1e6:.1f}M'} | `{str(info.get('fingerprint', info.get('revision', '')))[:12]}` | "
            f"{info.get('load_s', 0):.1f} | {ev:.0f} |"
        )
    errs = [
        (mm, t, r["error"])
        for mm, rs in results.get("results", {}).items()
        for t, r in rs.items()
        if "error" in r
    ]
    if errs:
        lines += ["", "Errors:", ""] + [f"- {mm} / {t}: {e}" for mm, t, e in errs]
    srcs = [(t, tasks[t].get("sources", [])) for t in order if tasks[t].get("sources")]
    if srcs:
        lines += ["", "Task data (built from these exact package versions):", ""]
        for t, ss in srcs:
            lines.append(
                f"- {t}: "
                + ", ".join(
                    f"{s['registry']} {s['name']} {s['version']}"
                    + (
                        ""
                        if s.get("pinned") in (None, s["version"])
                        else f" (pin {s['pinned']} unavailable)"
                    )
                    for s in ss
                )
            )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path | None:
    """Grouped horizontal bars: one group per task, one bar per model (main score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results.get("models", {}))
    order = _task_order(results)
    if not models or not order:
        return None
    n_t, n_m = len(order), len(models)
    fig, ax = plt.subplots(figsize=(9, 0.45 * n_t * max(1.0, n_m / 3) + 1.5))
    h = 0.8 / n_m
    for j, mm in enumerate(models):
        ys, xs = [], []
        for i, t in enumerate(order):
            v = _cell(results, mm, t)
            if v is not None:
                ys.append(i + (j - (n_m - 1) / 2) * h)
                xs.append(v)
        ax.barh(ys, xs, height=h, label=mm)
    ax.set_yticks(range(n_t))
    ax.set_yticklabels([f"{t} ({results['tasks'][t]['type'][:5]})" for t in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("main score (nDCG@10 / Spearman / accuracy / V-measure)")
    ax.set_title(f"compsearch quality suite — {results.get('profile')} profile")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
