"""What one small write costs as the index grows: add one chunk, delete one, delete a missing id.

    python -m benchmarks.writecost                       # 2k, 20k, 200k chunks
    python -m benchmarks.writecost --sizes 2000,20000    # quicker

Vectors are synthetic (random unit vectors of the default encoder's 576 dimensions, given to
``Retriever.add(..., vectors=...)``), so nothing is encoded: the numbers are the cost of the
index's write path alone (store transaction, FAISS base decision, commit, manifest mirror), as a
caller sees it (the delete includes finding the id). Each write is repeated ``--repeats`` times
and the median is reported. A write path whose cost is O(what changed) shows flat rows; one that
copies the index (format 1, before issue 16) shows rows growing with size. ``index size`` is
the whole index folder after the build (store, its WAL, FAISS base).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from .common import RESULTS, machine_info, save

DIM = 576


class _GivenVectors:
    """An encoder stand-in: vectors are always given, so only dim and identity matter."""

    dim = DIM
    name = "synthetic-vectors"
    source = None
    fingerprint = "synthetic-576"
    dtype = "float32"

    def encode(self, texts, kind="document", **_):
        raise RuntimeError("the write-cost benchmark never encodes")

    def manifest_entry(self) -> dict:
        return {
            "source": None,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": DIM,
            "dtype": "float32",
            "kind": "external",
        }


def _unit(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(size: int, repeats: int, root: Path, seed: int = 0) -> dict:
    from compsearch import Retriever

    rng = np.random.default_rng(seed)
    r = Retriever.open(root / f"ix-{size}", _GivenVectors())
    t = time.perf_counter()
    step = 50_000
    for start in range(0, size, step):
        n = min(step, size - start)
        r.add([f"synthetic chunk {start + i}" for i in range(n)], vectors=_unit(rng, n))
    build = time.perf_counter() - t
    index_bytes = _dir_bytes(root / f"ix-{size}")
    rows: dict[str, list[float]] = {"add_one": [], "delete_one": [], "delete_missing": []}
    for i in range(repeats):
        t = time.perf_counter()
        new = r.add([f"extra chunk {i}"], vectors=_unit(rng, 1))
        rows["add_one"].append(time.perf_counter() - t)
        t = time.perf_counter()
        r.delete(new)
        rows["delete_one"].append(time.perf_counter() - t)
        t = time.perf_counter()
        r.delete([10**12 + i])
        rows["delete_missing"].append(time.perf_counter() - t)
    r.close()
    out = {"chunks": size, "build_s": round(build, 2), "index_bytes": index_bytes}
    out.update({k: round(statistics.median(v) * 1000, 1) for k, v in rows.items()})
    return out


@click.command()
@click.option("--sizes", default="2000,20000,200000", show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--out", "out_name", default="writecost", show_default=True)
def main(sizes: str, repeats: int, out_name: str) -> None:
    """Measure one-chunk add/delete cost against index size and write benchmarks/results/."""
    from rich.console import Console

    console = Console(stderr=True)
    root = Path(tempfile.mkdtemp(prefix="cs-writecost-"))
    results = []
    try:
        for size in [int(s) for s in sizes.split(",")]:
            with console.status(f"{size:,} chunks: building and timing writes"):
                results.append(measure(size, repeats, root))
            console.print(results[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cmd = f"python -m benchmarks.writecost --sizes {sizes} --repeats {repeats}"
    md = [
        f"# Write cost against index size\n\n`{cmd}`, {machine_info().get('cpu', '')}, "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}. Synthetic {DIM}-d vectors given to "
        f"`Retriever.add` (nothing encoded); median of {repeats} writes.\n",
        "| chunks | index size (MB) | add one chunk (ms) | delete one chunk (ms) | delete a missing id (ms) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        md.append(
            f"| {r['chunks']:,} | {r['index_bytes'] / 1e6:,.1f} | {r['add_one']:,.1f} | "
            f"{r['delete_one']:,.1f} | {r['delete_missing']:,.1f} |"
        )
    path = save(
        out_name,
        {"command": cmd, "machine": machine_info(), "results": results},
        "\n".join(md) + "\n",
    )
    _plot(results, RESULTS / f"{out_name}.png")
    console.print(f"wrote {path}")


def _plot(results: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    xs = [r["chunks"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("add_one", "add one chunk"),
        ("delete_one", "delete one chunk"),
        ("delete_missing", "delete a missing id"),
    ):
        ax.plot(xs, [r[key] for r in results], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the index")
    ax.set_ylabel("ms per write (median)")
    ax.set_title("compsearch: cost of one small write")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
