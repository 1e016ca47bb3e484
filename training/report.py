"""The ablation report: collect finished runs, their diagnostics and their evaluation scores.

    python -m training report --arms quick-ctkd,quick-nll,quick-rc,quick-none \\
        --eval training/results/quality-quick.json --out training/results/ablation

Reads (nothing is computed here that a run or an evaluation did not measure):
- ``training/runs/<arm>/{stage1,ucl,scl}/summary.json`` and ``metrics.jsonl``: steps, samples, wall time,
  the loss over the first and last steps;
- ``.../<stage>/diagnostics/diagnostics.json``: effective dimension of held-out embeddings and the
  memory-token correlation after each stage;
- the evaluation JSON written by ``python -m benchmarks.mteb_suite run --models compsearch:DIR``, where
  each arm's encoder folder is named after the arm (model label ``compsearch:<arm>``);
- the baselines (BM25, MiniLM, training-free SmolLM2) from ``benchmarks/results/quality-<profile>.json``.

Writes ``<out>.json`` (everything, singular values included, so the report survives the runs folder),
``<out>.md`` and ``<out>-spectra.png``.

Where the evaluation kept per-query scores (``mteb_suite run --per-query``), arms named
``<prefix>-<objective>-s<seed>`` (``training/ablation.sh``) are also compared query by query: each
stage-1 objective against ``none`` and ``nll`` / ``rc`` against ``ctkd`` at the same seed (same data),
and the seeds of one objective against each other (the noise a seed alone makes), each with a paired
bootstrap over queries (``benchmarks/mteb_suite/paired.py``). Where two objectives both have at least
two seeds, they are also compared by their seed means, with an interval that resamples seeds (as
matched pairs where both ran the same seeds) as well as queries (``paired.seed_bootstrap``): the
comparison that can tell a stage-1 effect from seed noise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.mteb_suite import paired as P

STAGE_DIRS = ("stage1", "ucl", "scl")
BASELINES = ("BM25", "MiniLM-L6", "SmolLM2-135M-mean", "SmolLM2-135M-last", "compsearch")
BASELINE_NAMES = {"compsearch": "compsearch default (as shipped when the baselines were run)"}


def _loss_window(metrics: Path, n: int = 5) -> dict:
    rows = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if metrics.is_file()
        else []
    )
    losses = [r["loss"] for r in rows if "loss" in r]
    if not losses:
        return {}
    return {
        "first": sum(losses[:n]) / len(losses[:n]),
        "last": sum(losses[-n:]) / len(losses[-n:]),
        "steps_logged": len(losses),
        "mean_step_s": round(sum(r.get("sec", 0) for r in rows) / len(rows), 2),
    }


def collect_arm(runs: Path, name: str) -> dict:
    arm = {"name": name, "stages": {}}
    for stage in STAGE_DIRS:
        d = runs / name / stage
        if not (d / "summary.json").is_file():
            continue
        summary = json.loads((d / "summary.json").read_text())
        info = {
            "stage": summary.get("stage"),
            "steps": summary.get("steps"),
            "items": summary.get("items"),
            "wall_seconds": summary.get("wall_seconds"),
            "loss": _loss_window(d / "metrics.jsonl"),
        }
        diag = d / "diagnostics" / "diagnostics.json"
        if diag.is_file():
            dj = json.loads(diag.read_text())
            sp, mc = dj["spectrum"], dj["memory_correlation"]
            info["effective_dim"] = {
                k: sp[k]
                for k in (
                    "n",
                    "dim",
                    "above_1pct",
                    "above_10pct",
                    "entropy_rank",
                    "participation_ratio",
                )
                if k in sp
            }
            info["singular_values"] = sp["singular_values"]
            info["memory_offdiag_mean"] = mc.get("mean_offdiag")
        arm["stages"][stage] = info
    scl_cfg = runs / name / "scl" / "config.json"
    if scl_cfg.is_file():
        cfg = json.loads(scl_cfg.read_text())
        arm["scl_data"] = cfg.get("data", {}).get("train", [])
        parent = Path(str((cfg.get("model") or {}).get("init_from") or "").format(name=name))
        # an SCL-only arm (e.g. other SCL data) continues another arm's UCL: show that arm's earlier stages
        if "ucl" not in arm["stages"] and parent.name == "ucl" and parent.parent.name != name:
            earlier = collect_arm(runs, parent.parent.name)
            arm["continues"] = parent.parent.name
            arm["stages"] = {
                **{k: v for k, v in earlier["stages"].items() if k != "scl"},
                **arm["stages"],
            }
    s1 = arm["stages"].get("stage1")
    named = ARM_NAME.match(name)  # a run folder since lost: the name still says its stage 1
    lost = named and not arm["stages"]
    arm["objective"] = s1["stage"] if s1 else (named["objective"] if lost else "none")
    arm["wall_seconds"] = round(sum(s.get("wall_seconds") or 0 for s in arm["stages"].values()), 1)
    return arm


def _scores(results: dict, label: str) -> dict:
    return {task: r["scores"]["main_score"] for task, r in results.get(label, {}).items()}


def load_evals(paths) -> dict:
    """One or several evaluation JSONs (e.g. one per arm) merged: results and models by label."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    ev = json.loads(paths[0].read_text())
    ev["results"], ev["models"] = dict(ev.get("results", {})), dict(ev.get("models", {}))
    ev["task_profiles"] = {t: ev.get("profile") for r in ev["results"].values() for t in r}
    for p in paths[1:]:
        more = json.loads(p.read_text())
        for label, tasks in more.get("results", {}).items():
            ev["results"].setdefault(label, {}).update(tasks)
            ev["task_profiles"].update({t: more.get("profile") for t in tasks})
        ev["models"].update(more.get("models", {}))
    ev["eval_files"] = [str(p) for p in paths]
    return ev


