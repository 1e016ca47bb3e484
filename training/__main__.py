"""``python -m training``: train a stage, build data, export, diagnose.

    python -m training STAGE --config NAME [--set key=value ...] [--resume auto|never|PATH]
        STAGE: ctkd | nll | rc (stage 1) | ucl (stage 2) | scl (stage 3); NAME: cpu-small | paper | FILE
    python -m training show STAGE --config NAME [--set ...]       print the resolved config
    python -m training data [--out DIR] [--groups ...]            build training data offline
    python -m training synth --passages FILE --out FILE           synthetic queries with the instruct LM
    python -m training mine --pairs FILE --out FILE [--encoder DIR]   hard negatives (BM25 or a model)
    python -m training export RUN_DIR|CHECKPOINT OUT [--adapter-dtype bfloat16]
    python -m training diagnose ENCODER --data FILE [--out DIR]
    python -m training report --arms A,B,... --eval FILE [--out PREFIX]   the ablation report
    python -m training ship RUN_DIR [--report FILE] [--out compsearch/default_model]   ship + model card

Run from the repository root (``training`` is not an installed package). Several processes:
``torchrun --nproc_per_node N -m training STAGE ...`` or ``accelerate launch -m training STAGE ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .config import STAGES, load_config, parse_overrides
from .errors import TrainingError


def _stage_parser(sub, name: str, help_: str):
    p = sub.add_parser(name, help=help_)
    p.add_argument(
        "--config",
        "-c",
        default="cpu-small",
        help="config name (cpu-small, paper) or .py/.json file",
    )
    p.add_argument(
        "--set",
        "-s",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. optim.lr=3e-5 (repeatable)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads for data/synth/mine/diagnose (training: the cpu_threads field)",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        p = _stage_parser(sub, stage, f"train stage {stage}")
        p.add_argument(
            "--resume",
            default="auto",
            help="auto (latest checkpoint of the run), never, or a checkpoint",
        )
        p.add_argument(
            "--stop-after",
            type=int,
            default=None,
            help="stop after this many total steps (checkpointed)",
        )
    p = sub.add_parser("show", help="print the resolved config of a stage")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--config", "-c", default="cpu-small")
    p.add_argument("--set", "-s", action="append", default=[])

    p = sub.add_parser("data", help="build CTKD/UCL/SCL training data from the offline sources")
    p.add_argument("--out", default=None, help="output folder (default: $COMPSEARCH_TRAIN_DATA)")
    p.add_argument("--cache", default=None, help="benchmark source cache (default: the suite's)")
    p.add_argument("--groups", nargs="*", default=None, help="source groups (default: all)")
    p.add_argument("--max-pairs-per-source", type=int, default=20000)
    p.add_argument(
        "--no-wiki",
        action="store_true",
        help="skip the gensim enwiki sample (a 28 MB PyPI download)",
    )

    p = sub.add_parser(
        "synth", help="generate synthetic queries for passages with the bundled instruct LM"
    )
    p.add_argument(
        "--passages", required=True, help="JSONL with 'text' (and optional 'unit', 'source')"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="bundled")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)

    p = sub.add_parser("mine", help="add hard negatives to (query, positive) pairs")
    p.add_argument("--pairs", required=True, help="JSONL with query, positive (and unit)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--encoder", default=None, help="mine with this compsearch encoder instead of BM25"
    )
    p.add_argument("--corpus", default=None, help="JSONL of extra candidate documents ('text')")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--max-ratio",
        type=float,
        default=0.95,
        help="with --encoder: skip candidates scored above this times the positive (false negatives); 0: keep all",
    )

    p = sub.add_parser("export", help="export a run / checkpoint as a compsearch encoder folder")
    p.add_argument("source", help="run dir (its latest checkpoint) or a checkpoint folder")
    p.add_argument("out")
    p.add_argument("--adapter-dtype", default="float32", choices=["float32", "bfloat16"])

    p = sub.add_parser(
        "diagnose", help="spectrum + memory-token correlation of an encoder on texts"
    )
    p.add_argument("encoder", help="encoder folder or base model spec")
    p.add_argument("--data", required=True, nargs="+", help="JSONL/parquet/txt files with 'text'")
    p.add_argument("--out", default=None)
    p.add_argument("--limit", type=int, default=512)
    p.add_argument("--kind", default="document", choices=["document", "query"])

    p = sub.add_parser(
        "report", help="collect finished runs + their evaluation into the ablation report"
    )
    p.add_argument("--arms", required=True, help="comma-separated run names (training/runs/<name>)")
    p.add_argument(
        "--eval",
        required=True,
        nargs="+",
        help="quality JSON(s) from benchmarks.mteb_suite run (models compsearch:<arm>), merged",
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        default=[
            "benchmarks/results/quality-quick.json",
            "benchmarks/results/faq-dev/quality-full.json",
        ],
        help="results files with the baselines (BM25, MiniLM, ...), merged",
    )
    p.add_argument("--runs", default="training/runs")
    p.add_argument(
        "--out",
        default="training/results/ablation",
        help="output prefix (.json, .md, -spectra.png)",
    )

    p = sub.add_parser(
        "ship", help="export a finished run as compsearch's default encoder with a model card"
    )
    p.add_argument("run", help="training/runs/<name> (its SCL stage is exported)")
    p.add_argument(
        "--report", default=None, help="ablation JSON from `report` (scores for the card)"
    )
    p.add_argument("--out", default="compsearch/default_model")
    p.add_argument("--max-mb", type=float, default=32.0)
    p.add_argument("--stage", default="scl", help="the stage folder to ship (scl-qa: cpu-continue)")
    p.add_argument(
        "--eval", nargs="*", default=[], help="quality JSON files of this model (the card's scores)"
    )
    p.add_argument(
        "--reproduce", action="append", default=None, help="a command that made the run (repeat)"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command in STAGES else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return _dispatch(args)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command in STAGES:
        from .train import train

        cfg = load_config(args.config, args.command, parse_overrides(args.set))
        try:
            summary = train(cfg, resume=args.resume, stop_after=args.stop_after)
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(summary, indent=1))
        return 0
    if args.command == "show":
        cfg = load_config(args.config, args.stage, parse_overrides(args.set))
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    if args.command == "data":
        from .builders import build_all

        manifest = build_all(
            out=args.out,
            cache=args.cache,
            groups=args.groups,
            max_pairs_per_source=args.max_pairs_per_source,
            wiki=not args.no_wiki,
        )
        print(json.dumps(manifest["files"], indent=1))
        return 0
    if args.command == "synth":
        from .synth import synthesize_file

        stats = synthesize_file(
            args.passages,
            args.out,
            model=args.model,
            limit=args.limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        print(json.dumps(stats, indent=1))
        return 0
    if args.command == "mine":
        from .builders import mine_file

        print(
            json.dumps(
                mine_file(
                    args.pairs,
                    args.out,
                    encoder=args.encoder,
                    corpus=args.corpus,
                    seed=args.seed,
                    max_ratio=args.max_ratio or None,
                ),
                indent=1,
            )
        )
        return 0
    if args.command == "export":
        from .export import export_checkpoint

        out = export_checkpoint(args.source, args.out, adapter_dtype=args.adapter_dtype)
        print(out)
        return 0
    if args.command == "diagnose":
        from collections import Counter

        from .data import iter_records, normalize_spec
        from .diagnostics import diagnose_encoder

        texts = []
        for spec in args.data:
            for rec in iter_records(normalize_spec(spec), "skip", Counter()):
                t = rec.get("text") or rec.get("positive")
                if isinstance(t, str) and t.strip():
                    texts.append(t)
                if len(texts) >= args.limit:
                    break
        out = args.out or str(Path(args.encoder) / "diagnostics")
        result = diagnose_encoder(args.encoder, texts, out, kind=args.kind)
        sp, mc = result["spectrum"], result["memory_correlation"]
        print(
            json.dumps(
                {
                    "texts": len(texts),
                    "above_1pct": sp["above_1pct"],
                    "entropy_rank": sp["entropy_rank"],
                    "memory_mean_offdiag": mc["mean_offdiag"],
                    "files": result["files"],
                },
                indent=1,
            )
        )
        return 0
    if args.command == "report":
        from .report import build, write

        missing_eval = [e for e in args.eval if not Path(e).is_file()]
        if missing_eval:
            raise TrainingError(f"no evaluation results at {', '.join(missing_eval)}")
        rep = build(
            [a for a in args.arms.split(",") if a], args.eval, args.baselines, Path(args.runs)
        )
        missing = [a["name"] for a in rep["arms"] if not a["scores"]]
        if missing:
            raise TrainingError(f"no scores for: {', '.join(missing)}")
        gone = [a["name"] for a in rep["arms"] if not a["stages"]]
        if gone:  # scored earlier, run folder since lost: scores and comparisons only
            print(f"note: no run folder under {args.runs} for {', '.join(gone)}", file=sys.stderr)
        paths = write(rep, Path(args.out))
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
        return 0
    if args.command == "ship":
        from .ship import ship

        print(
            json.dumps(
                ship(
                    args.run,
                    args.out,
                    report=args.report,
                    max_mb=args.max_mb,
                    stage=args.stage,
                    evals=args.eval,
                    reproduce=args.reproduce,
                ),
                indent=1,
            )
        )
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
