"""Encoder speed by depth and weight format, against all-MiniLM-L6-v2 in the same run; cold start.

For each depth L (the first L layers, then the final norm: the shipped default itself at its own
depth, and the bundled base with the same memory-token count at every other depth -- untrained
there, which does not matter for speed) and each weight format
(the dtype ``Encoder.load`` picks on this machine, and per-channel dynamic int8), on the same real
paragraphs: texts/s and text tokens/s of ``Encoder.encode`` (best of ``--repeats``), one-line
query encode p50/p95, and the mean cosine to the same depth in fp32 (what int8 or bf16 costs in
fidelity). all-MiniLM-L6-v2 (sentence-transformers, CPU) runs on the same texts and queries, so
the ratios are what counts: other processes share this machine. Then thread counts (1 vs 2) for a
single query and for a batch, and the wall time of fresh processes: ``compsearch --help``,
``compsearch query`` on a small existing index, ``import torch`` (its floor) and torch +
transformers' Llama (what it imported before ``compsearch.llama``).

    OMP_NUM_THREADS=1 python -m benchmarks.throughput_depth
    python -m benchmarks.throughput_depth --texts 16 --depths 30,8 --queries 10   # quick look
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from .common import RESULTS, machine_info, save, stdlib_paragraphs

QUERIES = [
    "how do I open a file for reading",
    "sort a list of tuples by the second item",
    "regular expression named group",
    "parse command line arguments",
    "current time in UTC",
    "read a csv file",
    "copy a directory tree",
    "environment variable default value",
    "convert a string to bytes",
    "run a subprocess",
    "json pretty print",
    "thread pool executor",
    "temporary directory cleanup",
    "compare two floats",
    "unicode normalisation",
    "http get request",
    "decorator that caches results",
    "iterate over dictionary items",
    "path of the running script",
    "random sample without replacement",
]


def _timed_batches(encode, texts, batch_size, repeats):
    encode(texts[:2], batch_size)  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = encode(texts, batch_size)
        times.append(time.perf_counter() - t)
    return min(times), out


def _query_times(encode_one, queries):
    encode_one(queries[0])
    times = []
    for q in queries:
        t = time.perf_counter()
        encode_one(q)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def truncated(enc, depth: int, dtype, quantize: str | None):
    """The shipped encoder cut to its first ``depth`` layers, in a dtype or int8 (a new Encoder)."""
    import torch

    from compsearch.encoder import Encoder, truncate_config
    from compsearch.fastpath import quantize_int8

    model = copy.deepcopy(enc.model)
    model.layers = model.layers[:depth]
    truncate_config(model.config, depth)
    model = quantize_int8(model) if quantize == "int8" else model.to(dtype)
    config = copy.deepcopy(enc.config)
    config.num_layers = depth
    out = Encoder(
        model,
        enc.tokenizer,
        enc.memory.float(),
        config,
        adapter=enc.adapter,
        source=enc.source,
        base_path=enc.base_path,
    )
    out.quantize = quantize
    assert isinstance(out.model.layers, torch.nn.ModuleList)
    return out


def _run(cmd, env) -> tuple[float, int, str]:
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, res.returncode, res.stderr


def cold_start(runs: int) -> dict:
    """Wall time of fresh processes (median of ``runs``), and what the query process imports."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    py = [sys.executable]
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        docs = Path(d) / "docs"
        docs.mkdir()
        (docs / "notes.md").write_text(
            "# Logging\n\nRotate the log file when it reaches a size limit.\n\n"
            "# JSON\n\njson.dumps serialises a Python object to a JSON formatted string.\n\n"
            "# Files\n\nopen() returns a file object; use a with block to close it.\n"
        )
        index = Path(d) / "idx"
        t, rc, err = _run(
            py + ["-m", "compsearch", "index", str(docs), "--index", str(index), "--json"], env
        )
        if rc != 0:
            raise click.ClickException(
                f"building the cold-start index failed: {err.strip()[-300:]}"
            )
        out["index_build_s"] = t
        cases = {
            "python_empty": py + ["-c", "pass"],
            "import_torch": py + ["-c", "import torch"],
            "import_torch_transformers_llama": py
            + ["-c", "import transformers.models.llama.modeling_llama"],
            "compsearch_help": py + ["-m", "compsearch", "--help"],
            "compsearch_query": py
            + [
                "-m",
                "compsearch",
                "query",
                "rotate the log file",
                "--index",
                str(index),
                "-k",
                "2",
            ],
            # the same query with the torch encoder (COMPSEARCH_TRANSFORMERS=1: no numpy query path)
            "compsearch_query_torch": py
            + [
                "-m",
                "compsearch",
                "query",
                "rotate the log file",
                "--index",
                str(index),
                "-k",
                "2",
            ],
        }
        envs = {"compsearch_query_torch": dict(env, COMPSEARCH_TRANSFORMERS="1")}
        times: dict = {name: [] for name in cases}
        stderr: dict = {}
        for _ in range(runs):  # round robin, so a burst of load from other jobs hits every case
            for name, cmd in cases.items():
                t, rc, err = _run(cmd, envs.get(name, env))
                if rc != 0:
                    raise click.ClickException(f"{name} failed: {err.strip()[-300:]}")
                times[name].append(t)
                stderr[name] = err
        for name in cases:
            out[name] = {
                "median_s": statistics.median(times[name]),
                "min_s": min(times[name]),
                "all_s": times[name],
                "stderr_lines": len([x for x in stderr[name].splitlines() if x.strip()]),
            }
    return out