def build(arms: list[str], eval_json, baselines_json, runs: Path) -> dict:
    """``baselines_json``: one results file, several (merged, e.g. the quick profile and the FAQ task's
    full profile), or None; files that do not exist are skipped."""
    files = (
        []
        if baselines_json is None
        else [baselines_json]
        if isinstance(baselines_json, (str, Path))
        else list(baselines_json)
    )
    files = [Path(f) for f in files if Path(f).is_file()]
    base = load_evals(files) if files else {"results": {}}
    ev = load_evals(eval_json)
    out = {
        "eval_files": ev["eval_files"],
        "profile": ev.get("profile"),
        "task_profiles": ev.get("task_profiles", {}),
        "settings": ev.get("settings"),
        "machine": ev.get("machine"),
        "runs": str(runs),
        "arms": [],
        "baselines": {},
    }
    tasks: list[str] = []
    per_query: dict = {}
    for name in arms:
        arm = collect_arm(runs, name)
        arm["scores"] = _scores(ev["results"], f"compsearch:{name}")
        arm["model"] = ev.get("models", {}).get(f"compsearch:{name}", {})
        tasks += [t for t in arm["scores"] if t not in tasks]
        out["arms"].append(arm)
        per_query[name] = P.per_query_scores(ev["results"], f"compsearch:{name}")
    for label in BASELINES:
        # from the baselines file, completed by the same label in the evaluation files (e.g. a rerun)
        scores = {**_scores(base["results"], label), **_scores(ev["results"], label)}
        if scores:
            out["baselines"][label] = {t: scores[t] for t in tasks if t in scores}
    out["tasks"] = tasks
    out["comparisons"] = comparisons(out["arms"], per_query)
    out["seed_means"] = seed_means(out["arms"], per_query)
    return out


ARM_NAME = re.compile(r"^(?P<prefix>.+)-(?P<objective>ctkd|nll|rc|none)-s(?P<seed>\d+)$")


def _parse_arms(arms: list[dict], per_query: dict) -> dict[tuple[str, str, int], str]:
    """``(prefix, objective, seed) -> arm name`` for the arms named ``<prefix>-<objective>-s<seed>``
    that have per-query scores."""
    parsed = {}
    for arm in arms:
        m = ARM_NAME.match(arm["name"])
        if m and per_query.get(arm["name"]):
            parsed[(m["prefix"], m["objective"], int(m["seed"]))] = arm["name"]
    return parsed


