"""The ``compsearch`` command: a thin layer over ``compsearch.Retriever`` and
``compsearch.maintenance``; every policy (re-chunking, index choice) is decided in the library.

    compsearch index ./docs              # build or update ./.compsearch
    compsearch query "how do I ..." -k 5
    compsearch info
    compsearch inspect|verify|rebuild|compact .compsearch   # maintenance
    compsearch choose 2000000            # what --type auto picks for 2M vectors
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from .display import (  # noqa: F401 (demo and older callers import these from cli)
    console,
    index_with_progress,
    print_report,
    print_results,
)
from .errors import CompsearchError
from .indexspec import REQUESTABLE

DEFAULT_INDEX = os.environ.get("COMPSEARCH_INDEX", ".compsearch")
DEFAULT_K = 5  # = compsearch.retriever.DEFAULT_K (not imported: --help must stay light)
INDEX_TYPES = list(REQUESTABLE)
ENVIRONMENT = """\b
Environment:
  COMPSEARCH_INDEX         default index directory (.compsearch)
  COMPSEARCH_HOME          cache for converted models and merged weights (~/.cache/compsearch)
  COMPSEARCH_THREADS       CPU threads for encoding and search (same as --threads)
  COMPSEARCH_LOCK_TIMEOUT  seconds a writer waits for another one (600; negative: for ever)
  HF_HUB_OFFLINE=1         never try the Hugging Face hub

\b
Exit status: 0 success, 1 error (one line on stderr; JSON on stdout with --json),
2 usage error, 130 interrupted (the index stays at its last committed state)."""


def friendly_errors(fn):
    """Bad input and known failures end with one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except CompsearchError as exc:
            _fail(str(exc), 1, as_json)
        except KeyboardInterrupt:
            # a Ctrl-C a few ms after the commit leaves the new state: say what is true either way
            _fail(
                "interrupted: the index is at its last committed state, nothing half-written; "
                "run the command again to finish",
                130,
                as_json,
                prefix="",
            )
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1, as_json)

    return wrapper


def _fail(message: str, code: int, as_json: bool, prefix: str = "error: ") -> None:
    """One line on stderr; under ``--json`` also ``{"error": ..., "exit_code": ...}`` on stdout."""
    message = " ".join(message.split())  # one line, whatever the message held
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    click.echo(f"{prefix}{message}", err=True)
    sys.exit(code)


def _setup_logging(verbose: bool) -> None:
    import logging

    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=ENVIRONMENT)
@click.version_option(package_name="compsearch")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    envvar="COMPSEARCH_THREADS",
    default=None,
    help="CPU threads for encoding and search (default: all cores).",
)
def main(threads):
    """Search your documents with an LLM2Comp text encoder."""
    if threads:  # before torch or faiss is imported, so both of them and OpenMP see it
        os.environ["COMPSEARCH_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--index",
    "index_dir",
    default=DEFAULT_INDEX,
    show_default=True,
    help="Index directory (created if missing; env COMPSEARCH_INDEX).",
)
@click.option(
    "--model",
    default=None,
    help="Encoder for a new index: 'default', a saved encoder folder, a local HF "
    "model folder or a hub id. An existing index keeps the encoder it was built with.",
)
@click.option(
    "--type",
    "index_type",
    type=click.Choice(INDEX_TYPES),
    default=None,
    help="FAISS index type (default: keep the index's, or 'auto' by size).",
)
@click.option(
    "--chunk-tokens", type=int, default=None, help="Token budget per chunk (default 256)."
)
@click.option(
    "--overlap", type=int, default=None, help="Tokens of overlap between chunks (default 32)."
)
@click.option("--hidden", is_flag=True, help="Also index hidden files and folders.")
@click.option("--no-gitignore", is_flag=True, help="Ignore .gitignore rules.")
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Only files matching this glob (gitignore syntax, relative to each folder); repeatable.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Leave out files and folders matching this glob; repeatable.",
)
@click.option(
    "--max-file-mb",
    type=float,
    default=10.0,
    show_default=True,
    help="Skip files larger than this.",
)
@click.option("--ray", "use_ray", is_flag=True, help="Encode on a Ray cluster (compsearch[ray]).")
@click.option("--ray-address", default=None, help="Ray cluster to join ('auto'); default: local.")
@click.option("--workers", type=click.IntRange(min=1), default=2, help="Ray encoder actors (2).")
@click.option("--worker-gpus", type=float, default=0, help="GPUs per Ray actor (1: one per GPU).")
@click.option("--shards", type=click.Path(), default=None, help="Keep Ray's vector shards here.")
@click.option("--ondisk-lists", is_flag=True,
              help="With --ray: an IVF base (--type ivf...) keeps its lists on disk, mmapped.")  # fmt: skip