@click.command()
@click.option("--texts", "n", default=32, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--repeats", default=2, show_default=True, help="Best of this many batch runs.")
@click.option("--queries", "n_queries", default=20, show_default=True)
@click.option("--depths", default="30,15,10,8,6", show_default=True)
@click.option("--cold-runs", default=3, show_default=True)
@click.option("--model", default=None, help="Encoder (default: compsearch's default).")
@click.option("--no-minilm", is_flag=True)
@click.option("--stem", default="throughput-depth", show_default=True)
def main(n, batch_size, repeats, n_queries, depths, cold_runs, model, no_minilm, stem):
    import torch

    from compsearch import Encoder
    from compsearch.encoder import pick_dtype

    texts = stdlib_paragraphs(n)
    queries = (QUERIES * (n_queries // len(QUERIES) + 1))[:n_queries]
    depth_list = [int(x) for x in depths.split(",") if x.strip()]
    t = time.perf_counter()
    shipped = Encoder.load(model, dtype="float32")
    load_s = time.perf_counter() - t
    shipped_depth = shipped.model.config.num_hidden_layers
    full = shipped
    if max(depth_list) > shipped_depth:  # the sweep needs more layers than the shipped encoder has
        full = Encoder.from_base(
            shipped.config.base_model,
            num_memory_tokens=shipped.config.num_memory_tokens,
            max_length=shipped.config.max_length,
            query_prompt=shipped.config.query_prompt,
            dtype="float32",
        )
    auto = pick_dtype(torch.device("cpu"))
    auto_name = str(auto).replace("torch.", "")
    tokens = sum(min(c, full.config.max_length) for c in full.count_tokens(texts))
    rows, fp32_ref = [], {}
    variants = [(auto_name, auto, None), ("int8", torch.float32, "int8")]
    if auto != torch.float32:
        variants.insert(0, ("float32", torch.float32, None))
    for depth in depth_list:
        for label, dtype, quantize in variants:
            if label == "float32" and depth != depth_list[0] and auto != torch.float32:
                continue  # fp32 only at the first depth when another dtype is the default here
            enc = truncated(shipped if depth == shipped_depth else full, depth, dtype, quantize)
            seconds, vecs = _timed_batches(
                lambda x, b: enc.encode(x, batch_size=b), texts, batch_size, repeats
            )
            p50, p95 = _query_times(lambda q: enc.encode([q], kind="query"), queries)
            if label == "float32" or (auto == torch.float32 and quantize is None):
                fp32_ref[depth] = vecs
            ref = fp32_ref.get(depth)
            if ref is None and label != "float32":
                ref_enc = truncated(
                    shipped if depth == shipped_depth else full, depth, torch.float32, None
                )
                ref = fp32_ref[depth] = ref_enc.encode(texts, batch_size=batch_size)
                del ref_enc
            row = {
                "depth": depth,
                "shipped": depth == shipped_depth,
                "weights": label,
                "texts_per_s": n / seconds,
                "tokens_per_s": tokens / seconds,
                "seconds": seconds,
                "query_p50_ms": p50,
                "query_p95_ms": p95,
                "cosine_to_fp32": float(np.mean(np.sum(vecs * ref, axis=1))),
            }
            rows.append(row)
            click.echo(
                f"L={depth:>2} {label:>8}: {row['texts_per_s']:.2f} texts/s, "
                f"{row['tokens_per_s']:.0f} tok/s, query p50 {p50:.0f} ms p95 {p95:.0f} ms, "
                f"cos {row['cosine_to_fp32']:.4f}",
                err=True,
            )
            enc = None  # free it before the next variant loads

    minilm = None
    if not no_minilm:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from .mteb_suite.models import minilm_path

        st = SentenceTransformer(str(minilm_path()), device="cpu")
        st_tokens = sum(
            min(len(x), st.max_seq_length)
            for x in st.tokenizer(texts, add_special_tokens=True)["input_ids"]
        )
        seconds, _ = _timed_batches(
            lambda x, b: st.encode(x, batch_size=b, normalize_embeddings=True),
            texts,
            batch_size,
            repeats,
        )
        p50, p95 = _query_times(lambda q: st.encode([q], normalize_embeddings=True), queries)
        minilm = {
            "texts_per_s": n / seconds,
            "tokens_per_s": st_tokens / seconds,
            "tokens": st_tokens,
            "seconds": seconds,
            "query_p50_ms": p50,
            "query_p95_ms": p95,
        }
        click.echo(f"MiniLM: {minilm['texts_per_s']:.2f} texts/s, query p50 {p50:.0f} ms", err=True)

    # threads: the shipped configuration (its depth, this machine's dtype), 1 vs 2 threads
    threads = []
    enc = truncated(shipped, shipped_depth, auto, None)
    before = torch.get_num_threads()
    for k in (1, 2):
        torch.set_num_threads(k)
        seconds, _ = _timed_batches(lambda x, b: enc.encode(x, batch_size=b), texts, batch_size, 1)
        p50, p95 = _query_times(lambda q: enc.encode([q], kind="query"), queries[:10])
        threads.append(
            {"threads": k, "texts_per_s": n / seconds, "query_p50_ms": p50, "query_p95_ms": p95}
        )
        click.echo(f"threads={k}: {n / seconds:.2f} texts/s, query p50 {p50:.0f} ms", err=True)
    torch.set_num_threads(before)
    enc = None

    cold = cold_start(cold_runs) if cold_runs else None
    if cold:
        click.echo(
            f"cold start: help {cold['compsearch_help']['median_s']:.2f} s, query "
            f"{cold['compsearch_query']['median_s']:.2f} s",
            err=True,
        )
    data = {
        "machine": machine_info(),
        "encoder": shipped.name,
        "fingerprint": shipped.fingerprint,
        "shipped_depth": shipped_depth,
        "texts": n,
        "text_tokens": tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "queries": n_queries,
        "default_dtype": auto_name,
        "load_s_fp32": load_s,
        "rows": rows,
        "minilm": minilm,
        "threads": threads,
        "cold_start": cold,
    }
    md = report(data)
    path = save(stem, data, md)
    plot(data, RESULTS / f"{stem}.png")
    click.echo(md)
    click.echo(f"written to {path}")


def report(d: dict) -> str:
    m, mini = d["machine"], d["minilm"]
    lines = [
        "# Encoder speed by depth (and int8), with all-MiniLM-L6-v2 in the same run\n",
        f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python -m benchmarks.throughput_depth "
        f"--texts {d['texts']} --batch-size {d['batch_size']} --repeats {d['repeats']} --queries {d['queries']}` "
        f"on {m['cpu']} ({m['cores']} cores, load average {m.get('loadavg_1min', '?')} at the start, {m['torch_threads']} torch threads), "
        f"{m['when']}. {d['texts']} real paragraphs from the Python standard library "
        f"({d['text_tokens']} SmolLM2 tokens); {d['queries']} one-line queries encoded one at a time. "
        f"This machine's default dtype: {d['default_dtype']}. The shipped encoder "
        f"(`{str(d.get('fingerprint'))[:12]}`) runs {d.get('shipped_depth', 30)} layers (rows marked **shipped**); "
        "the other depths are the bundled base cut to that depth with fresh memory tokens "
        "(untrained there): speed only.\n",
        "| depth | weights | texts/s | tokens/s | x MiniLM texts/s | query p50 ms | p95 ms | "
        "x MiniLM query p50 | cosine to fp32 |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in d["rows"]:
        xt = f"{r['texts_per_s'] / mini['texts_per_s']:.2f}" if mini else "–"
        xq = f"{r['query_p50_ms'] / mini['query_p50_ms']:.1f}" if mini else "–"
        lines.append(
            f"| {r['depth']}{' **shipped**' if r.get('shipped') else ''} | {r['weights']} | {r['texts_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
            f"{xt} | {r['query_p50_ms']:.0f} | {r['query_p95_ms']:.0f} | {xq} | "
            f"{r['cosine_to_fp32']:.4f} |"
        )
    if mini:
        lines.append(
            f"| MiniLM-L6 | float32 | {mini['texts_per_s']:.2f} | {mini['tokens_per_s']:.0f} "
            f"({mini['tokens']} of its tokens) | 1.00 | {mini['query_p50_ms']:.0f} | "
            f"{mini['query_p95_ms']:.0f} | 1.0 | – |"
        )
    lines.append(
        "\nThreads (the shipped depth and this machine's dtype): "
        + "; ".join(
            f"{t['threads']} thread(s): {t['texts_per_s']:.2f} texts/s, query p50 "
            f"{t['query_p50_ms']:.0f} ms"
            for t in d["threads"]
        )
        + ".\n"
    )
    c = d.get("cold_start")
    if c:

        def t(name):
            return f"{c[name]['min_s']:.2f} s (median {c[name]['median_s']:.2f})"

        lines.append(
            f"Cold start (fresh processes, wall time, best of {len(c['compsearch_help']['all_s'])} "
            f"round-robin runs): `compsearch --help` {t('compsearch_help')}; `compsearch query` on "
            f"a small existing index {t('compsearch_query')}, with "
            f"{c['compsearch_query']['stderr_lines']} lines on stderr (numpy query path, "
            f"no torch); the same query with the torch encoder (`COMPSEARCH_TRANSFORMERS=1`) "
            + (t("compsearch_query_torch") if "compsearch_query_torch" in c else "not measured")
            + f". For scale: python itself {t('python_empty')}; `import torch` "
            f"{t('import_torch')}; torch + transformers' Llama "
            f"{t('import_torch_transformers_llama')}.\n"
        )
    return "\n".join(lines) + "\n"


def plot(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for label in sorted({r["weights"] for r in d["rows"]}):
        rs = sorted((r for r in d["rows"] if r["weights"] == label), key=lambda r: r["depth"])
        a.plot([r["depth"] for r in rs], [r["texts_per_s"] for r in rs], "o-", label=label)
        b.plot([r["depth"] for r in rs], [r["query_p50_ms"] for r in rs], "o-", label=label)
    if d["minilm"]:
        a.axhline(d["minilm"]["texts_per_s"], color="grey", ls="--", label="MiniLM-L6")
        b.axhline(d["minilm"]["query_p50_ms"], color="grey", ls="--", label="MiniLM-L6")
    a.set(xlabel="layers", ylabel="texts/s (higher is better)", title="batch encode")
    b.set(xlabel="layers", ylabel="ms (lower is better)", title="one-line query, p50")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