def _objective_pairs(recipes) -> list[tuple[str, tuple, tuple]]:
    """The objective comparisons among ``(prefix, objective)`` recipes: each stage-1 objective against
    ``none`` (its own prefix's, else the shortest prefix's: ``none`` has no stage 1, so a longer stage 1
    shares it) and ``nll`` / ``rc`` against the same prefix's ``ctkd``."""
    recipes = set(recipes)
    nones = sorted((r for r in recipes if r[1] == "none"), key=lambda r: (len(r[0]), r[0]))
    pairs = []
    for prefix, obj in sorted(recipes):
        base = [r for r in nones if r[0] == prefix] or nones
        if obj != "none" and base:
            pairs.append(("stage 1 vs none", (prefix, obj), base[0]))
        if obj in ("nll", "rc") and (prefix, "ctkd") in recipes:
            pairs.append(("objective vs ctkd", (prefix, obj), (prefix, "ctkd")))
    return pairs


def comparisons(arms: list[dict], per_query: dict) -> list[dict]:
    """Paired bootstraps between arms of one ablation (see the module docstring); arms without
    per-query scores or without the ``<prefix>-<objective>-s<seed>`` name are left out. Arms of
    several configs (prefixes) can be reported together: ``none`` has no stage 1, so any prefix's
    ``none`` of the same seed is the baseline of every stage-1 arm (its own prefix's first), and the
    same objective and seed under two prefixes (e.g. a longer stage 1) are compared too."""
    parsed = _parse_arms(arms, per_query)
    by_arm = []  # the same seed's objectives against each other, listed arm by arm
    for seed in sorted({s for _, _, s in parsed}):
        for kind, a, b in _objective_pairs((p, o) for p, o, s in parsed if s == seed):
            by_arm.append(((*a, seed), kind, parsed[(*a, seed)], parsed[(*b, seed)]))
    pairs = [p[1:] for p in sorted(by_arm, key=lambda p: p[0])]  # stable: vs none, then vs ctkd
    by_obj: dict[tuple, list[int]] = {}
    for prefix, obj, seed in parsed:
        by_obj.setdefault((prefix, obj), []).append(seed)
    for (prefix, obj), seeds in sorted(by_obj.items()):
        seeds.sort()
        for other in seeds[1:]:
            pairs.append(
                ("seed vs seed", parsed[(prefix, obj, other)], parsed[(prefix, obj, seeds[0])])
            )
    prefixes = sorted({p for p, _, _ in parsed}, key=len)
    for (prefix, obj, seed), name in sorted(parsed.items()):
        if obj != "none" and prefix != prefixes[0] and (prefixes[0], obj, seed) in parsed:
            pairs.append(("config vs config", name, parsed[(prefixes[0], obj, seed)]))
    return [
        {"kind": k, "a": a, "b": b, **P.compare(per_query[a], per_query[b])} for k, a, b in pairs
    ]


