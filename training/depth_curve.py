"""The compute-optimal depth curve (issue 13, item 3): quality and speed per student depth.

Every depth L was trained by ``training/depth.sh L`` (the cpu-depth recipe: the same wall-clock
budget per stage at every depth, the same data, the same starting encoder) and evaluated into
``training/results/eval-depth<L>/`` by the suite (``quality-quick.json``: the five retrieval tasks,
quick profile; ``faq/quality-full.json``: the FAQ dev task, full profile). Speed comes from
``benchmarks/results/throughput-depth.json`` (texts/s and query p50 against all-MiniLM-L6-v2 in
the same run). This module only gathers those files into one table and one plot; it measures
nothing itself, so a depth without its evaluation folder is listed as missing. Where the evaluations
kept per-query scores (``run --per-query``), every depth is also compared with the reference depth
(``--reference``, the shipped 8) query by query: a paired bootstrap of the mean difference over the
six tasks (``benchmarks/mteb_suite/paired.py``).

    python -m training.depth_curve            # -> training/results/depth-curve.{md,json,png}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from benchmarks.mteb_suite import paired as P

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "training" / "results"
THROUGHPUT = ROOT / "benchmarks" / "results" / "throughput-depth.json"
TASKS = [
    ("DebianPackageRetrieval", "Debian"),
    ("ManPageRetrieval", "man pages"),
    ("PythonDocsRetrieval", "Python docs"),
    ("FoldocRetrieval", "FOLDOC"),
    ("WordNetNounRetrieval", "WordNet"),
    ("FaqRetrieval", "FAQ (full)"),
]


def _scores(path: Path) -> dict[str, float]:
    """task -> main score of the one model in a suite results file (empty if it is missing)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out: dict[str, float] = {}
    for per_task in data.get("results", {}).values():
        for task, r in per_task.items():
            if isinstance(r, dict) and "scores" in r:
                out[task] = float(r["scores"]["main_score"])
    return out


def _per_query(path: Path) -> dict[str, dict[str, float]]:
    """task -> query -> nDCG@10 of the one model in a suite results file (empty without --per-query)."""
    if not path.is_file():
        return {}
    return {t: q for tasks in P.load_per_query([path]).values() for t, q in tasks.items()}


def _steps(folder: Path) -> int | None:
    f = folder / "scl-summary.json"
    return json.loads(f.read_text()).get("steps") if f.is_file() else None


def gather(results: Path = RESULTS, throughput: Path = THROUGHPUT, reference: int = 8) -> dict:
    """Rows per depth found under ``results`` (folders ``eval-depth<L>``, nothing after the L)."""
    speed: dict[int, dict] = {}
    mini = None
    if throughput.is_file():
        t = json.loads(throughput.read_text())
        mini = t.get("minilm")
        for r in t.get("rows", []):
            if r["weights"] == t.get("default_dtype"):
                speed[int(r["depth"])] = r
    rows = []
    per_query: dict[int, dict] = {}
    for folder in sorted(results.glob("eval-depth*")):
        m = re.fullmatch(r"eval-depth(\d+)", folder.name)
        if not m:
            continue  # e.g. eval-depth8-qa: a later round, not a point of the equal-budget curve
        depth = int(m.group(1))
        scores = {
            **_scores(folder / "quality-quick.json"),
            **_scores(folder / "faq" / "quality-full.json"),
        }
        per_query[depth] = {
            **_per_query(folder / "quality-quick.json"),
            **_per_query(folder / "faq" / "quality-full.json"),
        }
        sp = speed.get(depth)
        rows.append(
            {
                "depth": depth,
                "scores": {t: scores.get(t) for t, _ in TASKS},
                "scl_steps": _steps(folder),
                "texts_per_s_x_minilm": (sp["texts_per_s"] / mini["texts_per_s"])
                if sp and mini
                else None,
                "query_p50_x_minilm": (sp["query_p50_ms"] / mini["query_p50_ms"])
                if sp and mini
                else None,
            }
        )
    rows.sort(key=lambda r: r["depth"])
    for r in rows:
        got = [v for v in r["scores"].values() if v is not None]
        r["mean"] = sum(got) / len(got) if len(got) == len(TASKS) else None
        ref, mine = per_query.get(reference, {}), per_query[r["depth"]]
        complete = all(t in ref and t in mine for t, _ in TASKS)
        r["vs_reference"] = (
            P.paired_bootstrap(mine, ref) if complete and r["depth"] != reference else None
        )
    where = None
    if throughput.is_file():
        where = str(throughput.relative_to(ROOT) if throughput.is_relative_to(ROOT) else throughput)
    return {"rows": rows, "throughput": where, "reference": reference}


def _f(v, fmt=".3f"):
    return "—" if v is None else format(v, fmt).lstrip("0") if fmt == ".3f" else format(v, fmt)


def markdown(d: dict) -> str:
    head = (
        ["depth", "SCL steps"]
        + [name for _, name in TASKS]
        + ["mean", f"vs depth {d.get('reference', 8)}: mean diff [95% CI], p"]
        + ["texts/s x MiniLM", "query x MiniLM"]
    )
    lines = [
        "# Quality and speed per student depth, at equal wall-clock budget",
        "",
        "`python -m training.depth_curve` from `training/results/eval-depth<L>/` (each made by "
        "`training/depth.sh L` and the suite commands in its README) and "
        f"`{d['throughput']}`. Dense nDCG@10; quick profile but FAQ (full profile). One seed per depth; "
        "the paired column bootstraps the queries of every task (10,000 resamples, the same draw for both "
        "depths) where per-query scores were kept.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in d["rows"]:
        cells = [str(r["depth"]), str(r["scl_steps"] or "—")]
        cells += [_f(r["scores"][t]) for t, _ in TASKS]
        v = r.get("vs_reference")
        cells += [
            _f(r["mean"]),
            f"{v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}], p {v['p']:.3f}"
            if v
            else "—",
            _f(r["texts_per_s_x_minilm"], ".2f"),
            _f(r["query_p50_x_minilm"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in d["rows"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for task, name in TASKS:
        pts = [(r["depth"], r["scores"][task]) for r in rows if r["scores"][task] is not None]
        if pts:
            a.plot(*zip(*pts), "o-", label=name)
    a.set(xlabel="student layers", ylabel="nDCG@10 (dense)", title="quality at equal budget")
    a.legend(fontsize=7)
    pts = [(r["depth"], r["texts_per_s_x_minilm"]) for r in rows if r["texts_per_s_x_minilm"]]
    if pts:
        b.plot(*zip(*pts), "o-", label="texts/s x MiniLM")
        b.axhline(1.0, color="grey", ls="--")
    b.set(xlabel="student layers", ylabel="x all-MiniLM-L6-v2", title="encoding speed")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--out", default=str(RESULTS / "depth-curve"), show_default=True, help="Path stem.")
@click.option("--reference", default=8, show_default=True, help="Depth the others are paired with.")
def main(out: str, reference: int) -> None:
    d = gather(reference=reference)
    if not d["rows"]:
        raise click.ClickException(f"no eval-depth<L> folders in {RESULTS}")
    stem = Path(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(d, indent=1) + "\n")
    md = markdown(d)
    Path(f"{stem}.md").write_text(md)
    plot(d, Path(f"{stem}.png"))
    click.echo(md)


if __name__ == "__main__":
    main()