@click.option(
    "--memory-states",
    type=click.Choice(["fp16", "int8", "none"]),
    default=None,
    help="Keep every chunk's memory-token states (fp16, or int8: half the size) for "
    "--rerank maxsim; kept by later writes; none drops them (default: keep the index's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped file.")
@friendly_errors
def index(
    paths,
    index_dir,
    model,
    index_type,
    chunk_tokens,
    overlap,
    hidden,
    no_gitignore,
    include,
    exclude,
    max_file_mb,
    use_ray,
    ray_address,
    workers,
    worker_gpus,
    shards,
    ondisk_lists,
    memory_states,
    as_json,
    verbose,
):
    """Index files and folders (incremental: only changed files are re-encoded)."""
    from .retriever import Retriever, require_paths, resolve_chunking

    _setup_logging(False)
    require_paths([os.path.expanduser(p) for p in paths])
    retriever = Retriever.open(index_dir, model)
    # bad --chunk-tokens/--overlap fail before the encoder loads (Retriever.index decides again)
    resolve_chunking((retriever.manifest or {}).get("chunking"), None, chunk_tokens, overlap)
    err = console(stderr=True)
    options = dict(
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        index_type=index_type,
        include_hidden=hidden,
        respect_gitignore=not no_gitignore,
        include=include,
        exclude=exclude,
        max_file_bytes=int(max_file_mb * 1_000_000),
        memory_states=memory_states,
    )
    if ondisk_lists and not (use_ray or ray_address):
        raise CompsearchError("--ondisk-lists builds the base from Ray's shards: add --ray")
    if use_ray or ray_address:  # encode on Ray into shards; the normal write path indexes them
        from .cluster import embedded

        ray_options = dict(address=ray_address, workers=workers, gpus_per_worker=worker_gpus,
                           ondisk_lists=ondisk_lists)  # fmt: skip
        ray_run = embedded(retriever, paths, shards_dir=shards, **ray_options, **options)
        with ray_run as (retriever, ray_report):
            report = index_with_progress(retriever, paths, err, disable=as_json, **options)
    else:
        ray_report = None
        report = index_with_progress(retriever, paths, err, disable=as_json, **options)
    if as_json:
        extra = {"ray": ray_report.to_dict()} if ray_report else {}
        click.echo(json.dumps(dict(report.to_dict(), **extra), indent=2))
        return
    print_report(console(), report, index_dir, verbose)
    if ray_report:
        click.echo(ray_report.summary())


