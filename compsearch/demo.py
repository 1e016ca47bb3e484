"""``make demo``: index real text that exists on any machine after set-up, then answer queries.

The corpus is this project's own docs plus the Python standard library's ``json`` package (source
and docstrings written by the CPython developers) and, where the interpreter ships it, Python's
LICENSE.txt. Run ``python -m compsearch.demo --help`` for options.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import click

from .cli import console, friendly_errors, index_with_progress, print_report, print_results

QUERIES = [
    "how do I pretty-print JSON with sorted keys and indentation?",
    "which exception is raised when a JSON document is malformed?",
    "where is the on-disk format of an index described?",
]


def demo_paths() -> list[Path]:
    repo = Path(__file__).resolve().parent.parent
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = [
        repo / "docs",
        repo / "README.md",
        Path(json.__file__).parent,
        stdlib / "LICENSE.txt",
    ]
    return [p for p in candidates if p.exists()]


@click.command()
@click.option("--index", "index_dir", default=".demo-index", show_default=True)
@click.option("-k", "k", default=3, show_default=True)
@click.argument("queries", nargs=-1)
@friendly_errors
def main(index_dir, k, queries):
    from .retriever import Retriever

    out, err = console(), console(stderr=True)
    paths = demo_paths()
    out.print("[bold]compsearch demo[/bold]: indexing " + ", ".join(str(p) for p in paths))
    retriever = Retriever.open(index_dir)
    err.print(
        "[dim]loading the default encoder (the first run converts the bundled "
        "SmolLM2-135M once, ~30 s)…[/dim]"
    )
    enc = retriever.encoder
    out.print(
        f"encoder: {enc.name}, dim {enc.dim}, {str(enc.dtype).replace('torch.', '')} "
        f"on {enc.device}"
    )
    if not enc.config.training:
        out.print(
            "[yellow]note: the default encoder is the base model with untrained memory "
            "tokens; expect weak rankings (see README).[/yellow]"
        )
    elif enc.source == "default":
        out.print(
            "[yellow]note: the default encoder was trained on a 2-core CPU with a small budget; its "
            "scores beside BM25 and all-MiniLM-L6-v2 are in compsearch/default_model/README.md.[/yellow]"
        )
    report = index_with_progress(retriever, paths, err)
    print_report(out, report, index_dir, verbose=False)
    for q in queries or QUERIES:
        out.print()
        print_results(out, q, retriever.search(q, k=k))
    out.print(f'\nTry your own: .venv/bin/compsearch query "..." --index {index_dir}')


if __name__ == "__main__":
    sys.exit(main())