def seed_means(arms: list[dict], per_query: dict) -> dict:
    """Each objective's runs over seeds (``rows``: per-seed mean nDCG@10 over the per-query tasks, the
    seed mean and the spread) and, where both recipes have at least two seeds, each stage-1 objective
    against ``none`` and ``nll`` / ``rc`` against ``ctkd`` by seed means (``paired.seed_bootstrap``,
    seeds matched where both ran them)."""
    groups: dict[tuple, dict[int, str]] = {}
    for (prefix, obj, seed), name in _parse_arms(arms, per_query).items():
        groups.setdefault((prefix, obj), {})[seed] = name
    rows = []
    for (prefix, obj), by_seed in sorted(groups.items()):
        scores = {
            s: sum(sum(q.values()) / len(q) for q in per_query[n].values()) / len(per_query[n])
            for s, n in sorted(by_seed.items())
        }
        rows.append(
            {
                "prefix": prefix,
                "objective": obj,
                "seeds": scores,
                "mean": sum(scores.values()) / len(scores),
                "spread": max(scores.values()) - min(scores.values()),
            }
        )
    comps = []
    for kind, a, b in _objective_pairs(groups):
        shared = sorted(set(groups[a]) & set(groups[b]))
        if len(shared) >= 2:  # the arms of one seed share data and order: compare seed by seed
            runs_a = [per_query[groups[a][s]] for s in shared]
            runs_b = [per_query[groups[b][s]] for s in shared]
            cmp = P.seed_bootstrap(runs_a, runs_b, matched=True)
        elif min(len(groups[a]), len(groups[b])) >= 2:  # no common seeds: independent draws
            runs_a = [per_query[n] for _, n in sorted(groups[a].items())]
            runs_b = [per_query[n] for _, n in sorted(groups[b].items())]
            cmp = P.seed_bootstrap(runs_a, runs_b)
        else:
            continue  # a single run on one side: its seed decides, so only the paired rows above
        comps.append({"kind": kind, "a": "-".join(a), "b": "-".join(b), **cmp})
    return {"rows": rows, "comparisons": comps}


def _data_name(spec) -> str:
    if isinstance(spec, dict):
        name = Path(str(spec.get("path") or spec.get("hub") or "?")).stem
        return f"{name} ({spec['sample']} sampled)" if spec.get("sample") else name
    return Path(str(spec)).stem


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(v, digits=3):
    return "—" if v is None else f"{v:.{digits}f}"


