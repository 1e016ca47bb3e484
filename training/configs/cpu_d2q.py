"""cpu-d2q: do doc2query's synthetic questions help? (issue 13, item 2). Two short SCL rounds from the
shipped default with the same seed, steps and schedule, differing only in where the questions came from:

    COMPSEARCH_D2Q_ARM=d2q  python -m training scl --config cpu-d2q   # every kept doc2query triple
    COMPSEARCH_D2Q_ARM=real python -m training scl --config cpu-d2q   # as many real qdata pairs, same kinds

``d2q`` reads ``doc2query/doc2query-scl.jsonl`` (``python -m training.doc2query``: questions from the
bundled instruct LM for qdata's train passages, kept only if BM25 ranks their passage in the top 3);
``real`` draws, per kind (sections, man options, code), as many of qdata's real heading/option/docstring
pairs as ``d2q`` has of that kind, so the two arms see the same number of items of each kind. 100 steps
of 16 triples (about one epoch of the 1,616 triples kept by 2026-12-02), documents up to 256 tokens, lr
1e-4 with 10 warmup steps (``cpu-continue``'s settings otherwise). Each arm is compared with the other
and with its starting point, query by query (``mteb_suite run --per-query``, ``paired.py``). Runs live in
``<cache>/training-runs/d2q/<arm>`` and resume when the same command runs again.
"""

import json
import os
from collections import Counter
from pathlib import Path

from compsearch.fsutil import cache_home
from training.config import default_data_dir
from training.configs.cpu_long import from_default
from training.errors import TrainingError

STEPS = 100
D2Q = "doc2query/doc2query-scl.jsonl"
KINDS = ("sections", "manopt", "code")


def kind_counts(path: Path) -> Counter:
    """Kept doc2query triples per kind (their ``source`` is ``d2q:<kind>[:<package>]``)."""
    counts: Counter = Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                parts = str(json.loads(line).get("source", "")).split(":")
                counts[parts[1] if len(parts) > 1 else ""] += 1
    return counts


def config(stage: str):
    if stage != "scl":
        return from_default(stage, "cpu-d2q", {})  # the one-line refusal
    arm = os.environ.get("COMPSEARCH_D2Q_ARM", "")
    if arm not in ("d2q", "real"):
        raise TrainingError(f"COMPSEARCH_D2Q_ARM={arm!r}: set it to d2q or real")
    d2q = Path(default_data_dir()) / D2Q
    if not d2q.is_file():
        raise TrainingError(
            f"no doc2query triples at {d2q}: run python -m training.doc2query first (training/README.md)"
        )
    counts = kind_counts(d2q)
    if arm == "d2q":
        data = [{"path": D2Q}]
    else:
        data = [
            {"path": "qdata/qdata-scl.jsonl", "sources": [k], "sample": counts[k]}
            for k in KINDS
            if counts[k]
        ]
    return from_default(
        stage,
        "cpu-d2q",
        {
            "name": f"d2q-{arm}",
            "out_dir": str(cache_home() / "training-runs" / "d2q" / arm),
            "data.train": data,
            "optim.max_steps": STEPS,
            "optim.warmup_steps": 10,
        },
    )