@main.command()
@click.argument("text")
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=DEFAULT_K,
    show_default=True,
    help="Number of results.",
)
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "dense", "lexical"]),
    default=None,
    help="hybrid (default): dense + BM25 over the whole corpus, fused; dense: vectors "
    "only; lexical: BM25 only (no encoder needed).",
)
@click.option(
    "--fusion",
    type=click.Choice(["score", "rrf"]),
    default=None,
    help="How hybrid fuses the two rankings: score (default; normalised scores, "
    "dense weight 0.3) or rrf (reciprocal rank fusion).",
)
@click.option(
    "--rerank",
    type=click.Choice(["auto", "exact", "maxsim", "likelihood", "hybrid", "none"]),
    default="auto",
    show_default=True,
    help="auto: exact re-scoring when the index is approximate; maxsim: re-score the top 20 "
    "by memory-token late interaction (needs index --memory-states); likelihood: by "
    "log p(query | chunk's memory tokens) under the base LM (hybrid: the old name of --mode "
    "hybrid).",
)
@click.option(
    "--where",
    multiple=True,
    metavar="FILTER",
    help="Filter, repeatable (ANDed): source=GLOB (relative to the indexed folder), "
    "kind=markdown, 'year>=2020', 'draft!=true', or a JSON filter such as "
    '\'{"tags": {"$in": ["api", "cli"]}}\'.',
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@friendly_errors
def query(text, index_dir, k, mode, fusion, rerank, where, as_json):
    """Search the index for TEXT."""
    from .filters import parse
    from .retriever import Retriever

    _setup_logging(False)
    if not text.strip():
        raise CompsearchError("the query is empty")
    where = parse(list(where))
    retriever = Retriever.open(index_dir, must_exist=True)
    hits = retriever.search(
        text,
        k=k,
        where=where,
        mode=mode,
        fusion=fusion,
        rerank=None if rerank == "none" else rerank,
    )
    if as_json:
        click.echo(json.dumps({"query": text, "results": [h.to_dict() for h in hits]}, indent=2))
        return
    print_results(console(), text, hits)


@main.command()
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def info(index_dir, as_json):
    """What an index holds and which encoder made it."""
    from .retriever import Retriever

    data = Retriever.open(index_dir, must_exist=True).info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    enc, idx = data["encoder"], data["index"]
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("index", data["path"])
    t.add_row(
        "chunks / files / sources",
        f"{data['counts']['chunks']} / {data['counts']['files']} / {data['sources']}",
    )
    t.add_row("vector index", f"{idx['spec']['kind']} ({idx['factory']}), {idx['ntotal']} vectors")
    t.add_row("encoder", f"{enc['name']}")
    t.add_row("encoder source", str(enc["source"]))
    t.add_row("encoder fingerprint", enc["fingerprint"])
    t.add_row("dim / dtype", f"{enc['dim']} / {enc['dtype']}")
    # manifests written before depth existed have no num_layers: those encoders run every layer
    layers = enc.get("num_layers")
    t.add_row("layers", str(layers) if layers else "all of the base model's")
    t.add_row("chunking", json.dumps(data.get("chunking")))
    ms = data.get("memory_states")
    t.add_row(
        "memory states",
        f"{ms['dtype']}, {ms['chunks']} chunks, {ms['bytes'] / 1e6:.1f} MB" if ms else "not kept",
    )
    t.add_row("roots", "\n".join(data.get("roots", [])))
    t.add_row("created / updated", f"{data.get('created_at')} / {data.get('updated_at')}")
    t.add_row(
        "format", f"{data['format']} v{data['format_version']}, generation {data['generation']}"
    )
    console().print(t)


# ---------------------------------------------------------------- maintenance (compsearch.maintenance)
@main.command()
@click.argument("index_dir", type=click.Path())
@friendly_errors
def inspect(index_dir):
    """Sizes, type and counts of an index (JSON)."""
    from .maintenance import inspect as run

    click.echo(json.dumps(run(index_dir), indent=2))


@main.command()
@click.argument("index_dir", type=click.Path())
@click.option("--sample", default=200, show_default=True, help="Vectors checked for self-recall.")
@friendly_errors
def verify(index_dir, sample):
    """Check integrity; exit 1 when a problem is found."""
    from .maintenance import verify as run

    problems = run(index_dir, sample=sample)
    for p in problems:
        click.echo(f"problem: {p}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ok")


@main.command()
@click.argument("index_dir", type=click.Path())
@click.option(
    "--type",
    "kind",
    type=click.Choice(INDEX_TYPES),
    default=None,
    help="New index type (default: keep the current choice).",
)
@click.option("--nlist", type=int, default=None)
@click.option("--nprobe", type=int, default=None)
@click.option("--pq-m", type=int, default=None)
@click.option("--hnsw-m", type=int, default=None)
@click.option("--ef-search", type=int, default=None)
@friendly_errors
def rebuild(index_dir, kind, nlist, nprobe, pq_m, hnsw_m, ef_search):
    """Rebuild the vector index from stored vectors (no re-encoding)."""
    from .maintenance import rebuild as run

    m = run(
        index_dir, kind, nlist=nlist, nprobe=nprobe, pq_m=pq_m, hnsw_m=hnsw_m, ef_search=ef_search
    )
    click.echo(
        f"rebuilt: {m['index']['factory']}, {m['index']['ntotal']} vectors, generation {m['generation']}"
    )


@main.command()
@click.argument("index_dir", type=click.Path())
@friendly_errors
def compact(index_dir):
    """Reclaim space left by deletions."""
    from .maintenance import compact as run

    m = run(index_dir)
    click.echo(f"compacted: {m['index']['ntotal']} vectors, generation {m['generation']}")


@main.command()
@click.argument("n", type=int)
@click.option("--dim", default=576, show_default=True)
@friendly_errors
def choose(n, dim):
    """Which index type and parameters suit N vectors (what --type auto picks; JSON)."""
    from .index import choose_spec

    spec = choose_spec(n, dim)
    click.echo(json.dumps(dict(spec.to_dict(), factory=spec.factory(dim)), indent=2))


@main.command()
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@friendly_errors
def prune(index_dir, as_json):
    """Remove files that no longer exist on disk (and folders that are gone) from the index."""
    from .retriever import Retriever

    report = Retriever.open(index_dir, must_exist=True).prune()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    console().print(
        f"removed {report.files_removed} files ({report.chunks_removed} chunks); "
        f"{report.chunks_total} chunks from {report.files_total} files remain"
        + ("" if report.committed else " (nothing changed)")
    )


@main.command()
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (no authentication: keep it local or behind a proxy).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--model", default=None, help="Encoder for a new index (an existing one keeps its own)."
)
@friendly_errors
def serve(index_dir, host, port, model):
    """Serve search, add/delete and OpenAI-style /v1/embeddings over HTTP."""
    from .server import serve as run_server

    _setup_logging(False)
    click.echo(f"compsearch: serving {index_dir} on http://{host}:{port} (Ctrl-C stops)", err=True)
    run_server(index_dir, host=host, port=port, model=model)


if __name__ == "__main__":  # pragma: no cover
    main()