def markdown(rep: dict) -> str:
    tasks = rep["tasks"]
    retrieval = [t for t in tasks if t.endswith("Retrieval")]
    short = {t: t.replace("Retrieval", "").replace("STS", " STS") for t in tasks}
    other = {
        t: p
        for t, p in (rep.get("task_profiles") or {}).items()
        if t in tasks and p and p != rep.get("profile")
    }
    profile = f"`{rep.get('profile')}` profile" + (
        " (" + ", ".join(f"{short[t].strip()}: `{p}`" for t, p in other.items()) + ")"
        if other
        else ""
    )
    lines = [
        f"Offline suite, {profile}; main score per task (nDCG@10 for retrieval, Spearman for "
        f"STS). Runs: `{rep.get('runs', 'training/runs')}/<arm>` (`training/arm.sh <stage 1> <config>`); evaluation files: "
        + ", ".join(f"`{e}`" for e in rep.get("eval_files", []))
        + "; regenerate with `python -m training report "
        + (f"--runs {rep['runs']} " if rep.get("runs", "training/runs") != "training/runs" else "")
        + f"--arms {','.join(a['name'] for a in rep['arms'])} --eval <those files>`.",
        "",
        "| model | stage 1 | SCL data | "
        + " | ".join(short[t] for t in tasks)
        + " | mean retrieval |",
        "|---|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for arm in rep["arms"]:
        s = arm["scores"]
        data = " + ".join(_data_name(d) for d in arm.get("scl_data", [])) or "—"
        lines.append(
            f"| {arm['name']} | {arm['objective']} | {data} | "
            + " | ".join(_fmt(s.get(t)) for t in tasks)
            + f" | {_fmt(_mean([s.get(t) for t in retrieval]))} |"
        )
    for label, s in rep["baselines"].items():
        lines.append(
            f"| {BASELINE_NAMES.get(label, label)} (baseline) | — | — | "
            + " | ".join(_fmt(s.get(t)) for t in tasks)
            + f" | {_fmt(_mean([s.get(t) for t in retrieval]))} |"
        )
    lines += [
        "",
        "Losses are means of the first and last 5 logged steps; the SCL loss of a model that cannot tell "
        "the positive from the in-batch and hard negatives is ln(batch + negatives), e.g. ln 32 = 3.47.",
        "",
        "Effective dimension of held-out embeddings (256 texts; centred, normalised; singular values "
        "above 1% of the largest / entropy effective rank) and mean off-diagonal memory-token correlation:",
        "",
        "| arm | after stage 1 | after UCL | after SCL | memory corr. after SCL | stage-1 loss first→last "
        "| SCL loss first→last | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in rep["arms"]:
        st = arm["stages"]

        def ed(stage):
            e = st.get(stage, {}).get("effective_dim")
            return f"{e['above_1pct']} / {e['entropy_rank']:.0f}" if e else "—"

        def loss_s(stage):
            loss = st.get(stage, {}).get("loss") or {}
            return f"{loss['first']:.3f} → {loss['last']:.3f}" if loss else "—"

        lines.append(
            f"| {arm['name']} | {ed('stage1')} | {ed('ucl')} | {ed('scl')} | "
            f"{_fmt(st.get('scl', {}).get('memory_offdiag_mean'), 2)} | {loss_s('stage1')} | {loss_s('scl')} | "
            + (f"{arm['wall_seconds'] / 60:.0f} min |" if st else "— |")
        )
    if rep.get("comparisons"):
        lines += [
            "",
            "Paired comparisons over the same queries (mean over retrieval tasks of a − b in nDCG@10; 95% "
            "interval and two-sided p from 10,000 bootstrap resamples of each task's queries; tasks where "
            "a > b by the exact sign test):",
            "",
            "| comparison | a | b | a − b | 95% interval | p | tasks a > b | sign-test p |",
            "|---|---|---|---:|---|---:|---|---:|",
        ]
        for c in rep["comparisons"]:
            sign = c["sign"]
            lines.append(
                f"| {c['kind']} | {c['a']} | {c['b']} | {c['diff']:+.3f} | "
                f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] | {c['p']:.3f} | "
                f"{sign['positive']} of {sign['positive'] + sign['negative']} | {sign['p']:.3f} |"
            )
    sm = rep.get("seed_means") or {}
    if any(len(r["seeds"]) > 1 for r in sm.get("rows", [])):
        lines += [
            "",
            "Over seeds (each run's mean nDCG@10 over the tasks with per-query scores; spread = highest "
            "minus lowest seed):",
            "",
            "| config | stage 1 | per seed | seed mean | spread |",
            "|---|---|---|---:|---:|",
        ]
        for r in sm["rows"]:
            per = ", ".join(f"s{s}: {v:.3f}" for s, v in r["seeds"].items())
            lines.append(
                f"| {r['prefix']} | {r['objective']} | {per} | {r['mean']:.3f} | {r['spread']:.3f} |"
            )
        if sm.get("comparisons"):
            lines += [
                "",
                "By seed means (a − b of the means over seeds; 95% interval and p from 10,000 resamples "
                "of the seeds and of each task's queries, so seed noise counts). Where both recipes ran "
                "the same seeds (which fix the data and its order) the seeds are drawn as pairs "
                "(matched); otherwise each recipe's seeds are drawn on their own:",
                "",
                "| comparison | a | b | seeds a / b | a − b | 95% interval | p |",
                "|---|---|---|---|---:|---|---:|",
            ]
            for c in sm["comparisons"]:
                seeds = f"{c['seeds'][0]} / {c['seeds'][1]}" + (
                    " matched" if c.get("matched") else ""
                )
                lines.append(
                    f"| {c['kind']} | {c['a']} | {c['b']} | {seeds} | "
                    f"{c['diff']:+.3f} | [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] | {c['p']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, stage in zip(axes, ("stage1", "scl")):
        for arm in rep["arms"]:
            s = arm["stages"].get(stage, {}).get("singular_values")
            if s:
                ax.semilogy([v / s[0] for v in s], label=arm["name"])
        ax.axhline(0.01, color="grey", lw=0.5, ls="--")
        ax.set_title(f"held-out spectrum after {stage}", fontsize=9)
        ax.set_xlabel("index")
        ax.set_ylabel("singular value / largest")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rep: dict, out: Path) -> dict[str, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": out.with_suffix(".json"), "md": out.with_suffix(".md")}
    paths["json"].write_text(json.dumps(rep, indent=1) + "\n")
    paths["md"].write_text(markdown(rep))
    png = plot(rep, out.parent / f"{out.name}-spectra.png")
    if png:
        paths["png"] = png
    return paths
